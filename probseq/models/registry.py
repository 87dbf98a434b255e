"""The registry of model classes, by the names the command line uses.

Every module in :mod:`probseq.models` is imported on first use and registers its classes with
:func:`register_model`, so a new model is one new file; :func:`build_model` turns a name, a
:class:`~probseq.data.spec.DataSpec` and ``--set`` options into a model. The generic tests in
``tests/test_model_contract.py`` run over every registered model and fail if one has no example.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
from typing import Any

from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["register_model", "build_model", "model_class", "model_names", "parse_option_value",
           "check_hyperparameter", "ZERO_ALLOWED", "MAX_MODEL_SIZE"]

_MODELS: dict[str, type] = {}

def register_model(cls: type) -> type:
    """Class decorator: make ``cls`` buildable by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no registry name")
    if cls.name in _MODELS and _MODELS[cls.name] is not cls:
        raise ValueError(f"two models are registered as {cls.name!r}")
    _MODELS[cls.name] = cls
    return cls


def _load_all() -> None:
    """Import every module of :mod:`probseq.models` once, so each registers its classes."""
    import probseq.models as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def model_names() -> list[str]:
    _load_all()
    return sorted(_MODELS)


def model_class(name: str) -> type:
    _load_all()
    if name not in _MODELS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def parse_option_value(key: str, text: str, default: Any) -> Any:
    """Convert a ``--set key=value`` string to the type of the default value."""
    try:
        if isinstance(default, bool):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return _finite(key, float(text))
        if default is None:
            for convert in (int, float):
                try:
                    return _finite(key, convert(text))
                except ValueError:
                    pass
            return None if text.lower() == "none" else text
    except ValueError:
        raise UserError(f"option {key}={text!r} is not a valid {type(default).__name__}") from None
    return text


def _finite(key: str, value: float) -> float:
    """``value``, or one sentence when it is NaN or infinite (no option means either)."""
    if not math.isfinite(value):
        raise UserError(f"option {key}={value} must be a finite number")
    return value


def build_model(name: str, spec: DataSpec, options: dict[str, Any] | None = None):
    """Build model ``name`` for data ``spec`` with hyperparameters ``options`` (strings are converted)."""
    cls = model_class(name)
    options = dict(options or {})
    unknown = set(options) - set(cls.hyperparameters)
    if unknown:
        raise UserError(
            f"model {name!r} has no hyperparameter {sorted(unknown)[0]!r}; it has "
            f"{', '.join(sorted(cls.hyperparameters)) or 'none'}"
        )
    typed = {k: parse_option_value(k, v, cls.hyperparameters[k]) if isinstance(v, str) else v
             for k, v in options.items()}
    for key, value in typed.items():
        check_hyperparameter(name, key, value, cls.hyperparameters[key])
    size = _size_on_meta_device(cls, spec, typed)
    if size is not None and size > MAX_MODEL_SIZE:
        raise UserError(f"model {name!r} with these sizes would hold {size:.3g} numbers, more than probseq "
                        f"builds ({MAX_MODEL_SIZE:.3g}); check the hyperparameters "
                        f"({', '.join(f'{k}={v}' for k, v in typed.items()) or 'defaults'})")
    try:
        return cls(spec, **typed)
    except (MemoryError, RuntimeError) as exc:
        if not isinstance(exc, MemoryError) and "alloc" not in str(exc).lower():
            raise
        raise UserError(f"model {name!r} does not fit in memory with these sizes "
                        f"({', '.join(f'{k}={v}' for k, v in typed.items()) or 'defaults'})") from None


#: integer hyperparameters that may be 0 (it switches a feature off, or means "the default size");
#: every other integer hyperparameter is a size or a count and must be at least 1
ZERO_ALLOWED = frozenset({"factors", "pretrain_steps", "train_context", "exact_max_units", "seed",
                          "valid_seed"})
#: the most parameters and buffers (numbers) a model may hold: 2**30, 4 GiB of float32
MAX_MODEL_SIZE = 2 ** 30


def check_hyperparameter(model: str, key: str, value: Any, default: Any) -> None:
    """One sentence for a value of the wrong type (by the default's) or out of its range.

    Booleans must be booleans; integers integers (``1e12`` from a ``run.json`` is a float, not a
    size), at least 1 unless :data:`ZERO_ALLOWED`; real numbers finite. Other hyperparameters
    (names, ``None`` defaults) are the model's to check.
    """
    where = f"hyperparameter {key} of model {model!r}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise UserError(f"{where} must be true or false, got {value!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{where} must be an integer, got {value!r}")
        low = 0 if key in ZERO_ALLOWED else 1
        if value < low:
            raise UserError(f"{where} must be at least {low}, got {value}")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{where} must be a finite number, got {value}")
    elif isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where} must be a finite number, got {value}")


def _size_on_meta_device(cls: type, spec: DataSpec, typed: dict[str, Any]) -> int | None:
    """How many numbers the model would hold, built on the ``meta`` device (no memory, no random
    draws); ``None`` when the model cannot be built there (then only the real build can tell)."""
    import torch

    try:
        with torch.device("meta"):
            model = cls(spec, **typed)
    except UserError:
        raise
    except Exception:   # an operation without a meta kernel in the constructor
        return None
    return sum(t.numel() for t in list(model.parameters()) + list(model.buffers()))
