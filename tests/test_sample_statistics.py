"""Histogram statistics of piano-roll samples and their total variation distance from the data."""

from __future__ import annotations

import pytest
import torch

from probseq.evaluate.sample_statistics import (drift_statistics, notes_per_frame_histogram,
                                                pitch_class_histogram, total_variation)


def _roll(frames, keys=24):
    x = torch.zeros(len(frames), keys)
    for t, notes in enumerate(frames):
        x[t, list(notes)] = 1.0
    return x


def test_histograms_by_hand():
    roll = _roll([(), (0,), (0, 4, 7), (12, 16, 19, 23)])
    assert notes_per_frame_histogram(roll, max_notes=3).tolist() == [0.25, 0.25, 0.0, 0.5]
    # lowest note 60 (C): keys 0 and 12 are C, 4/16 E, 7/19 G, 23 B
    pc = pitch_class_histogram(roll, lowest_note=60)
    expected = torch.zeros(12, dtype=torch.float64)
    expected[0], expected[4], expected[7], expected[11] = 3 / 8, 2 / 8, 2 / 8, 1 / 8
    torch.testing.assert_close(pc, expected)
    # lowest note 21 (A0): key 0 is pitch class 9
    assert pitch_class_histogram(_roll([(0,)]), lowest_note=21)[9] == 1.0


def test_total_variation():
    p = torch.tensor([0.5, 0.5, 0.0])
    assert total_variation(p, p) == 0.0
    assert total_variation(p, torch.tensor([0.0, 0.0, 1.0])) == pytest.approx(1.0)
    assert total_variation(p, torch.tensor([0.5, 0.0, 0.5])) == pytest.approx(0.5)


def test_drift_statistics_per_window():
    data = [_roll([(0, 4, 7)] * 10)]
    samples = [_roll([(0, 4, 7)] * 5 + [(1,)] * 5)]
    stats = drift_statistics(samples, data, windows=[(0, 5), (5, None)], lowest_note=60)
    assert stats["tv_notes_per_frame_0_5"] == 0.0 and stats["tv_pitch_class_0_5"] == 0.0
    assert stats["tv_notes_per_frame_5_end"] == pytest.approx(1.0)
    assert stats["tv_pitch_class_5_end"] == pytest.approx(1.0)
    assert stats["sample_mean_notes_per_frame_5_end"] == 1.0 and stats["data_mean_notes_per_frame"] == 3.0
