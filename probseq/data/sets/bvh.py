"""``bvh``: a folder of BVH motion-capture takes (any skeleton, any frame rate), and BVH back out.

``--data bvh --data-dir DIR`` reads every ``*.bvh`` under ``DIR`` (or ``--data-file a.bvh,b.bvh``;
:mod:`probseq.data.folder` finds the files, splits them by a hash of their path and caches each
take's features in the data home). Every take must share one skeleton: the same joints, in the same
order, with the same parents and channels (offsets may differ; the first training take's are
kept). A take is resampled to ``fps`` (default 30; :func:`~probseq.io.motion_features.resample_pose`:
every ``r``-th frame when the take's rate is ``r`` times ``fps``, else slerp per joint) and turned
into the features of :mod:`probseq.io.motion_features`: root height, ground velocity and heading
change in the body's own frame, and every rotation as an exponential map (``rotation=expmap``) or
in the 6-D representation (``rotation=6d``); then z-scored with the mean and standard deviation of
the training frames (``meta["mean"]``, ``meta["std"]``). A feature that is constant over the
training frames (the rotation of a joint the takes never move, such as a bone without degrees of
freedom in a CMU conversion) is left out of the frames the model sees (``meta["kept"]`` lists the
kept ones) and restored at its constant value when samples are written: a model cannot learn
anything from it, and its samples could only drift away from it.

Splits: with at least 3 takes, whole takes by path hash (``valid_fraction``, ``test_fraction``,
default 0.1 each, at least one take each); with 1 or 2 takes every take is cut into contiguous
chunks, its first 80% of frames for ``train``, the next 10% for ``valid`` and the last 10% for
``test`` (as the ``cmu`` loader does). Takes stay whole; the trainer's ``--set train_chunk=L``
trains on random windows of ``L`` frames of long takes.

A run remembers the skeleton (``meta["skeleton"]``, with the first training take's offsets),
frame time, rotation form, up axis and normalisation, so ``probseq sample RUN --out walk.bvh``
writes BVH takes with that skeleton and frame time (the root starting at the origin, heading 0),
``--out walk.gif`` a stick-figure animation, ``--prime take.bvh`` continues a take of the same
skeleton, and ``evaluate --data-dir OTHER`` scores other takes in the run's units.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probseq.data.folder import cached_conversion, find_files, read_all, split_files, split_in_time
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.io.bvh import BvhJoint, BvhSkeleton, bvh_forward_kinematics, read_bvh, write_bvh
from probseq.io.motion_features import (ROTATIONS, bvh_feature_width, bvh_features,
                                        bvh_motion_from_features)

__all__ = ["load_bvh_folder", "skeleton_to_dict", "skeleton_from_dict", "skeleton_difference",
           "bvh_take_features", "bvh_motion_from_sample", "write_bvh_samples", "write_bvh_gif",
           "read_bvh_prime", "is_bvh_data"]

_UP = {"x": 0, "y": 1, "z": 2}


# ---------------------------------------------------------------------------- skeletons
def skeleton_to_dict(skeleton: BvhSkeleton) -> dict[str, Any]:
    """A JSON-able description of a BVH hierarchy (kept in a run's meta)."""
    return {"joints": [{"name": j.name, "parent": j.parent, "offset": [float(v) for v in j.offset],
                        "channels": list(j.channels),
                        "end_site": None if j.end_site is None else [float(v) for v in j.end_site]}
                       for j in skeleton.joints]}


def skeleton_from_dict(d: dict[str, Any]) -> BvhSkeleton:
    """Inverse of :func:`skeleton_to_dict`."""
    return BvhSkeleton([BvhJoint(j["name"], int(j["parent"]), np.asarray(j["offset"], dtype=np.float64),
                                 tuple(j["channels"]),
                                 None if j["end_site"] is None else np.asarray(j["end_site"], dtype=np.float64))
                        for j in d["joints"]])


def _describe(joint: BvhJoint, names: list[str]) -> str:
    parent = "no parent" if joint.parent < 0 else f"parent {names[joint.parent]!r}"
    return f"{joint.name!r} ({parent}, {len(joint.channels)} channels {' '.join(joint.channels) or '-'})"


def skeleton_difference(a: BvhSkeleton, b: BvhSkeleton) -> str | None:
    """``None`` when ``a`` and ``b`` have the same joints, parents and channels (offsets may differ),
    else a phrase saying how ``a`` differs from ``b``."""
    if len(a.joints) != len(b.joints):
        return f"{len(a.joints)} joints against {len(b.joints)}"
    names_a, names_b = [j.name for j in a.joints], [j.name for j in b.joints]
    for k, (ja, jb) in enumerate(zip(a.joints, b.joints)):
        if (ja.name, ja.parent, tuple(ja.channels)) != (jb.name, jb.parent, tuple(jb.channels)):
            return f"joint {k + 1} is {_describe(ja, names_a)} against {_describe(jb, names_b)}"
    return None


# ---------------------------------------------------------------------------- options
def _options(fps: Any, rotation: Any, up: Any) -> tuple[float, str, int]:
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        raise UserError(f"bvh option fps must be a number, got {fps!r}") from None
    if not fps > 0:
        raise UserError(f"bvh option fps must be positive, got {fps}")
    rotation = str(rotation).lower()
    if rotation not in ROTATIONS:
        raise UserError(f"bvh option rotation must be {' or '.join(ROTATIONS)}, got {rotation!r}")
    up_name = str(up).lower()
    if up_name not in _UP:
        raise UserError(f"bvh option up must be x, y or z (the vertical axis of the takes), got {up!r}")
    return fps, rotation, _UP[up_name]


# ---------------------------------------------------------------------------- one take
def bvh_take_features(path: Path, *, fps: float, rotation: str, up_axis: int) -> dict[str, np.ndarray]:
    """One take's un-normalised features and what the loader checks afterwards.

    Returns ``{"features": (T', D), "skeleton": JSON text, "frame_time": (), "frames": ()}``, or
    ``{"problem": text, "skeleton": ...}`` for a take that parses but cannot be used (no frames,
    NaN or infinite values): those stop the loader with one sentence, while a take that does not
    parse raises :class:`UserError` here and is skipped with a warning.
    """
    skeleton, motion, frame_time = read_bvh(path)
    out = {"skeleton": np.array(json.dumps(skeleton_to_dict(skeleton))),
           "frame_time": np.array(frame_time), "frames": np.array(motion.shape[0])}
    if motion.shape[0] == 0:
        return {**out, "problem": np.array("has no frames (Frames: 0)")}
    if not np.isfinite(motion).all():
        return {**out, "problem": np.array("holds NaN or infinite values")}
    if not frame_time > 0:
        return {**out, "problem": np.array(f"has a frame time of {frame_time}; it must be positive")}
    features = bvh_features(skeleton, motion, source_fps=1.0 / frame_time, fps=fps, rotation=rotation,
                            up_axis=up_axis)
    return {**out, "features": features}


# ---------------------------------------------------------------------------- the loader
@register_dataset(
    "bvh",
    description="your BVH motion-capture takes (one skeleton, any frame rate): body-frame root motion, "
                "joint rotations as exponential maps or 6-D, resampled to fps (30), z-scored",
    source="your own files: --data-dir DIR (searched recursively for .bvh) or --data-file a.bvh,b.bvh",
    needs="dir",
)
def load_bvh_folder(data_file: str | Path | None = None, data_dir: str | Path | None = None, *,
                    fps: float = 30, rotation: str = "expmap", up: str = "y",
                    valid_fraction: float = 0.1, test_fraction: float = 0.1, cache: bool = True,
                    run_meta: dict[str, Any] | None = None) -> Dataset:
    """Load a folder of BVH takes (see the module docstring for the representation and the split)."""
    fps, rotation, up_axis = _options(fps, rotation, up)
    root, files = find_files(data_file=data_file, data_dir=data_dir, extensions=(".bvh",), what="BVH")
    opts = {"fps": fps, "rotation": rotation, "up_axis": up_axis}
    takes = read_all(files, lambda p: cached_conversion(
        p, "bvh", opts, lambda q: bvh_take_features(q, fps=fps, rotation=rotation, up_axis=up_axis),
        cache=bool(cache))[0], what="BVH")
    for path, arrays in takes.items():
        if "problem" in arrays:
            raise UserError(f"{path} {arrays['problem']}")
    readable = sorted(takes)
    if len(readable) >= 3:
        parts = split_files(readable, root, valid_fraction=float(valid_fraction),
                            test_fraction=float(test_fraction))
    else:
        parts = {"train": readable, "valid": [], "test": []}
    reference_path = parts["train"][0]
    if run_meta is not None and run_meta.get("motion_format") == "bvh":
        reference, reference_name = skeleton_from_dict(run_meta["skeleton"]), "the run's skeleton"
    else:
        run_meta = None
        reference = skeleton_from_dict(json.loads(str(takes[reference_path]["skeleton"])))
        reference_name = str(reference_path)
    for path in readable:
        difference = skeleton_difference(skeleton_from_dict(json.loads(str(takes[path]["skeleton"]))), reference)
        if difference is not None:
            raise UserError(f"{path} has a different skeleton from {reference_name} ({difference}); "
                            "every take of a bvh dataset must share one skeleton")
    for path in readable:
        if takes[path]["features"].shape[0] < 2:
            raise UserError(f"{path} has fewer than 2 frames at {fps:g} fps")
    if len(readable) >= 3:
        raw = {s: [takes[p]["features"] for p in parts[s]] for s in parts}
        split_rule = "whole takes by path hash"
    else:
        raw = split_in_time({str(p): takes[p]["features"] for p in readable}, "take")
        split_rule = "contiguous 80/10/10 of each take"
    if run_meta is not None:
        mean, std = np.asarray(run_meta["mean"]), np.asarray(run_meta["std"])
        kept = np.asarray(run_meta.get("kept", range(mean.shape[0])), dtype=np.int64)
        if mean.shape[0] != bvh_feature_width(reference, rotation):
            raise UserError(f"the run's normalisation has {mean.shape[0]} values; these takes have "
                            f"{bvh_feature_width(reference, rotation)} features")
    else:
        train = np.concatenate(raw["train"], 0)
        mean, std = train.mean(0), train.std(0)
        kept = np.flatnonzero(std > 1e-8 * np.maximum(1.0, np.abs(mean)))
        if kept.size == 0:
            raise UserError("every feature of the training takes is constant: the takes do not move")
        std = np.where(std > 1e-8, std, 1.0)
    splits = {name: [torch.tensor(((s - mean) / std)[:, kept], dtype=torch.float32) for s in seqs]
              for name, seqs in raw.items()}
    frame_time = 1.0 / fps
    meta = {
        "motion_format": "bvh", "fps": fps, "frame_time": frame_time, "rotation": rotation,
        "up_axis": up_axis, "mean": mean.tolist(), "std": std.tolist(), "kept": kept.tolist(),
        "skeleton": run_meta["skeleton"] if run_meta is not None else skeleton_to_dict(reference),
        "split_rule": split_rule,
        "files": {s: [str(p.relative_to(root)) if p.is_relative_to(root) else str(p) for p in parts[s]]
                  for s in parts},
    }
    return Dataset("bvh", DataSpec("real", int(kept.size)), splits, meta)


# ---------------------------------------------------------------------------- media
def is_bvh_data(meta) -> bool:
    """Whether a dataset's ``meta`` describes takes of the ``bvh`` dataset."""
    return meta.get("motion_format") == "bvh"


def _check_meta(meta: dict[str, Any]) -> BvhSkeleton:
    missing = [k for k in ("skeleton", "mean", "std", "rotation", "up_axis", "fps") if k not in meta]
    if missing:
        raise UserError(f"the run's dataset metadata lacks {missing[0]!r}, which BVH output needs; "
                        "refit the model with this version of probseq")
    return skeleton_from_dict(meta["skeleton"])


def bvh_motion_from_sample(features, meta: dict[str, Any]) -> np.ndarray:
    """Normalised ``(T, D)`` features (a sample) -> BVH frame values for the run's skeleton."""
    skeleton = _check_meta(meta)
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features, dtype=np.float64)
    mean, std = np.asarray(meta["mean"]), np.asarray(meta["std"])
    kept = np.asarray(meta.get("kept", range(mean.shape[0])), dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != kept.size:
        raise UserError(f"motion frames have shape {tuple(x.shape)}; this dataset's frames have {kept.size} values")
    full = np.broadcast_to(mean, (x.shape[0], mean.shape[0])).copy()
    full[:, kept] = x * std[kept] + mean[kept]
    return bvh_motion_from_features(skeleton, full, rotation=meta["rotation"],
                                    up_axis=int(meta["up_axis"]))


def write_bvh_samples(samples, path: str | Path, meta: dict[str, Any]) -> list[Path]:
    """The ``.bvh`` writer: each sample as a take with the run's skeleton and frame time
    (``path``, or ``stem_1.bvh, stem_2.bvh, ...`` for several)."""
    skeleton = _check_meta(meta)
    path = Path(path)
    seqs = samples.sequences()
    paths = [path] if len(seqs) == 1 else [path.with_name(f"{path.stem}_{i + 1}{path.suffix}")
                                           for i in range(len(seqs))]
    for seq, out in zip(seqs, paths):
        write_bvh(out, skeleton, bvh_motion_from_sample(seq, meta), float(meta.get("frame_time", 1 / meta["fps"])))
    return paths


def write_bvh_gif(samples, path: str | Path, meta: dict[str, Any]) -> list[Path]:
    """The ``.gif`` writer for BVH data: stick figures of the samples' joints, one panel per sample."""
    from probseq.io.stick_figure import animate_stick_figures

    skeleton = _check_meta(meta)
    up = int(meta["up_axis"])
    positions = [bvh_forward_kinematics(skeleton, bvh_motion_from_sample(seq, meta))
                 for seq in samples.sequences()]
    if up == 0:                       # the stick-figure writer knows y-up and z-up; x up -> z up
        positions = [p[..., [1, 2, 0]] for p in positions]
        up = 2
    parents = [j.parent for j in skeleton.joints]
    titles = [f"sample {i + 1}" for i in range(len(positions))]
    return [animate_stick_figures(positions, parents, path, up_axis=up, fps=float(meta["fps"]), titles=titles)]


def read_bvh_prime(path: str | Path, meta: dict[str, Any]) -> torch.Tensor:
    """``--prime take.bvh``: a take of the run's skeleton -> normalised ``(T, D)`` features at the run's fps."""
    skeleton = _check_meta(meta)
    take, motion, frame_time = read_bvh(path)
    difference = skeleton_difference(take, skeleton)
    if difference is not None:
        raise UserError(f"{path} has a different skeleton from the run's ({difference})")
    if motion.shape[0] == 0:
        raise UserError(f"{path} has no frames (Frames: 0)")
    if not np.isfinite(motion).all():
        raise UserError(f"{path} holds NaN or infinite values")
    if not frame_time > 0:
        raise UserError(f"{path} has a frame time of {frame_time}; it must be positive")
    x = bvh_features(take, motion, source_fps=1.0 / frame_time, fps=float(meta["fps"]),
                     rotation=meta["rotation"], up_axis=int(meta["up_axis"]))
    kept = np.asarray(meta.get("kept", range(len(meta["mean"]))), dtype=np.int64)
    return torch.tensor(((x - np.asarray(meta["mean"])) / np.asarray(meta["std"]))[:, kept], dtype=torch.float32)


def _register_media() -> None:
    from probseq.io import media

    media.register_writer(".bvh", write_bvh_samples, when=is_bvh_data)
    media.register_writer(".gif", write_bvh_gif, when=is_bvh_data)
    media.register_prime_reader(".bvh", read_bvh_prime, when=is_bvh_data)


_register_media()
