"""Piano-rolls: binary ``(T, 88)`` frames, and the files of Boulanger-Lewandowski et al. (2012).

A piano-roll frame is a 0/1 vector over the 88 piano keys; column ``j`` is MIDI note
``lowest_note + j`` (21 = A0 up to 108 = C8). One frame is one time step (a quarter note for
JSB Chorales, an eighth note for Piano-midi.de, Nottingham and MuseData). A sequence is a
``(T, 88)`` float32 tensor of 0s and 1s.

Boulanger-Lewandowski, Bengio & Vincent, "Modeling temporal dependencies in high-dimensional
sequences: application to polyphonic music generation and transcription", ICML 2012, published the
four data sets with fixed train/valid/test splits in two formats, both read here:

* ``.mat`` (MATLAB v5): keys ``traindata``, ``validdata``, ``testdata``; each a ``(1, N)`` object
  array of ``(T_i, 88)`` uint8 0/1 rolls.
* ``.pickle`` / ``.pkl``: a dict ``{"train", "valid", "test"}`` -> list of sequences -> list of
  time steps -> the active MIDI note numbers (numpy int64 in the original files). Read with
  :mod:`probseq.io.safe_pickle`, which executes no code.
* ``.json`` (and ``.json.gz``): the same nesting with plain integers.

In a pickle, a sequence may also be a ``(T, 88)`` numeric 0/1 array (a roll rather than note lists).

Every malformed input (missing split, wrong width, NaN, non-binary values, a note outside the
keyboard, an empty sequence) is reported as one :class:`~probseq.errors.UserError` sentence that
names the file, split and sequence.
"""

from __future__ import annotations

import gzip
import json
import math
import operator
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from probseq.io.safe_pickle import describe_exception
from probseq.errors import UserError

__all__ = [
    "LOWEST_NOTE",
    "N_KEYS",
    "SPLITS",
    "notes_to_roll",
    "roll_to_notes",
    "check_roll",
    "read_pianoroll_file",
    "write_notes_json",
]

#: MIDI number of the lowest piano key (A0); column 0 of a roll
LOWEST_NOTE = 21
#: keys on a piano; the width of a roll
N_KEYS = 88
#: the standard split names, in order
SPLITS = ("train", "valid", "test")
_MAT_KEYS = {"train": "traindata", "valid": "validdata", "test": "testdata"}


# --------------------------------------------------------------------------- conversions
def _as_note(value: Any, where: str) -> int:
    """An integer MIDI number from an int, numpy integer or integral float; else UserError."""
    if isinstance(value, (bool, np.bool_)):
        raise UserError(f"{where} holds the boolean {value!r} where a MIDI note number was expected")
    try:
        return operator.index(value)
    except TypeError:
        pass
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise UserError(f"{where} holds {value!r} where an integer MIDI note number was expected")


def notes_to_roll(steps: Sequence[Iterable[Any]], *, lowest_note: int = LOWEST_NOTE,
                  n_keys: int = N_KEYS, where: str = "sequence") -> Tensor:
    """Convert note lists to a piano-roll.

    Args:
        steps: one iterable of active MIDI note numbers per time step (empty = silence).
        lowest_note: MIDI number of column 0.
        n_keys: number of columns.
        where: how error messages name this sequence (e.g. ``"file.pkl, split 'train', sequence 3"``).

    Returns:
        ``(T, n_keys)`` float32 tensor, ``roll[t, n - lowest_note] = 1`` for each note ``n`` of step ``t``.

    Raises:
        UserError: empty sequence, a step that is not a list of integers, or a note outside
            ``[lowest_note, lowest_note + n_keys - 1]``.
    """
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise UserError(f"{where} is a {type(steps).__name__}, expected a list of time steps")
    if len(steps) == 0:
        raise UserError(f"{where} has no time steps; every sequence needs at least one")
    highest = lowest_note + n_keys - 1
    times: list[int] = []
    cols: list[int] = []
    for t, step in enumerate(steps):
        if isinstance(step, (str, bytes, Mapping)) or not isinstance(step, Iterable):
            raise UserError(
                f"{where}, step {t} is a {type(step).__name__}, expected a list of MIDI note numbers"
            )
        for value in step:
            note = _as_note(value, f"{where}, step {t}")
            if not lowest_note <= note <= highest:
                raise UserError(
                    f"{where}, step {t} has MIDI note {note}, outside the piano range "
                    f"{lowest_note}..{highest}"
                )
            times.append(t)
            cols.append(note - lowest_note)
    roll = torch.zeros(len(steps), n_keys, dtype=torch.float32)
    if times:
        roll[torch.tensor(times), torch.tensor(cols)] = 1.0
    return roll


def roll_to_notes(roll: Tensor | np.ndarray, *, lowest_note: int = LOWEST_NOTE) -> list[list[int]]:
    """The inverse of :func:`notes_to_roll`: ``(T, K)`` 0/1 roll -> per-step sorted note lists.

    Entries greater than 0.5 count as active.
    """
    arr = np.asarray(roll.detach().cpu() if isinstance(roll, Tensor) else roll)
    if arr.ndim != 2:
        raise UserError(f"a piano-roll must have shape (time, keys), got {arr.shape}")
    active = arr > 0.5
    return [(np.flatnonzero(row) + lowest_note).tolist() for row in active]


def check_roll(array: Any, *, n_keys: int = N_KEYS, where: str = "sequence") -> Tensor:
    """Validate a numeric piano-roll and return it as a ``(T, n_keys)`` float32 0/1 tensor.

    Raises:
        UserError: not 2-D, wrong width, no frames, NaN/inf, or values other than 0 and 1.
    """
    try:
        arr = np.asarray(array)
    except Exception:  # ragged or odd objects
        raise UserError(f"{where} is not a numeric array") from None
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise UserError(f"{where} is not a numeric array (dtype {arr.dtype})")
    if arr.ndim != 2:
        raise UserError(f"{where} has shape {arr.shape}; a piano-roll must be (time steps, {n_keys})")
    if arr.shape[1] != n_keys:
        raise UserError(f"{where} has {arr.shape[1]} columns; a piano-roll has {n_keys} (one per key)")
    if arr.shape[0] == 0:
        raise UserError(f"{where} has no time steps; every sequence needs at least one")
    if np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.complexfloating):
        if not np.isfinite(arr).all():
            raise UserError(f"{where} contains NaN or infinite values")
    if not np.isin(arr, (0, 1)).all():
        bad = arr[~np.isin(arr, (0, 1))].flat[0]
        raise UserError(f"{where} contains the value {bad!r}; a piano-roll holds only 0 and 1")
    return torch.from_numpy(arr.astype(np.float32, copy=True))


# --------------------------------------------------------------------------- file readers
def read_pianoroll_file(path: str | Path, *, lowest_note: int = LOWEST_NOTE,
                        n_keys: int = N_KEYS) -> dict[str, list[Tensor]]:
    """Read a Boulanger-Lewandowski piano-roll file with its standard splits.

    Args:
        path: a ``.mat``, ``.pickle``/``.pkl``, ``.json`` or ``.json.gz`` file (formats in the
            module docstring).
        lowest_note, n_keys: the keyboard (column ``j`` = MIDI ``lowest_note + j``).

    Returns:
        ``{"train": [...], "valid": [...], "test": [...]}``, each a list of ``(T_i, n_keys)``
        float32 0/1 tensors, in file order.

    Raises:
        UserError: missing/unreadable/corrupt file, unknown suffix, missing split, bad contents.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    name = path.name.lower()
    if name.endswith(".mat"):
        return _read_mat(path, n_keys)
    if name.endswith((".pickle", ".pkl")):
        from probseq.io.safe_pickle import safe_load

        return _from_note_lists(safe_load(path), str(path), lowest_note, n_keys)
    if name.endswith((".json", ".json.gz")):
        return _from_note_lists(_read_json(path), str(path), lowest_note, n_keys)
    raise UserError(
        f"cannot read piano-rolls from {path.name}: expected a .mat, .pickle, .pkl, .json or "
        ".json.gz file"
    )


def _read_json(path: Path) -> Any:
    try:
        raw = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
        return json.loads(raw.decode("utf-8"))
    except (OSError, EOFError, gzip.BadGzipFile, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"{path} is not a readable JSON file ({describe_exception(exc)})") from None


def _read_mat(path: Path, n_keys: int) -> dict[str, list[Tensor]]:
    import scipy.io

    try:
        contents = scipy.io.loadmat(str(path))
    except NotImplementedError:
        raise UserError(
            f"{path} is a MATLAB v7.3 (HDF5) file, which probseq does not read; save it with "
            "save(..., '-v7') instead"
        ) from None
    except Exception as exc:  # scipy raises ValueError, TypeError, OSError, ... on corrupt files
        raise UserError(f"{path} is not a readable MATLAB .mat file ({describe_exception(exc)})") from None
    missing = [key for key in _MAT_KEYS.values() if key not in contents]
    if missing:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise UserError(
            f"{path} lacks the key(s) {', '.join(missing)}; a piano-roll .mat needs traindata, "
            f"validdata and testdata (found: {', '.join(found) or 'nothing'})"
        )
    splits: dict[str, list[Tensor]] = {}
    for split, key in _MAT_KEYS.items():
        value = contents[key]
        if value.dtype == object:
            items = list(value.ravel())
        elif value.ndim == 3:  # all sequences of one length, stored as (N, T, keys)
            items = list(value)
        else:
            raise UserError(
                f"{path}: {key} has shape {value.shape} and dtype {value.dtype}; expected a cell "
                f"array of (time steps, {n_keys}) piano-rolls"
            )
        splits[split] = [
            check_roll(item, n_keys=n_keys, where=f"{path}, {key}, sequence {i}")
            for i, item in enumerate(items)
        ]
    return splits


def _from_note_lists(data: Any, source: str, lowest_note: int, n_keys: int) -> dict[str, list[Tensor]]:
    if not isinstance(data, Mapping):
        raise UserError(
            f"{source} holds a {type(data).__name__}; expected a dict with keys train, valid and test"
        )
    missing = [s for s in SPLITS if s not in data]
    if missing:
        found = ", ".join(map(str, data)) or "nothing"
        raise UserError(
            f"{source} lacks the split(s) {', '.join(missing)}; it needs train, valid and test "
            f"(found: {found})"
        )
    splits: dict[str, list[Tensor]] = {}
    for split in SPLITS:
        seqs = data[split]
        if isinstance(seqs, (str, bytes, Mapping)) or not isinstance(seqs, Sequence):
            raise UserError(f"{source}: split {split!r} is a {type(seqs).__name__}, expected a list of sequences")
        splits[split] = [
            # a 2-D numeric array is already a roll (some re-packaged pickles hold those)
            check_roll(seq, n_keys=n_keys, where=f"{source}, split {split!r}, sequence {i}")
            if isinstance(seq, np.ndarray) and seq.ndim == 2 and seq.dtype != object else
            notes_to_roll(seq, lowest_note=lowest_note, n_keys=n_keys,
                          where=f"{source}, split {split!r}, sequence {i}")
            for i, seq in enumerate(seqs)
        ]
    return splits


# --------------------------------------------------------------------------- writer
def write_notes_json(splits: Mapping[str, Sequence[Tensor]], path: str | Path, *,
                     lowest_note: int = LOWEST_NOTE) -> Path:
    """Write rolls as the note-list JSON (``.json``, or gzip-compressed ``.json.gz``).

    The file has the ``{"train", "valid", "test"} -> sequences -> steps -> notes`` layout that
    :func:`read_pianoroll_file` reads; the gzip header carries no timestamp, so the bytes depend
    only on the data. This is how ``probseq/data/embedded/jsb_chorales.json.gz`` was made.
    """
    path = Path(path)
    obj = {split: [roll_to_notes(r, lowest_note=lowest_note) for r in rolls]
           for split, rolls in splits.items()}
    text = json.dumps(obj, separators=(",", ":")).encode("utf-8")
    if path.name.lower().endswith(".gz"):
        text = gzip.compress(text, compresslevel=9, mtime=0)
    path.write_bytes(text)
    return path
