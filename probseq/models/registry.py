"""The registry of model classes, by the names the command line uses.

Every module in :mod:`probseq.models` is imported on first use and registers its classes with
:func:`register_model`, so a new model is one new file; :func:`build_model` turns a name, a
:class:`~probseq.data.spec.DataSpec` and ``--set`` options into a model. The generic tests in
``tests/test_model_contract.py`` run over every registered model and fail if one has no example.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["register_model", "build_model", "model_class", "model_names", "parse_option_value"]

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
            return float(text)
        if default is None:
            for convert in (int, float):
                try:
                    return convert(text)
                except ValueError:
                    pass
            return None if text.lower() == "none" else text
    except ValueError:
        raise UserError(f"option {key}={text!r} is not a valid {type(default).__name__}") from None
    return text


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
    return cls(spec, **typed)
