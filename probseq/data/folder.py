"""Datasets made of the user's own files: finding them, splitting them, caching their conversion.

Shared by the folder datasets (``midi``, ``arrays``, ``bvh``, ``video``). Four small pieces:

:func:`find_files`
    The files a dataset is given: ``--data-dir DIR`` (searched recursively for the dataset's
    extensions, in sorted order) or ``--data-file`` (one path, or several separated by commas).
:func:`split_files`
    The deterministic train/valid/test split. Each file's path *relative to the root* (POSIX form)
    is hashed with SHA-256 to a number :math:`u \\in [0, 1)`; the file goes to ``test`` when
    :math:`u < f_\\text{test}`, to ``valid`` when :math:`f_\\text{test} \\le u < f_\\text{test} +
    f_\\text{valid}`, else to ``train``. A file's split depends on its own path only, so adding or
    removing files never moves the others (the property a growing collection needs), and moving the
    whole folder elsewhere changes nothing. With very few files a split can come out empty by chance;
    then (and only then) files are moved deterministically so that ``train`` is never empty and
    ``valid``/``test`` are not empty when there are at least 3 files (see :func:`split_files`).
:func:`cached_conversion`
    A converted file (a dict of numpy arrays) cached in the data home under
    ``cache/<kind>/<key>.npz``, where the key hashes the file's *content* (not its name or date) with
    the conversion options and a format version. Written to a temporary file and renamed, so an
    interrupted run never leaves half a cache entry; read with ``allow_pickle=False``.
:func:`read_all`
    Convert every file, skipping the unreadable ones with one warning line each on stderr
    (``probseq: warning: skipped FILE: REASON``); none readable is one :class:`UserError`.

Convention for loaders that *learn* preprocessing from the training split (normalisation
constants, ...): they accept a keyword ``run_meta=None`` and put what they learnt in
``Dataset.meta``. When the command line reloads a run's data (``evaluate``, ``compare``,
``plot``, ``fit --resume``, also with ``--data-dir OTHER``) it passes the run's stored ``meta`` as
``run_meta``, and the loader must then reuse those constants instead of recomputing them, so
another folder is scored in the run's own units. ``run_meta`` is never a ``--set`` option.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from probseq.data.home import data_home
from probseq.errors import UserError

__all__ = ["find_files", "split_files", "split_names", "split_fraction_of", "cached_conversion", "read_all",
           "warn_skipped", "file_digest", "boolean_option", "split_in_time", "SPLITS"]

SPLITS = ("train", "valid", "test")


# ------------------------------------------------------------------------------------ finding
def _file_list(data_file: str | Path) -> list[Path]:
    """``--data-file`` as a list of paths: one path, or several separated by commas."""
    text = str(data_file)
    if Path(text).exists() or "," not in text:
        return [Path(text)]
    return [Path(p.strip()) for p in text.split(",") if p.strip()]


def find_files(*, data_file: str | Path | Sequence[str | Path] | None = None,
               data_dir: str | Path | None = None, extensions: Iterable[str],
               what: str = "data") -> tuple[Path, list[Path]]:
    """The files to read and the root their split is computed against.

    Args:
        data_file: one file, several separated by commas, or a list of files (each must exist and
            have one of ``extensions``).
        data_dir: a directory, searched recursively for files whose lower-cased name ends with one of
            ``extensions`` (hidden files and folders, names starting with ``.``, are ignored).
        extensions: e.g. ``(".mid", ".midi")``.
        what: the kind of file in error messages (``"MIDI"``).

    Returns:
        ``(root, files)``: ``files`` sorted; ``root`` is ``data_dir``, or for ``data_file`` the
        files' common parent directory.

    Raises:
        UserError: neither or both given, a missing file, a wrong extension, or no file found.
    """
    exts = tuple(e.lower() for e in extensions)
    if (data_file is None) == (data_dir is None):
        raise UserError(f"give the {what} files with --data-dir DIR or --data-file FILE[,FILE...]"
                        if data_file is None else "give either --data-file or --data-dir, not both")
    if data_dir is not None:
        root = Path(data_dir)
        if not root.is_dir():
            raise UserError(f"--data-dir {root} is not a directory")
        files = sorted(p for p in root.rglob("*")
                       if p.is_file() and p.name.lower().endswith(exts)
                       and not any(part.startswith(".") for part in p.relative_to(root).parts))
        if not files:
            raise UserError(f"{root} holds no {what} files ({', '.join(exts)}), searched recursively")
        return root, files
    paths = ([Path(p) for p in data_file] if isinstance(data_file, (list, tuple))
             else _file_list(data_file))
    for path in paths:
        if not path.is_file():
            raise UserError(f"no such file: {path}")
        if not path.name.lower().endswith(exts):
            raise UserError(f"{path} is not a {what} file (expected {', '.join(exts)})")
    paths = sorted(set(p.resolve() for p in paths))
    root = Path(os.path.commonpath([str(p.parent) for p in paths]))
    return root, paths


# ------------------------------------------------------------------------------------ splitting
def split_fraction_of(relative_path: str) -> float:
    """The file's place :math:`u \\in [0, 1)`: the first 8 bytes of SHA-256 of its relative POSIX path."""
    digest = hashlib.sha256(relative_path.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def split_files(files: Sequence[Path], root: Path, *, valid_fraction: float = 0.1,
                test_fraction: float = 0.1) -> dict[str, list[Path]]:
    """The deterministic split by path hash (see the module docstring).

    Args:
        files: the dataset's files.
        root: the paths are hashed relative to this directory.
        valid_fraction, test_fraction: expected shares of the files, each in ``[0, 1)`` and summing
            below 1.

    Returns:
        ``{"train": [...], "valid": [...], "test": [...]}``, each sorted.

    With few files a split may come out empty by chance. Then, in this order: if ``train`` is
    empty, the file with the largest :math:`u` joins it; if there are at least 3 files and
    ``valid`` (``test``) is empty but its fraction is positive, the ``train`` file whose :math:`u`
    is nearest above the valid (test) interval moves there, provided ``train`` keeps a file. Only
    these degenerate cases move files, so for collections of a few dozen files the split is the
    pure hash rule.
    """
    root = Path(root).resolve()
    names = {}
    for f in files:
        try:
            names[Path(f).resolve().relative_to(root).as_posix()] = Path(f)
        except ValueError:
            names[Path(f).name] = Path(f)
    parts = split_names(list(names), valid_fraction=valid_fraction, test_fraction=test_fraction)
    return {s: sorted(names[n] for n in parts[s]) for s in SPLITS}


def split_names(names: Sequence[str], *, valid_fraction: float = 0.1,
                test_fraction: float = 0.1) -> dict[str, list[str]]:
    """:func:`split_files` for names that are not files (``"x.npz/arr_3"``: one array of a file).

    The same rule on the given strings, hashed as they are.
    """
    for name, value in (("valid_fraction", valid_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= float(value) < 1.0:
            raise UserError(f"{name} must be in [0, 1), got {value}")
    if valid_fraction + test_fraction >= 1.0:
        raise UserError(f"valid_fraction + test_fraction must be below 1, got "
                        f"{valid_fraction} + {test_fraction}")
    u = {n: split_fraction_of(n) for n in names}
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for f, x in u.items():
        out["test" if x < test_fraction else "valid" if x < test_fraction + valid_fraction
            else "train"].append(f)
    if not out["train"] and u:
        best = max(u, key=u.get)
        for s in ("valid", "test"):
            if best in out[s]:
                out[s].remove(best)
        out["train"].append(best)
    if len(u) >= 3:
        for s, fraction, edge in (("valid", valid_fraction, test_fraction + valid_fraction),
                                  ("test", test_fraction, 0.0)):
            if fraction > 0 and not out[s] and len(out["train"]) > 1:
                move = min(out["train"], key=lambda f: (u[f] - edge) % 1.0)
                out["train"].remove(move)
                out[s].append(move)
    return {s: sorted(out[s]) for s in SPLITS}


# ------------------------------------------------------------------------------------ caching
#: bump when a conversion changes its output for the same file and options (old entries are ignored)
CACHE_FORMAT = 1


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_key(digest: str, kind: str, options: Mapping[str, Any]) -> str:
    text = json.dumps({"file": digest, "kind": kind, "options": dict(options), "format": CACHE_FORMAT},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cached_conversion(path: Path, kind: str, options: Mapping[str, Any],
                      convert: Callable[[Path], Mapping[str, np.ndarray]], *,
                      cache: bool = True) -> tuple[dict[str, np.ndarray], bool]:
    """``convert(path)`` through the cache in ``data_home()/cache/<kind>/``.

    Args:
        path: the file.
        kind: the converter's name (``"midi"``); a folder of its own in the cache.
        options: every option that changes the conversion's output (JSON-serialisable); part of
            the key with the file's content hash.
        convert: ``path -> {name: numpy array}``; numeric arrays only (no objects, so the cache is
            read back with ``allow_pickle=False``). It raises ``UserError`` for an unreadable file.
        cache: ``False`` to convert without reading or writing the cache.

    Returns:
        ``(arrays, hit)``: the arrays and whether they came from the cache.

    A cache folder that cannot be written is not an error: the conversion is simply not kept.
    """
    if not cache:
        return {k: np.asarray(v) for k, v in convert(path).items()}, False
    digest = file_digest(path)
    folder = data_home() / "cache" / kind
    entry = folder / f"{_cache_key(digest, kind, options)}.npz"
    if entry.is_file():
        try:
            with np.load(entry, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}, True
        except (OSError, ValueError, EOFError):
            pass                                          # a damaged entry: convert again
    arrays = {k: np.asarray(v) for k, v in convert(path).items()}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, entry)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass
    return arrays, False


# ------------------------------------------------------------------------------------ reading
def warn_skipped(path: Path | str, reason: str) -> None:
    """One warning line on stderr: ``probseq: warning: skipped PATH: REASON`` (``skipped: REASON``
    when the reason already starts with the path)."""
    if reason.startswith(str(path)):
        print(f"probseq: warning: skipped: {reason}", file=sys.stderr)
    else:
        print(f"probseq: warning: skipped {path}: {reason}", file=sys.stderr)


def read_all(files: Sequence[Path], read: Callable[[Path], Any], *, what: str = "data",
             skip_errors: tuple[type[BaseException], ...] = (UserError, OSError, ValueError,
                                                             EOFError, KeyError, IndexError)
             ) -> dict[Path, Any]:
    """``{file: read(file)}`` for every file that can be read.

    A file whose ``read`` raises one of ``skip_errors`` is skipped with one warning line
    (:func:`warn_skipped`); when none can be read, one ``UserError`` says so and names the first
    file's reason. Any other exception propagates (a bug, not a bad file).
    """
    out: dict[Path, Any] = {}
    first: tuple[Path, str] | None = None
    for f in files:
        try:
            out[Path(f)] = read(Path(f))
        except skip_errors as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            first = first or (Path(f), reason)
            warn_skipped(f, reason)
    if not out:
        assert first is not None or not files
        if first is None:
            raise UserError(f"no {what} files to read")
        raise UserError(f"none of the {len(files)} {what} file(s) could be read "
                        f"(first: {first[0]}: {first[1]})")
    return out


def boolean_option(name: str, value: Any) -> bool:
    """A ``--set name=...`` flag: ``true``/``false`` (also 1/0, yes/no) as a bool, else one sentence."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise UserError(f"option {name} must be true or false, got {value!r}")


def split_in_time(sequences: Mapping[str, np.ndarray], unit: str) -> dict[str, list[np.ndarray]]:
    """Contiguous 80/10/10 chunks in time of each sequence, for folders of fewer than 3 files.

    ``sequences`` maps a file's name to its ``(T, ...)`` array; ``unit`` names what a file is
    (``"take"``, ``"video"``) in the error a sequence shorter than 10 frames gets.
    """
    out: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for name, seq in sequences.items():
        n = seq.shape[0]
        if n < 10:
            raise UserError(f"{name} has {n} frames; with fewer than 3 {unit}s each {unit} is split "
                            "80/10/10 in time into train/valid/test, which needs at least 10 frames")
        a, b = int(round(0.8 * n)), int(round(0.9 * n))
        out["train"].append(seq[:a])
        out["valid"].append(seq[a:b])
        out["test"].append(seq[b:])
    return out
