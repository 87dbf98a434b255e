"""The dataset registry: names the command line accepts, what each is, where it comes from.

Every module in :mod:`probseq.data.sets` is imported on first use and calls
:func:`register_dataset`, so a new dataset is one new file. A loader returns a :class:`Dataset`:
its frames' :class:`~probseq.data.spec.DataSpec`, its splits (lists of examples, usually
``(T_i, D)`` tensors) and metadata the media writers need (time resolution, lowest MIDI note,
normalisation constants, ...).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["Dataset", "DatasetInfo", "register_dataset", "load_dataset", "dataset_infos",
           "SHARED_DATA"]

#: the developer copy of the project's data (tests that need it skip when it is absent)
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


@dataclass
class Dataset:
    """A loaded dataset.

    Attributes:
        name: registry name.
        spec: what the frames are.
        splits: ``{"train": [...], "valid": [...], "test": [...]}``; each item one example — a
            ``(T_i, D)`` float32 tensor (binary or real frames), a ``(T_i,)`` int64 tensor
            (categorical), or a model-specific object for conditional models (audio + labels).
        meta: facts for media I/O and models (e.g. ``{"lowest_note": 21, "steps_per_beat": 1}``).
    """

    name: str
    spec: DataSpec
    splits: dict[str, list[Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Any]:
        if name not in self.splits:
            raise UserError(
                f"dataset {self.name!r} has no split {name!r}; it has {', '.join(self.splits)}"
            )
        if not self.splits[name]:
            raise UserError(f"split {name!r} of dataset {self.name!r} is empty")
        return self.splits[name]


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry: the name, one line on what it is, one on where it comes from."""

    name: str
    description: str
    source: str
    loader: Callable[..., Dataset]
    #: how the user points the name at files: ``"file"`` (--data-file), ``"dir"`` (--data-dir),
    #: ``"none"`` (generated), ``"embedded"`` (ships inside the package), or ``"file-or-embedded"``
    needs: str = "file"


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, description: str, source: str, needs: str = "file"):
    """Decorator for a loader ``f(data_file=None, data_dir=None, **options) -> Dataset``."""

    def decorate(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _DATASETS and _DATASETS[name].loader is not loader:
            raise ValueError(f"two datasets are registered as {name!r}")
        _DATASETS[name] = DatasetInfo(name, description, source, loader, needs)
        return loader

    return decorate


def _load_all() -> None:
    import probseq.data.sets as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def dataset_infos() -> list[DatasetInfo]:
    """Every registered dataset, sorted by name."""
    _load_all()
    return [_DATASETS[k] for k in sorted(_DATASETS)]


def load_dataset(name: str, *, data_file: str | Path | None = None,
                 data_dir: str | Path | None = None, **options: Any) -> Dataset:
    """Load dataset ``name``, optionally from the user's own file or directory."""
    _load_all()
    if name not in _DATASETS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_DATASETS))}")
    for path in (data_file, data_dir):
        if path is not None and not Path(path).exists():
            raise UserError(f"no such file or directory: {path}")
    return _DATASETS[name].loader(data_file=data_file, data_dir=data_dir, **options)
