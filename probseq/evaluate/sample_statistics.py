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

**Motion** (:func:`motion_statistics`): does a sampled motion keep moving like the data, or fall
over, freeze or explode? On the model's own (normalised) features, against the training frames:

* ``height_in_range``: the share of sampled frames whose root height lies within the training
  frames' ``[min, max]`` (a figure that falls over, or floats away, leaves it);
* ``angles_in_range``: the share of sampled joint-angle values (every non-root channel that is
  not constant in the training frames) within their channel's training ``[min, max]``;
* ``angle_spread_ratio``: the median over joint-angle channels of the standard deviation *over
  time within a sequence* of the samples, divided by the same for the training sequences (each
  averaged over sequences): about 1 for a motion that moves as much as the data, near 0 for one
  that freezes into a pose, far above 1 for one that thrashes;
* ``motion_ratio``: the samples' mean squared frame-to-frame change over the data's.

A sample moves like the data when both in-range shares are near 1 and both ratios near 1.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import Tensor

from probseq.errors import UserError

__all__ = ["notes_per_frame_histogram", "pitch_class_histogram", "total_variation",
           "drift_statistics", "motion_channel_roles", "motion_statistics"]


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


def motion_channel_roles(meta: dict, dim: int) -> tuple[int, list[int]]:
    """``(root height index, joint-angle indices)`` of a motion dataset's ``dim`` features.

    ``cmu`` with AMC channels: the root's ``ty`` (CMU data is y up) and every non-root channel;
    ``cmu`` with ``features=body``: feature 0 (the height) and everything after the root's block
    (:data:`~probseq.io.motion_features.BODY_ROOT_SIZE` values and the root rotation's 3);
    ``mocap-mit``: column 5 of the 108 channels (the root's height) and every column of joints 1-17.
    """
    from probseq.io.motion_features import BODY_ROOT_SIZE

    fmt = meta.get("motion_format")
    if fmt == "mit":
        columns = [int(c) for c in meta["columns"]]
        return columns.index(5), [i for i, c in enumerate(columns) if c >= 6]
    if fmt == "asf" and meta.get("features", "channels") == "body":
        return 0, list(range(BODY_ROOT_SIZE + 3, dim))
    if fmt == "asf":
        channels = [tuple(c) for c in meta["channels"]]
        return channels.index(("root", "ty")), [i for i, (bone, _) in enumerate(channels) if bone != "root"]
    raise UserError("motion statistics need a motion dataset (cmu or mocap-mit)")


def motion_statistics(samples: Sequence[Tensor], data: Sequence[Tensor], meta: dict, *,
                      windows: Sequence[tuple[int, int | None]] = ((0, None),)) -> dict[str, float]:
    """The motion statistics of the module docstring for each window ``[start, stop)`` of the
    samples' frames (``(T, D)`` each; pass the samples without their prime), against the
    ``data`` sequences (the training split). Keys end in ``_{start}_{stop}`` (``end`` for ``None``)."""
    reference = [torch.as_tensor(s).double() for s in data if len(s) >= 2]
    if not reference:
        raise UserError("motion statistics need training sequences of at least 2 frames")
    dim = reference[0].shape[-1]
    height, joints = motion_channel_roles(meta, dim)
    frames = torch.cat(reference, 0)
    low, high = frames.min(0).values, frames.max(0).values
    ref_spread = torch.stack([r.std(0, unbiased=False) for r in reference]).mean(0)
    ref_motion = float(torch.cat([r[1:] - r[:-1] for r in reference]).pow(2).mean())
    joints = [j for j in joints if float(high[j] - low[j]) > 1e-6]     # constant channels say nothing
    out: dict[str, float] = {}
    for start, stop in windows:
        parts = [torch.as_tensor(s).double()[start:stop] for s in samples]
        parts = [p for p in parts if p.shape[0] >= 2]
        if not parts:
            raise UserError(f"no sample has 2 frames in the time window [{start}, {stop})")
        tag = f"{start}_{'end' if stop is None else stop}"
        sampled = torch.cat(parts, 0)
        inside = (sampled >= low) & (sampled <= high)
        spread = torch.stack([p.std(0, unbiased=False) for p in parts]).mean(0)
        ratio = spread[joints] / ref_spread[joints].clamp_min(1e-12)
        out[f"height_in_range_{tag}"] = float(inside[:, height].double().mean())
        out[f"angles_in_range_{tag}"] = float(inside[:, joints].double().mean())
        out[f"angle_spread_ratio_{tag}"] = float(ratio.median())
        motion = float(torch.cat([p[1:] - p[:-1] for p in parts]).pow(2).mean())
        out[f"motion_ratio_{tag}"] = motion / max(ref_motion, 1e-12)
    return out
