"""Read pickles of plain data without executing code.

A pickle is a small program: ``GLOBAL``/``STACK_GLOBAL`` opcodes import any callable and ``REDUCE``
calls it, so ``pickle.load`` on a file from the internet can run ``os.system``. The
Boulanger-Lewandowski ``.pickle`` files and ``jsb-chorales-quarter.pkl`` hold only dicts, lists,
tuples, strings and numpy integer scalars, so :class:`RestrictedUnpickler` resolves only the numpy
callables those need (scalar reconstruction, ``numpy.dtype``, ndarray reconstruction, and
``_codecs.encode`` restricted to latin-1, which protocol-2 array pickles use) and raises
:class:`~probseq.errors.UserError` for every other global. Containers and strings are built by
opcodes that import nothing, so they need no permission.

The allowed callables cannot reach code execution: ``scalar(dtype, bytes)`` builds a numpy scalar
from raw bytes, ``dtype(...)`` a dtype, ``_reconstruct(ndarray, shape, dtype)`` an empty array
whose state is then set by ``BUILD`` (object arrays' items come from the same restricted stream).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

from probseq.errors import UserError

__all__ = ["RestrictedUnpickler", "safe_load", "safe_loads", "ALLOWED_GLOBALS", "describe_exception"]

#: (module, name) pairs a pickle may import; both numpy 1 (``numpy.core``) and numpy 2
#: (``numpy._core``) spellings, since the file records the module path of the numpy that wrote it.
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),  # arrays pickled with protocol 5
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("_codecs", "encode"),  # protocol-2 array bytes; only latin-1 is allowed, see _latin1_encode
    }
)


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` limited to the latin-1 text->bytes step numpy's protocol-2 pickles use."""
    if not isinstance(obj, str) or encoding.lower().replace("_", "-") not in ("latin1", "latin-1"):
        raise UserError("the pickle asks for a text codec other than latin-1, which probseq refuses")
    return obj.encode("latin-1", errors="strict")


def describe_exception(exc: BaseException, limit: int = 160) -> str:
    """``"TypeName: message"`` on one line, shortened, for the end of a one-sentence UserError."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _multiarray():
    """numpy's ``multiarray`` module under its current name (no deprecation warning on numpy 2)."""
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    return multiarray


def _resolve(module: str, name: str) -> Any:
    import numpy

    if module == "_codecs":
        return _latin1_encode
    if name in ("scalar", "_reconstruct"):
        return getattr(_multiarray(), name)
    if name == "_frombuffer":
        try:
            from numpy._core import numeric  # numpy >= 2
        except ImportError:  # pragma: no cover - numpy 1.x
            from numpy.core import numeric
        return numeric._frombuffer
    return getattr(numpy, name)


class RestrictedUnpickler(pickle.Unpickler):
    """A :class:`pickle.Unpickler` whose ``find_class`` only knows :data:`ALLOWED_GLOBALS`."""

    def __init__(self, file: BinaryIO, *, source: str = "the pickle") -> None:
        # latin1 decodes Python 2 byte strings (numpy scalars' raw bytes) losslessly
        super().__init__(file, encoding="latin1")
        self._source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle API
        if (module, name) not in ALLOWED_GLOBALS:
            raise UserError(
                f"{self._source} asks to load {module}.{name}, which probseq refuses because "
                "unpickling it could run code; only plain lists, dicts and numpy numbers are accepted"
            )
        return _resolve(module, name)

    def persistent_load(self, pid: Any) -> Any:  # noqa: D102 - pickle API
        raise UserError(f"{self._source} uses persistent ids, which probseq does not accept")


def _load(stream: BinaryIO, source: str) -> Any:
    try:
        return RestrictedUnpickler(stream, source=source).load()
    except UserError:
        raise
    except MemoryError:
        raise UserError(f"{source} is too large or corrupt to unpickle") from None
    except Exception as exc:  # truncated/corrupt streams raise many types
        raise UserError(f"{source} is not a readable pickle ({describe_exception(exc)})") from None


def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; any failure is a one-line ``UserError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    return _load(io.BytesIO(data), str(path))


def safe_loads(data: bytes, *, source: str = "the pickle") -> Any:
    """Unpickle bytes with :class:`RestrictedUnpickler`."""
    return _load(io.BytesIO(data), source)
