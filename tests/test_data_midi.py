"""MIDI out and in: roll -> MIDI -> roll is the identity; files are readable by mido and pretty_midi."""

from __future__ import annotations

import warnings

import mido
import numpy as np
import pretty_midi
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probseq.data.batch import Batch
from probseq.io.midi import (
    TICKS_PER_STEP,
    read_midi_pianoroll,
    read_midi_pianoroll_tracks,
    write_pianoroll_midi,
)
from probseq.data.registry import load_dataset
from probseq.errors import UserError


def random_roll(generator: torch.Generator, T: int, density: float = 0.08) -> torch.Tensor:
    return (torch.rand(T, 88, generator=generator) < density).float()


def note_runs(roll: torch.Tensor) -> int:
    """Oracle for the number of held notes: count 0 -> 1 transitions per key."""
    padded = torch.cat([torch.zeros(1, roll.shape[1]), roll])
    return int(((padded[1:] == 1) & (padded[:-1] == 0)).sum())


@pytest.fixture(scope="module")
def jsb_test():
    return load_dataset("jsb").splits["test"]


# ----------------------------------------------------------------------------- round trips
@settings(max_examples=25, deadline=None)
@given(T=st.integers(1, 40), seed=st.integers(0, 2 ** 31 - 1), spb=st.sampled_from([1, 2, 3, 4]))
def test_round_trip_single_roll(tmp_path_factory, T, seed, spb):
    roll = random_roll(torch.Generator().manual_seed(seed), T, density=0.2)
    path = write_pianoroll_midi(roll, tmp_path_factory.mktemp("m") / "a.mid", steps_per_beat=spb)
    if roll.sum() == 0:
        with pytest.raises(UserError, match="no notes"):
            read_midi_pianoroll(path, steps_per_beat=spb)
        return
    back = read_midi_pianoroll(path, steps_per_beat=spb)
    assert torch.equal(back, roll)  # trailing silence included, via end_of_track
    # clock time: 120 bpm and spb steps per beat = 2 * spb steps per second
    assert torch.equal(read_midi_pianoroll(path, fs=2 * spb), roll)


def test_round_trip_concatenated_with_gap(tmp_path, jsb_test):
    rolls = jsb_test[:4]
    path = write_pianoroll_midi(Batch.from_sequences(rolls), tmp_path / "c.mid", steps_per_beat=1, gap_steps=3)
    gap = torch.zeros(3, 88)
    expected = torch.cat([x for r in rolls for x in (r, gap)][:-1])
    assert torch.equal(read_midi_pianoroll(path, steps_per_beat=1), expected)
    midi = mido.MidiFile(str(path))
    assert len(midi.tracks) == 2  # conductor + one note track


def test_round_trip_tracks_layout(tmp_path, jsb_test):
    rolls = jsb_test[5:9]
    path = write_pianoroll_midi(rolls, tmp_path / "t.mid", steps_per_beat=2, layout="tracks")
    back = read_midi_pianoroll_tracks(path, steps_per_beat=2)
    assert len(back) == len(rolls)
    assert all(torch.equal(a, b) for a, b in zip(back, rolls))
    # merged, the tracks sound together: the union of the rolls
    T = max(r.shape[0] for r in rolls)
    union = torch.zeros(T, 88)
    for r in rolls:
        union[: r.shape[0]] = torch.maximum(union[: r.shape[0]], r)
    assert torch.equal(read_midi_pianoroll(path, steps_per_beat=2), union)


def test_whole_jsb_test_split_round_trips(tmp_path, jsb_test):
    path = write_pianoroll_midi(jsb_test, tmp_path / "all.mid", layout="tracks")
    assert all(torch.equal(a, b) for a, b in zip(read_midi_pianoroll_tracks(path, steps_per_beat=1), jsb_test))


# ----------------------------------------------------------------------------- other readers agree
def test_pretty_midi_and_mido_read_our_file(tmp_path, jsb_test):
    rolls = jsb_test[:3]
    path = write_pianoroll_midi(rolls, tmp_path / "p.mid", steps_per_beat=1, tempo_bpm=90, program=19)
    midi = mido.MidiFile(str(path))
    assert midi.ticks_per_beat == TICKS_PER_STEP
    assert [m.tempo for t in midi.tracks for m in t if m.type == "set_tempo"] == [mido.bpm2tempo(90)]
    note_ons = [m for t in midi.tracks for m in t if m.type == "note_on" and m.velocity > 0]
    assert len(note_ons) == sum(note_runs(r) for r in rolls) > 0

    pm = pretty_midi.PrettyMIDI(str(path))
    notes = [n for inst in pm.instruments for n in inst.notes]
    assert len(notes) == len(note_ons)
    assert {inst.program for inst in pm.instruments} == {19}
    step = 60 / 90  # seconds per step at 90 bpm, one step per beat
    total = sum(r.shape[0] for r in rolls) + 2 * 4  # two gaps of one bar
    assert pm.get_end_time() == pytest.approx(total * step)
    # pretty_midi's own piano-roll (at 120 bpm, 2 steps per second: exact in binary) is ours
    path = write_pianoroll_midi(rolls, tmp_path / "p120.mid", steps_per_beat=1, tempo_bpm=120)
    theirs = pretty_midi.PrettyMIDI(str(path)).get_piano_roll(fs=2)[21:109].T > 0
    ours = read_midi_pianoroll(path, steps_per_beat=1).numpy() > 0
    assert theirs.shape == ours.shape == (total, 88) and np.array_equal(theirs, ours)


def test_held_notes_merge_and_rearticulation(tmp_path):
    roll = torch.zeros(6, 88)
    roll[0:3, 39] = 1  # C4 held for three steps
    roll[4:6, 39] = 1  # struck again after a rest
    pm = pretty_midi.PrettyMIDI(str(write_pianoroll_midi(roll, tmp_path / "h.mid")))
    spans = [(n.pitch, n.start, n.end) for n in pm.instruments[0].notes]
    assert spans == [(60, 0.0, 1.5), (60, 2.0, 3.0)]  # 0.5 s per step at 120 bpm

    pm = pretty_midi.PrettyMIDI(str(write_pianoroll_midi(roll, tmp_path / "r.mid", rearticulate=True)))
    assert len(pm.instruments[0].notes) == 5

    onsets = torch.zeros(6, 88)
    onsets[1, 39] = 1  # strike again at step 1, hold through step 2
    path = write_pianoroll_midi([roll], tmp_path / "o.mid", rearticulate=[onsets])
    spans = [(n.start, n.end) for n in pretty_midi.PrettyMIDI(str(path)).instruments[0].notes]
    assert spans == [(0.0, 0.5), (0.5, 1.5), (2.0, 3.0)]
    assert torch.equal(read_midi_pianoroll(path, steps_per_beat=1), roll)


# ----------------------------------------------------------------------------- reading any MIDI
def _pretty(path, notes, *, tempo=120.0, drum=False):
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    inst = pretty_midi.Instrument(program=0, is_drum=drum)
    inst.notes = [pretty_midi.Note(velocity=90, pitch=p, start=s, end=e) for p, s, e in notes]
    pm.instruments.append(inst)
    pm.write(str(path))
    return path


def test_off_grid_notes_are_quantised(tmp_path):
    # 60 bpm: one beat per second. Steps of a quarter beat (fs = 4 per second).
    path = _pretty(tmp_path / "q.mid", [(60, 1.0, 2.0), (64, 0.13, 0.37), (67, 2.9, 2.95)], tempo=60)
    roll = read_midi_pianoroll(path, steps_per_beat=4)
    assert torch.equal(roll, read_midi_pianoroll(path, fs=4))
    on = {(t, j + 21) for t, j in roll.nonzero().tolist()}
    # [1.0, 2.0) s -> steps [4, 8); [0.13, 0.37) s -> [0.52, 1.48) -> rounds to the empty [1, 1),
    # kept as one step; [2.9, 2.95) s -> [11.6, 11.8) -> one step, 12, so T = 13
    assert on == {(t, 60) for t in range(4, 8)} | {(1, 64), (12, 67)}
    assert roll.shape == (13, 88)


def test_tempo_map_is_followed_for_clock_time(tmp_path):
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500000, time=0),  # 120 bpm
                                mido.MetaMessage("set_tempo", tempo=1000000, time=480)])  # then 60
    notes = mido.MidiTrack([mido.Message("note_on", note=72, velocity=64, time=480),
                            mido.Message("note_off", note=72, velocity=0, time=480)])
    midi.tracks += [conductor, notes]
    midi.save(str(tmp_path / "tempo.mid"))
    # the note covers beat 1..2 = seconds 0.5..1.5
    by_beat = read_midi_pianoroll(tmp_path / "tempo.mid", steps_per_beat=1)
    assert by_beat.shape == (2, 88) and by_beat[:, 72 - 21].tolist() == [0.0, 1.0]
    by_clock = read_midi_pianoroll(tmp_path / "tempo.mid", fs=2)  # steps of 0.5 s
    assert by_clock.shape == (3, 88) and by_clock[:, 72 - 21].tolist() == [0.0, 1.0, 1.0]


def test_drums_excluded_and_out_of_range_dropped(tmp_path):
    path = _pretty(tmp_path / "d.mid", [(36, 0.0, 0.5)], drum=True)
    with pytest.raises(UserError, match="no notes"):
        read_midi_pianoroll(path, steps_per_beat=1)
    assert read_midi_pianoroll(path, steps_per_beat=1, include_drums=True)[0, 36 - 21] == 1

    path = _pretty(tmp_path / "o.mid", [(10, 0.0, 0.5), (60, 0.0, 0.5), (120, 0.5, 1.0)])
    with pytest.warns(UserWarning, match="2 note"):
        roll = read_midi_pianoroll(path, steps_per_beat=1)
    assert roll.sum() == 1
    with pytest.raises(UserError, match="outside"):
        read_midi_pianoroll(path, steps_per_beat=1, out_of_range="error")


def test_note_on_velocity_zero_and_unreleased_notes(tmp_path):
    midi = mido.MidiFile(type=0, ticks_per_beat=100)
    midi.tracks.append(mido.MidiTrack([
        mido.Message("note_on", note=60, velocity=50, time=0),
        mido.Message("note_on", note=60, velocity=0, time=200),  # running-status style release
        mido.Message("note_on", note=62, velocity=50, time=0),  # never released
        mido.MetaMessage("end_of_track", time=300),
    ]))
    midi.save(str(tmp_path / "v.mid"))
    roll = read_midi_pianoroll(tmp_path / "v.mid", steps_per_beat=1)
    assert roll.shape == (5, 88)
    assert roll[:, 60 - 21].tolist() == [1, 1, 0, 0, 0]
    assert roll[:, 62 - 21].tolist() == [0, 0, 1, 1, 1]


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("content", [b"", b"MThd garbage", b"hello, this is text" * 10,
                                     b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\x00\x00\xff\xff"])
def test_corrupt_files_are_user_errors(tmp_path, content):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(UserError) as exc:
        read_midi_pianoroll(path, steps_per_beat=1)
    assert "\n" not in str(exc.value)


def test_reader_argument_errors(tmp_path):
    with pytest.raises(UserError, match="no such MIDI file"):
        read_midi_pianoroll(tmp_path / "absent.mid", steps_per_beat=1)
    path = write_pianoroll_midi(torch.eye(88)[:3], tmp_path / "x.mid")
    with pytest.raises(UserError, match="exactly one"):
        read_midi_pianoroll(path)
    with pytest.raises(UserError, match="exactly one"):
        read_midi_pianoroll(path, steps_per_beat=1, fs=2)
    with pytest.raises(UserError, match="positive"):
        read_midi_pianoroll(path, fs=0)


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(rolls=torch.full((3, 88), float("nan"))), "NaN"),
    (dict(rolls=torch.zeros(2, 3, 88, 2)), "shape"),
    (dict(rolls=[]), "no sequences"),
    (dict(rolls=[torch.zeros(3, 88), torch.zeros(3, 80)]), "different numbers of keys"),
    (dict(steps_per_beat=1 / 7), "not supported"),
    (dict(lowest_note=60), "beyond the MIDI range"),
    (dict(layout="stacked"), "unknown MIDI layout"),
    (dict(velocity=0), "velocity"),
])
def test_writer_errors(tmp_path, kwargs, fragment):
    args = {"rolls": torch.eye(88)[:4], **kwargs}
    rolls = args.pop("rolls")
    with pytest.raises(UserError, match=fragment):
        write_pianoroll_midi(rolls, tmp_path / "w.mid", **args)


def test_probabilities_are_thresholded_at_one_half(tmp_path):
    probs = torch.zeros(2, 88)
    probs[0, 10], probs[1, 20] = 0.7, 0.3
    back = read_midi_pianoroll(write_pianoroll_midi(probs, tmp_path / "p.mid"), steps_per_beat=1)
    assert back.nonzero().tolist() == [[0, 10]] and back.shape == (2, 88)


def test_no_warnings_when_writing(tmp_path, jsb_test):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = write_pianoroll_midi(jsb_test[:2], tmp_path / "w.mid")
        pretty_midi.PrettyMIDI(str(path))
