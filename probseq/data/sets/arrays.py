"""``arrays``: sequences from NumPy files or CSV files, and the same formats back out.

The simplest way in for anything else (sensors, finance, features):

``--data arrays --data-file x.npz``
    Every array of the archive is one sequence ``(T, D)`` (a ``(T,)`` array is ``(T, 1)``; an
    ``(N, T, D)`` array is ``N`` sequences). An archive written by ``probseq sample --out x.npz``
    (``values (B, T, D)`` with ``lengths``) is read as its ``B`` sequences.
``--data arrays --data-file x.npy``
    One numeric array (no Python objects): ``(N, T, D)`` is ``N`` sequences, ``(T, D)`` one.
``--data arrays --data-dir DIR``
    Every ``*.csv`` (and ``*.npy`` / ``*.npz``) under ``DIR``: a CSV file is one sequence, one frame
    per row, one value per column, separated by commas (or tabs or semicolons); a first row that is
    not numbers is a header (its names are kept for output). An empty cell is a missing value.

Sequences are split by a hash of their name (the file's path relative to the folder, plus
``/key`` or ``/index`` for one array of a file with several; ``valid_fraction`` and
``test_fraction``, default 0.1 each), so adding a sequence never moves another.

Options (``--set key=value``):

``values``
    ``auto`` (default): ``binary`` when every value is 0 or 1, else ``real``; or force ``binary``
    (refused when another value occurs) or ``real``.
``normalise``
    ``true`` (default): real values are z-scored per column with the mean and standard deviation of
    the **training frames** (``meta["mean"]``, ``meta["std"]``; a constant column gets std 1), and
    ``probseq sample`` writes in the original units again. ``false`` keeps the values as they are.
``missing``
    ``error`` (default): a NaN or an empty CSV cell is an error naming the file. ``allow``: missing
    values are kept as NaN (the frames' ``observed`` mask, :mod:`probseq.data.batch`), for models
    that score and train on the observed part; the normalisation ignores them.

Bad input is one sentence naming the file: a ragged CSV row, a cell that is not a number, an
infinite value, a sequence with no frames, files whose frames have different numbers of columns.
A file that cannot be read at all (not CSV text, a damaged archive) is skipped with a warning line.

Output: ``probseq sample RUN --out s.npz`` (``values (B, T, D)``, ``lengths``, ``meta``, as the
built-in writer, but in the original units) or ``--out s.csv`` (one file per sequence:
``s.csv`` for one, ``s_0.csv, s_1.csv, ...`` for several, with the input's header). ``--prime``
takes a ``.csv``, ``.npy`` or ``.npz`` in the original units (its first sequence).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probseq.data.folder import find_files, read_all, split_names
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.io import media

__all__ = ["load_arrays", "read_array_file", "write_arrays_npz", "write_arrays_csv", "is_arrays_data"]

_EXTENSIONS = (".csv", ".npy", ".npz")


class _Unreadable(UserError):
    """A file that cannot be read at all (skipped with a warning, unlike bad values)."""


# ------------------------------------------------------------------------------------ reading
def _csv_sequence(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """One CSV file -> ``(T, D)`` float64 (NaN for empty cells) and the header's names (or ``None``)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise _Unreadable(f"{path} is not a text CSV file (it is not UTF-8)") from None
    except OSError as exc:
        raise _Unreadable(f"{path} cannot be read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise _Unreadable(f"{path} is not a text CSV file (it holds NUL bytes)")
    lines = [line for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    delimiter = next((d for d in (",", "\t", ";") if d in first), ",")
    rows = list(csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter))
    header = None

    def number(cell: str) -> float | None:
        cell = cell.strip()
        if cell == "":
            return np.nan
        try:
            return float(cell)
        except ValueError:
            return None

    if rows and any(number(c) is None for c in rows[0]):
        header, rows = [c.strip() for c in rows[0]], rows[1:]
    if not rows:
        raise UserError(f"{path} holds no frames (a sequence needs at least one row of numbers)")
    width = len(header) if header is not None else len(rows[0])
    out = np.empty((len(rows), width), dtype=np.float64)
    line_offset = 2 if header is not None else 1
    for i, row in enumerate(rows):
        if len(row) != width:
            raise UserError(f"{path} row {i + line_offset} has {len(row)} values, but the "
                            f"{'header' if header is not None else 'first row'} has {width}")
        for j, cell in enumerate(row):
            value = number(cell)
            if value is None:
                raise UserError(f"{path} row {i + line_offset}, column {j + 1} holds {cell.strip()!r}, "
                                "which is not a number")
            out[i, j] = value
    return out, header


def _as_sequences(array: np.ndarray, path: Path, name: str | None) -> list[tuple[str | None, np.ndarray]]:
    where = f"{path}" + (f" (array {name!r})" if name is not None else "")
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise UserError(f"{where} holds a {array.dtype} array; arrays must be numeric")
    if np.iscomplexobj(array):
        raise UserError(f"{where} holds complex numbers; arrays must be real")
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1:
        return [(name, array[:, None])]
    if array.ndim == 2:
        return [(name, array)]
    if array.ndim == 3:
        prefix = "" if name is None else f"{name}/"
        return [(f"{prefix}{i}", a) for i, a in enumerate(array)]
    raise UserError(f"{where} has shape {array.shape}; expected (time, values), (time,) or "
                    "(sequences, time, values)")


def read_array_file(path: Path) -> tuple[list[tuple[str | None, np.ndarray]], list[str] | None]:
    """One file -> ``[(name within the file or None, (T, D) float64)]`` and the column names.

    Raises ``_Unreadable`` (a ``UserError``) for a file that cannot be read at all, ``UserError``
    for bad contents.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        array, header = _csv_sequence(path)
        return [(None, array)], header
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise _Unreadable(f"{path} cannot be read ({exc.strerror or exc})") from None
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK\x03\x04"):
        raise _Unreadable(f"{path} is not a NumPy .npy or .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UserError(f"{path} holds Python objects (a ragged list?); save each sequence as its "
                            "own array, e.g. np.savez(path, *sequences)") from None
        raise _Unreadable(f"{path} is not a readable NumPy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise _Unreadable(f"{path} is not a readable NumPy file ({exc})") from None
    if isinstance(loaded, np.ndarray):
        return _as_sequences(loaded, path, None), None
    try:
        with loaded as archive:
            contents = {k: archive[k] for k in archive.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UserError(f"{path} holds Python objects; save each sequence as its own numeric "
                            "array, e.g. np.savez(path, *sequences)") from None
        raise _Unreadable(f"{path} is not a readable .npz archive ({exc})") from None
    except Exception as exc:   # zipfile.BadZipFile, zlib errors, ... on a damaged archive
        raise _Unreadable(f"{path} is not a readable .npz archive ({type(exc).__name__}: {exc})") from None
    if "values" in contents and "lengths" in contents:       # written by probseq sample / the .npz writer
        values, lengths = contents["values"], contents["lengths"]
        if values.ndim != 3 or lengths.shape != (values.shape[0],):
            raise UserError(f"{path}: 'values' must be (sequences, time, values) with one length per sequence")
        header = None
        if "meta" in contents:
            try:
                header = json.loads(str(contents["meta"])).get("columns")
            except (ValueError, AttributeError):
                header = None
        return [(str(i), values[i, : int(n)]) for i, n in enumerate(lengths)], header
    if not contents:
        raise UserError(f"{path} holds no arrays")
    out = []
    for key, array in contents.items():
        out += _as_sequences(array, path, key)
    return out, None


def _check_values(name: str, array: np.ndarray, missing: str) -> None:
    if array.shape[0] == 0:
        raise UserError(f"{name} is a sequence with no frames")
    if array.shape[1] == 0:
        raise UserError(f"{name} has frames with no values")
    if np.isinf(array).any():
        t = int(np.argwhere(np.isinf(array))[0, 0])
        raise UserError(f"{name} holds an infinite value (frame {t}); remove or replace it")
    if missing != "allow" and np.isnan(array).any():
        t = int(np.argwhere(np.isnan(array))[0, 0])
        raise UserError(f"{name} has a missing value (NaN or an empty cell, frame {t}); fill it in, or "
                        "pass --set missing=allow to keep it as missing")


def _natural(text: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text)]


def is_arrays_data(meta: dict) -> bool:
    """Whether ``meta`` is a run fitted on the ``arrays`` dataset."""
    return meta.get("reader") == "arrays"


@register_dataset(
    "arrays",
    description="your own sequences: .npz / .npy arrays of (time, values), or a folder of CSV files "
                "(one sequence per file); binary or real detected, real ones z-scored",
    source="your own files: --data-file x.npz|x.npy|a.csv,b.csv or --data-dir DIR (CSV/.npy/.npz, recursive)",
    needs="file",
)
def load_arrays(data_file: str | Path | None = None, data_dir: str | Path | None = None, *,
                values: str = "auto", normalise: bool = True, missing: str = "error",
                valid_fraction: float = 0.1, test_fraction: float = 0.1,
                run_meta: dict[str, Any] | None = None) -> Dataset:
    """Load sequences from NumPy or CSV files (the formats and options are in the module docstring).

    Args:
        run_meta: a run's stored ``meta``: reuse its normalisation (``mean``/``std``) and value
            kind instead of learning them from this data (the command line passes it when it
            reloads a run's data, e.g. ``evaluate RUN --data-dir OTHER``).

    Returns:
        A :class:`Dataset` ``"arrays"`` of ``(T_i, D)`` float32 sequences.
    """
    values = str(values).lower()
    if values not in ("auto", "binary", "real"):
        raise UserError(f"values must be auto, binary or real, got {values!r}")
    missing = str(missing).lower()
    if missing not in ("error", "allow"):
        raise UserError(f"missing must be error or allow, got {missing!r}")
    if isinstance(normalise, str):
        if normalise.lower() not in ("true", "false"):
            raise UserError(f"normalise must be true or false, got {normalise!r}")
        normalise = normalise.lower() == "true"
    if run_meta is not None and not is_arrays_data(run_meta):
        run_meta = None
    root, files = find_files(data_file=data_file, data_dir=data_dir, extensions=_EXTENSIONS,
                             what="array (.npz, .npy or .csv)")
    contents = read_all(files, read_array_file, what="array", skip_errors=(_Unreadable,))
    # one name per sequence: the file's path relative to the root, plus the array's key or index
    named: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}           # name -> how messages call it
    columns = None
    for path, (seqs, header) in contents.items():
        rel = path.resolve().relative_to(root.resolve()).as_posix()
        columns = columns or header
        for key, array in seqs:
            name = rel if key is None and len(seqs) == 1 else f"{rel}/{key if key is not None else 0}"
            origin[name] = f"{path}" + ("" if key is None else f" (sequence {key})")
            _check_values(origin[name], array, missing)
            named[name] = array
    width = None
    for name, array in named.items():
        if width is None:
            width, first = array.shape[1], name
        elif array.shape[1] != width:
            raise UserError(f"{origin[name]} has frames of {array.shape[1]} values, but "
                            f"{origin[first]} has {width}; every sequence needs the same number of columns")
    if run_meta is not None and int(run_meta.get("dim", width)) != width:
        raise UserError(f"these arrays have {width} columns, but the run was fitted to "
                        f"{run_meta['dim']}")
    parts = split_names(sorted(named, key=_natural), valid_fraction=float(valid_fraction),
                        test_fraction=float(test_fraction))
    parts = {k: sorted(v, key=_natural) for k, v in parts.items()}
    everything = np.concatenate(list(named.values()), axis=0)
    finite = everything[~np.isnan(everything)]
    is_binary = bool(np.isin(finite, (0.0, 1.0)).all())
    if run_meta is not None:
        kind = run_meta["values"]
    elif values == "auto":
        kind = "binary" if is_binary else "real"
    else:
        kind = values
    if kind == "binary" and not is_binary:
        bad = next(n for n, a in named.items() if not np.isin(a[~np.isnan(a)], (0.0, 1.0)).all())
        hint = ("the run was fitted to binary values" if run_meta is not None
                else "use --set values=real")
        raise UserError(f"{origin[bad]} holds values other than 0 and 1, so they cannot be binary; {hint}")
    mean = std = None
    if run_meta is not None:
        if run_meta.get("mean") is not None:
            mean = np.asarray(run_meta["mean"], dtype=np.float64)
            std = np.asarray(run_meta["std"], dtype=np.float64)
    elif kind == "real" and normalise:
        train = np.concatenate([named[n] for n in parts["train"]], axis=0)
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)   # an all-NaN column
                mean = np.nanmean(train, axis=0)
                std = np.nanstd(train, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)

    def tensor(array: np.ndarray) -> torch.Tensor:
        if mean is not None:
            array = (array - mean) / std
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    splits = {k: [tensor(named[n]) for n in v] for k, v in parts.items()}
    if columns is not None and len(columns) != width:
        columns = None
    meta = {
        "media": "arrays", "reader": "arrays", "values": kind, "dim": width,
        "mean": None if mean is None else [float(v) for v in mean],
        "std": None if std is None else [float(v) for v in std],
        "columns": columns, "missing": missing, "source": str(root),
        "title": f"arrays from {root.name or root}",
    }
    return Dataset(name="arrays", spec=DataSpec(kind, width), splits=splits, meta=meta)


# ------------------------------------------------------------------------------------ output
def _original_units(samples, meta: dict) -> list[np.ndarray]:
    seqs = [s.detach().cpu().double().numpy() for s in samples.sequences()]
    if meta.get("mean") is not None:
        mean, std = np.asarray(meta["mean"]), np.asarray(meta["std"])
        seqs = [s * std + mean for s in seqs]
    return seqs


def write_arrays_npz(samples, path: Path, meta: dict) -> Path:
    """``values (B, T, D)`` in the original units (padding 0), ``lengths (B,)``, ``meta`` JSON."""
    seqs = _original_units(samples, meta)
    T = max(len(s) for s in seqs)
    values = np.zeros((len(seqs), T, seqs[0].shape[1]), dtype=np.float64)
    for i, s in enumerate(seqs):
        values[i, : len(s)] = s
    try:
        with open(path, "wb") as f:
            np.savez_compressed(f, values=values, lengths=np.array([len(s) for s in seqs]),
                                meta=np.array(json.dumps(meta, default=str)))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def write_arrays_csv(samples, path: Path, meta: dict) -> list[Path]:
    """One CSV file per sequence (``path``, or ``stem_0.csv, stem_1.csv, ...`` for several)."""
    seqs = _original_units(samples, meta)
    paths = [path] if len(seqs) == 1 else [path.with_name(f"{path.stem}_{i}{path.suffix}")
                                          for i in range(len(seqs))]
    columns = meta.get("columns") or [f"x{j}" for j in range(seqs[0].shape[1])]
    binary = meta.get("values") == "binary"
    for p, s in zip(paths, seqs):
        try:
            with open(p, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(columns)
                for row in s:
                    writer.writerow([str(int(round(v))) if binary else repr(float(v)) for v in row])
        except OSError as exc:
            raise UserError(f"cannot write {p}: {exc.strerror or exc}") from None
    return paths


def read_arrays_prime(path: Path, meta: dict) -> torch.Tensor:
    """The first sequence of a ``.csv`` / ``.npy`` / ``.npz`` file, normalised like the run's data."""
    seqs, _ = read_array_file(path)
    array = seqs[0][1]
    _check_values(str(path), array, str(meta.get("missing", "error")))
    if array.shape[1] != int(meta["dim"]):
        raise UserError(f"the prime {path} has {array.shape[1]} columns, the run's data {meta['dim']}")
    if meta.get("mean") is not None:
        array = (array - np.asarray(meta["mean"])) / np.asarray(meta["std"])
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


media.register_writer(".npz", write_arrays_npz, when=is_arrays_data)
media.register_writer(".csv", write_arrays_csv, when=is_arrays_data)
for _ext in _EXTENSIONS:
    media.register_prime_reader(_ext, read_arrays_prime, when=is_arrays_data)
