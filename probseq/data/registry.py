"""The dataset registry: names the command line accepts, what each is, where it comes from.

Every module in :mod:`probseq.data.sets` is imported on first use and calls
:func:`register_dataset`, so a new dataset is one new file. A loader returns a :class:`Dataset`:
its frames' :class:`~probseq.data.spec.DataSpec`, its splits (lists of examples, usually
``(T_i, D)`` tensors) and metadata the media writers need (time resolution, lowest MIDI note,
normalisation constants, ...).

Where the data comes from, in order: the user's ``--data-file`` / ``--data-dir``; else the dataset's
place in the data home (:mod:`probseq.data.home`, ``$PROBSEQ_DATA``, default ``~/.cache/probseq``);
else what the loader does without a path (the embedded copy, a generator, or a clear error).
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from probseq.data.home import find_in_home
from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["Dataset", "DatasetInfo", "register_dataset", "load_dataset", "dataset_infos",
           "dataset_info", "home_path", "import_dataset_modules"]


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
        fresh: for generated datasets, ``fresh(n, seed) -> list`` of ``n`` new training examples
            drawn like the training split (the trainer's ``fresh=true`` option); ``None`` otherwise.
    """

    name: str
    spec: DataSpec
    splits: dict[str, list[Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    fresh: Callable[[int, int], list[Any]] | None = None

    def split(self, name: str) -> list[Any]:
        """The examples of split ``name``; ``"all"`` (when the dataset has no split of that name)
        is every split's examples, train, valid, test order (e.g. to score another folder whole)."""
        if name == "all" and name not in self.splits:
            examples = [x for part in self.splits.values() for x in part]
            if not examples:
                raise UserError(f"dataset {self.name!r} holds no examples")
            return examples
        if name not in self.splits:
            raise UserError(
                f"dataset {self.name!r} has no split {name!r}; it has {', '.join(self.splits)}"
            )
        if not self.splits[name]:
            raise UserError(f"split {name!r} of dataset {self.name!r} is empty; --split all takes "
                            "every example")
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
    #: where the dataset lives inside the data home: paths relative to it, tried in order (a file
    #: found is passed as ``data_file``, a directory as ``data_dir``); empty when it has no place
    home: tuple[str, ...] = ()


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, description: str, source: str, needs: str = "file",
                     home: tuple[str, ...] | str = ()):
    """Decorator for a loader ``f(data_file=None, data_dir=None, **options) -> Dataset``.

    ``home`` is the dataset's place in the data home (see :attr:`DatasetInfo.home`).
    """
    places = (home,) if isinstance(home, str) else tuple(home)

    def decorate(loader: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _DATASETS and _DATASETS[name].loader is not loader:
            raise ValueError(f"two datasets are registered as {name!r}")
        _DATASETS[name] = DatasetInfo(name, description, source, loader, needs, places)
        return loader

    return decorate


def import_dataset_modules() -> None:
    """Import every module of :mod:`probseq.data.sets`, each registering its datasets and media formats."""
    import probseq.data.sets as package

    for info in pkgutil.iter_modules(package.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


def dataset_infos() -> list[DatasetInfo]:
    """Every registered dataset, sorted by name."""
    import_dataset_modules()
    return [_DATASETS[k] for k in sorted(_DATASETS)]


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of ``name`` (a ``UserError`` naming the known ones if there is none)."""
    import_dataset_modules()
    if name not in _DATASETS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(_DATASETS))}")
    return _DATASETS[name]


def home_path(name: str) -> Path | None:
    """Where dataset ``name`` is in the data home, or ``None`` when it is not there."""
    return find_in_home(dataset_info(name).home)


def load_dataset(name: str, *, data_file: str | Path | None = None,
                 data_dir: str | Path | None = None, **options: Any) -> Dataset:
    """Load dataset ``name`` from the user's own file or directory, else from the data home."""
    info = dataset_info(name)
    for path in (data_file, data_dir):
        if path is None or Path(path).exists():
            continue
        # --data-file a.mid,b.mid: several files separated by commas (datasets that take a list)
        parts = [p.strip() for p in str(path).split(",")] if path is data_file else []
        missing = [p for p in parts if p and not Path(p).exists()] if len(parts) > 1 else [str(path)]
        if missing:
            raise UserError(f"no such file or directory: {missing[0]}")
    if data_file is None and data_dir is None:
        found = find_in_home(info.home)
        if found is not None and found.is_dir():
            data_dir = found
        elif found is not None:
            data_file = found
    return _DATASETS[name].loader(data_file=data_file, data_dir=data_dir, **options)
