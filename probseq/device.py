"""Where tensors live: resolving ``--device`` and the rule for random numbers.

``--device`` (and ``device=`` in the Python API) takes ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or
``mps``. ``auto`` is CUDA when it is available (under ``torchrun``, the GPU of the process's
``LOCAL_RANK``), else CPU. Asking for a device that is not there is a
:class:`~probseq.errors.UserError` with one sentence, never a traceback from deep inside torch.

**The rule for randomness.** Every random draw in probseq goes through a ``torch.Generator`` that
the caller seeds and passes explicitly (``generator=``); the generator lives on the device of the
model's parameters (:func:`generator_for`), and library code creates its random tensors there
(``torch.rand(..., device=p.device, generator=g)``). Nothing draws from torch's global random
state, so the same seed on the same device and thread count repeats a run bit for bit. Tensors a
model creates (masks, index tensors, length tables, AIS chains, sampler state) follow the device of
its parameters (:func:`model_device`); batches move to that device once, at the boundary
(:func:`to_device`).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from probseq.errors import UserError

__all__ = ["DEVICE_CHOICES", "resolve_device", "model_device", "generator_for", "to_device",
           "available_devices"]

#: what ``--device`` accepts (``cuda:N`` for any N as well)
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The :class:`torch.device` that ``name`` asks for; :class:`UserError` if it is not there.

    ``auto`` (or ``None``) is ``cuda`` when CUDA is available, else ``cpu``; a bare ``cuda`` under
    ``torchrun`` is the GPU of the process's ``LOCAL_RANK``.
    """
    if isinstance(name, torch.device):
        name = str(name)
    text = "auto" if name is None else str(name).strip().lower()
    local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "mps":
        if not _mps_available():
            raise UserError("device 'mps' was asked for, but this machine has no usable Apple GPU "
                            "(torch.backends.mps.is_available() is False); use --device cpu")
        return torch.device("mps")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device {text!r} was asked for, but CUDA is not available on this machine "
                            "(no GPU, or torch was built without CUDA); use --device cpu or --device auto")
        if text == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        index_text = text.split(":", 1)[1]
        if not index_text.isdigit():
            raise UserError(f"device {text!r} is not a device name; use cuda:N with a GPU number N")
        index, count = int(index_text), torch.cuda.device_count()
        if index >= count:
            raise UserError(f"device {text!r} was asked for, but this machine has {count} CUDA "
                            f"device(s), numbered 0 to {count - 1}")
        return torch.device("cuda", index)
    raise UserError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def available_devices() -> list[str]:
    """The device types present on this machine: ``cpu`` always, then ``cuda`` and ``mps`` if there."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if _mps_available():
        found.append("mps")
    return found


def model_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's parameters (or buffers); CPU for a module with neither."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def generator_for(device: torch.device | str | torch.nn.Module, seed: int) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` (or on a module's device) seeded with ``seed``."""
    if isinstance(device, torch.nn.Module):
        device = model_device(device)
    return torch.Generator(device=torch.device(device)).manual_seed(int(seed))


def to_device(obj: Any, device: torch.device | str) -> Any:
    """Move a batch (anything with ``.to``), a tensor, or a list/tuple/dict of them to ``device``."""
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    move = getattr(obj, "to", None)
    return move(device) if callable(move) else obj
