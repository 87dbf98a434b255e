"""Run directories and checkpoints.

A run directory holds:

``run.json``
    What was fitted: model name, data spec, hyperparameters, training options, dataset name and
    location, dataset metadata (plain JSON), seed, probseq version.
``model.pt``
    The selected weights (the best on validation when early stopping is on): ``{"state_dict": ...}``.
``checkpoint.pt``
    Everything needed to resume: model and optimiser state, step, random-generator states, data order.
``log.jsonl``
    One JSON object per logged event (training loss, validation loss, diagnostics).

Every ``.pt`` file is written atomically (temporary file, then ``os.replace``) and loaded with
``torch.load(weights_only=True)``: only tensors and plain containers, never arbitrary pickles.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["atomic_save", "safe_load", "write_run_info", "read_run_info", "save_weights", "load_run",
           "RUN_FORMAT"]

RUN_FORMAT = "probseq-run"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same directory, then rename over ``path``.

    A failed write (a full disk, a quota) removes the temporary file, leaves ``path`` as it was and
    raises one :class:`UserError` sentence; a process killed mid-write leaves the temporary file
    ``.NAME.*.tmp``, which the next ``probseq fit`` on the directory removes
    (:func:`probseq.train.run_directory.remove_temporaries`).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"could not write {path}: no space left on the device (the previous "
                            f"{path.name} is unchanged); free some space and continue with --resume") from None
        if isinstance(exc, OSError):
            raise UserError(f"could not write {path}: {exc.strerror or exc}") from None
        if isinstance(exc, RuntimeError) and "PytorchStreamWriter" in str(exc):   # torch's zip writer
            raise UserError(f"could not write {path} ({str(exc).splitlines()[0]}); is the disk full?") from None
        raise


def safe_load(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with a clear error for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe files
        raise UserError(f"{path} is not a readable probseq checkpoint ({type(exc).__name__})") from None


def _jsonable(value: Any) -> Any:
    """Keep what JSON can hold; drop the rest (dataset metadata may hold arrays)."""
    try:
        json.dumps(value)
        return value
    except TypeError:
        if isinstance(value, dict):
            return {str(k): _jsonable(v) for k, v in value.items() if _jsonable(v) is not None}
        if isinstance(value, (list, tuple)):
            return [_jsonable(v) for v in value]
        if hasattr(value, "tolist"):
            return value.tolist()
        return None


def write_run_info(run_dir: Path, info: dict[str, Any]) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_jsonable({"format": RUN_FORMAT, **info}), indent=2, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=run_dir, prefix=".run.json.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.replace(tmp, run_dir / "run.json")


def read_run_info(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    path = run_dir / "run.json"
    if not run_dir.is_dir() or not path.is_file():
        raise UserError(f"{run_dir} is not a probseq run directory (no run.json); create one with probseq fit")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path} is corrupt (not valid JSON)") from None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise UserError(f"{path} is not a probseq run description")
    _check_run_info(info, path)
    return info


#: the fields of ``run.json`` that every command reads: (name, accepted types, required)
_RUN_FIELDS = (("model", (str,), True), ("spec", (dict,), True), ("hyperparameters", (dict,), True),
               ("training", (dict,), False), ("dataset", (dict,), True), ("seed", (int,), False),
               ("steps", (int, type(None)), False), ("epochs", (int, float, type(None)), False),
               ("minutes", (int, float, type(None)), False), ("meta", (dict, type(None)), False))


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else {"str": "a string", "dict": "an object",
                                                        "int": "an integer", "float": "a number"}[t.__name__]
                       for t in types)


def _check_run_info(info: dict[str, Any], path: Path) -> None:
    """One sentence for a ``run.json`` whose fields have the wrong types (hand-edited or damaged).

    The hyperparameters' own types and ranges are checked when the model is built
    (:func:`probseq.models.registry.build_model`), against the model's declared defaults.
    """
    for name, types, required in _RUN_FIELDS:
        if name not in info:
            if required:
                raise UserError(f"{path} lacks the field {name!r}")
            continue
        value = info[name]
        if isinstance(value, bool) or not isinstance(value, types) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise UserError(f"{path}: the field {name!r} should be {_type_names(types)}, got {value!r}")
    spec = info["spec"]
    if not isinstance(spec.get("kind"), str) or isinstance(spec.get("dim"), bool) \
            or not isinstance(spec.get("dim"), int) or spec["dim"] < 1:
        raise UserError(f"{path}: the field 'spec' should be {{\"kind\": ..., \"dim\": a positive integer}}, "
                        f"got {spec!r}")
    dataset = info["dataset"]
    if not isinstance(dataset.get("name"), str):
        raise UserError(f"{path}: the dataset should have a name, got {dataset!r}")
    for key in ("data_file", "data_dir"):
        if not isinstance(dataset.get(key), (str, type(None))):
            raise UserError(f"{path}: the dataset's {key} should be a path or null, got {dataset[key]!r}")
    if not isinstance(dataset.get("options"), (dict, type(None))):
        raise UserError(f"{path}: the dataset's options should be an object, got {dataset['options']!r}")


def save_weights(run_dir: Path, model: torch.nn.Module) -> None:
    atomic_save({"state_dict": model.state_dict()}, Path(run_dir) / "model.pt")


def load_run(run_dir: str | Path, *, device: str | torch.device | None = None):
    """Rebuild the model of a run directory with its selected weights.

    The weights are read onto the CPU (``map_location``, ``weights_only=True``) and the model is
    moved to ``device`` (``None``: stays on the CPU), so a run trained on a GPU loads anywhere.
    Returns ``(model, info)`` where ``info`` is the parsed ``run.json``.
    """
    from probseq.models.registry import build_model

    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    weights = run_dir / "model.pt"
    if not weights.is_file():
        raise UserError(f"{run_dir} has no model.pt yet; the run has not saved weights")
    try:
        spec = DataSpec.from_dict(info["spec"])
        model = build_model(info["model"], spec, dict(info.get("hyperparameters") or {}))
    except KeyError as exc:
        raise UserError(f"{run_dir / 'run.json'} lacks the field {exc.args[0]!r}") from None
    state = safe_load(weights)
    if not isinstance(state, dict) or "state_dict" not in state:
        raise UserError(f"{weights} does not hold model weights")
    try:
        model.load_state_dict(state["state_dict"])
    except RuntimeError:
        raise UserError(f"{weights} does not match the model described in run.json") from None
    if device is not None:
        from probseq.device import resolve_device

        model.to(resolve_device(device))
    model.eval()
    return model, info
