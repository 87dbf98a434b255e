"""Statistics of sampled piano-rolls against the data's: does a model's music drift as it runs?

Teacher forcing trains a model on true histories only; when it generates, errors can compound
(Bengio et al. 2015). Two simple, interpretable statistics of binary piano-roll frames
``(T, 88)`` show such drift without any model of music:

* **notes per frame**: the distribution of the number of keys down in a frame, ``0, 1, ...,
  max_notes`` (the last bin collects ``>= max_notes``);
* **pitch classes**: the distribution of active notes over the 12 pitch classes
  ``(lowest_note + key) mod 12`` (C = 0).

Each is compared with the data's by the total variation distance
``TV(p, q) = 1/2 sum_k |p_k - q_k|`` (0: identical, 1: disjoint), and can be computed on a window
of time steps, so that the start of long samples can be compared with their end.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from probseq.errors import UserError

__all__ = ["notes_per_frame_histogram", "pitch_class_histogram", "total_variation",
           "drift_statistics"]


def _frames(sequences: Iterable[Tensor], start: int = 0, stop: int | None = None) -> Tensor:
    parts = [torch.as_tensor(s)[start:stop] for s in sequences]
    parts = [p for p in parts if p.numel()]
    if not parts:
        raise UserError(f"no frames in the time window [{start}, {stop})")
    return torch.cat(parts, 0).double()


def notes_per_frame_histogram(frames: Tensor, max_notes: int = 8) -> Tensor:
    """``(max_notes + 1,)`` probabilities of ``0, 1, ..., >= max_notes`` keys down per frame."""
    counts = frames.sum(-1).round().long().clamp(max=max_notes)
    return torch.bincount(counts, minlength=max_notes + 1).double() / counts.numel()


def pitch_class_histogram(frames: Tensor, lowest_note: int = 21) -> Tensor:
    """``(12,)`` share of active notes per pitch class (C = 0), from ``(N, keys)`` binary frames."""
    per_key = frames.sum(0)
    classes = (torch.arange(frames.shape[-1]) + lowest_note) % 12
    hist = torch.zeros(12, dtype=torch.float64).index_add_(0, classes, per_key.double())
    total = hist.sum()
    if total == 0:
        return torch.full((12,), 1.0 / 12, dtype=torch.float64)   # no notes: say nothing
    return hist / total


def total_variation(p: Tensor, q: Tensor) -> float:
    """``1/2 sum_k |p_k - q_k|`` for two probability vectors of the same length."""
    if p.shape != q.shape:
        raise ValueError(f"histograms of different shapes {tuple(p.shape)} and {tuple(q.shape)}")
    return float(0.5 * (p.double() - q.double()).abs().sum())


def drift_statistics(samples: Sequence[Tensor], data: Sequence[Tensor], *,
                     windows: Sequence[tuple[int, int | None]] = ((0, None),),
                     lowest_note: int = 21, max_notes: int = 8) -> dict[str, float]:
    """TV distances of the samples' notes-per-frame and pitch-class histograms from the data's
    (all data frames), for each window ``[start, stop)`` of the samples' time steps.

    Returns keys ``tv_notes_per_frame_{start}_{stop}`` and ``tv_pitch_class_{start}_{stop}``
    (``stop`` written ``end`` for ``None``), plus the mean notes per frame of samples and data.
    """
    reference = _frames(data)
    ref_notes = notes_per_frame_histogram(reference, max_notes)
    ref_pitch = pitch_class_histogram(reference, lowest_note)
    out = {"data_mean_notes_per_frame": float(reference.sum(-1).mean())}
    for start, stop in windows:
        frames = _frames(samples, start, stop)
        tag = f"{start}_{'end' if stop is None else stop}"
        out[f"tv_notes_per_frame_{tag}"] = total_variation(notes_per_frame_histogram(frames, max_notes),
                                                           ref_notes)
        out[f"tv_pitch_class_{tag}"] = total_variation(pitch_class_histogram(frames, lowest_note),
                                                       ref_pitch)
        out[f"sample_mean_notes_per_frame_{tag}"] = float(frames.sum(-1).mean())
    return out
