"""Partly observed input files for ``probseq infill``: what is missing, and in which units.

* ``.npz`` / ``.npy``: a ``(T, D)`` array (or the ``values`` of a file written by probseq, sequence
  0) in the model's own units; **NaN marks a missing value**. Infinite values are refused.
* Any file ``probseq sample --prime`` reads (MIDI, BVH, ...): read as the model's frames, with a
  time range marked missing by ``--missing-seconds A:B`` (converted to frames with the run's frame
  rate: ``fps`` for motion and video, ``steps_per_beat * tempo_bpm / 60`` for piano-rolls) or
  ``--missing-frames A:B`` (frame indices, end excluded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from probseq.errors import UserError

__all__ = ["read_partial", "parse_range", "frames_per_second", "fill_file"]


def parse_range(text: str, what: str) -> tuple[float, float]:
    """``"A:B"`` -> ``(A, B)`` with ``0 <= A < B``."""
    parts = str(text).split(":")
    try:
        start, stop = (float(p) for p in parts)
    except ValueError:
        raise UserError(f"{what} expects START:STOP (two numbers), got {text!r}") from None
    if not 0 <= start < stop:
        raise UserError(f"{what} needs 0 <= START < STOP, got {text!r}")
    return start, stop


def frames_per_second(meta: Mapping[str, Any]) -> float:
    """The run's frame rate: ``fps``, or ``steps_per_beat * tempo_bpm / 60`` for piano-rolls."""
    if meta.get("fps"):
        return float(meta["fps"])
    if meta.get("steps_per_beat"):
        return float(meta["steps_per_beat"]) * float(meta.get("tempo_bpm", 120)) / 60.0
    raise UserError("this run's data has no frame rate; mark the gap with --missing-frames START:STOP")


def _read_array(path: Path) -> Tensor:
    try:
        with open(path, "rb") as f:
            loaded = np.load(f, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                contents = {k: loaded[k] for k in loaded.files}
            else:
                contents = {"values": loaded}
    except Exception as exc:  # ValueError (pickled objects), OSError, EOFError, zip errors
        raise UserError(f"{path} is not a readable .npy/.npz array ({type(exc).__name__})") from None
    if "values" in contents:
        array = contents["values"]
        if "lengths" in contents:
            if array.ndim < 2 or len(contents["lengths"]) != array.shape[0]:
                raise UserError(f"{path}: 'values' must be (batch, time, ...) with one length per sequence")
            array = array[0, : int(contents["lengths"][0])]
    else:
        arrays = [k for k in contents if k != "meta"]
        if len(arrays) != 1:
            raise UserError(f"{path} holds arrays {', '.join(contents) or 'none'}; give 'values' or exactly one array")
        array = contents[arrays[0]]
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise UserError(f"{path} holds a {array.dtype} array; the input must be numeric")
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or array.shape[0] == 0:
        raise UserError(f"{path} holds an array of shape {array.shape}; infill needs (time steps, dimensions)")
    values = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if bool(torch.isinf(values).any()):
        raise UserError(f"{path} contains infinite values; mark missing values with NaN")
    return values


def read_partial(path: str | Path, meta: Mapping[str, Any], *, missing_seconds: str | None = None,
                 missing_frames: str | None = None) -> Tensor:
    """``(T, D)`` float32 frames with NaN where values are missing (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such input file: {path}")
    if path.suffix.lower() in (".npz", ".npy"):
        values = _read_array(path)
    else:
        from probseq.io.media import read_prime

        values = read_prime(path, meta)
        if values.dim() != 2:
            raise UserError(f"{path} reads as frames of shape {tuple(values.shape)}; infill needs (time, dimensions)")
        values = values.float().clone()
    T = values.shape[0]
    if missing_seconds is not None and missing_frames is not None:
        raise UserError("give --missing-seconds or --missing-frames, not both")
    if missing_seconds is not None:
        start, stop = parse_range(missing_seconds, "--missing-seconds")
        fps = frames_per_second(meta)
        first, last = int(round(start * fps)), int(round(stop * fps))
    elif missing_frames is not None:
        start, stop = parse_range(missing_frames, "--missing-frames")
        first, last = int(start), int(stop)
    else:
        first = last = 0
    if last > first:
        if first >= T:
            raise UserError(f"the gap starts at frame {first}, but {path} has only {T} frames")
        values[first:min(last, T)] = float("nan")
    return values


def fill_file(model, meta: Mapping[str, Any], input_path: str | Path, out: str | Path, *, draws: int = 1,
              particles: int | None = None, mode: bool = False, missing_seconds: str | None = None,
              missing_frames: str | None = None, generator: torch.Generator | None = None) -> str:
    """``probseq infill``: read a partly observed file, fill it in, write the completions to ``out``
    (format by extension); returns the sentence the command prints (what was filled, and how exactly).

    Raises :class:`UserError` for a model that cannot fill in, frames of the wrong size, nothing
    missing, or everything missing.
    """
    from probseq.data.batch import Batch
    from probseq.device import model_device
    from probseq.io.media import write_samples
    from probseq.missing.infill import infill

    if getattr(model, "infill_method", "none") == "none":
        raise UserError(f"model {model.name!r} cannot fill in missing values; models that can: "
                        "independent, nade, rnn, gru, lstm, rnn-nade, rnn-rbm, trbm, rtrbm")
    if model.spec.kind == "categorical":
        raise UserError("infill needs binary or real-valued frames, not categorical symbols")
    values = read_partial(input_path, meta, missing_seconds=missing_seconds, missing_frames=missing_frames)
    if values.shape[1] != model.spec.dim:
        raise UserError(f"{input_path} has frames of dimension {values.shape[1]}; the model expects {model.spec.dim}")
    holes = torch.isnan(values)
    if not bool(holes.any()):
        raise UserError(f"{input_path} has no missing values; mark them with NaN (.npz/.npy) or with "
                        "--missing-seconds / --missing-frames")
    # the observed values must be valid frames for the model (NaN set aside)
    model.validate_examples([torch.where(holes, torch.zeros_like(values), values)], f"the input {input_path}")
    batch = Batch.from_sequences([values]).to(model_device(model))
    result = infill(model, batch, draws=draws, particles=particles, mode=mode, generator=generator)
    completions = result.as_batch(0).to("cpu")
    paths = write_samples(completions, Path(out), meta)
    kind = "exact" if result.exact else "approximate"
    return (f"filled {int(holes.sum())} missing values in {values.shape[0]} frames "
            f"({completions.batch_size} completion(s)) by {result.method} [{kind}]; wrote "
            f"{', '.join(str(p) for p in paths)}")
