"""Media I/O registry: how ``probseq sample --out FILE`` writes samples and reads ``--prime FILE``.

The file's extension picks the function. A dataset module registers its own formats next to its
loader, e.g. in ``probseq/data/sets/mocap.py``::

    from probseq.io.media import register_writer, register_prime_reader
    register_writer(".bvh", write_bvh)                 # fn(samples: Batch, path: Path, meta: dict)
    register_prime_reader(".bvh", read_bvh_prime)      # fn(path: Path, meta: dict) -> (T, D) tensor

Several functions may share an extension: each may pass ``when=lambda meta: ...`` to claim only
some data (the built-in ``.png`` writer draws piano-rolls, film strips or heatmaps depending on
``meta``). Dispatch tries the most recently registered function first and takes the first whose
``when`` accepts the dataset's ``meta`` (``when=None`` accepts everything), so a dataset module's
registration overrides the built-in fallbacks below.

Built in:

=========== ======================================================== =========================
extension   writer                                                   prime reader
=========== ======================================================== =========================
``.npz``    ``values (B, T, ...)``, ``lengths (B,)``, ``meta`` JSON  ``values[0, :lengths[0]]``
``.npy``    --                                                       the array, ``(T, ...)``
``.mid``    piano-rolls (``meta["media"] == "pianoroll"``)           piano-roll at the data's
``.midi``                                                            ``steps_per_beat``
``.png``    piano-roll panels, video film strips, else heatmaps      --
``.gif``    animated video (``meta["frame_shape"] = (H, W)``)        --
``.mp4``    the same as H.264 (needs imageio-ffmpeg)                 --
=========== ======================================================== =========================

Metadata keys read here: ``media`` (``"pianoroll"``), ``lowest_note``, ``n_keys``,
``steps_per_beat``, ``tempo_bpm`` (piano-rolls); ``frame_shape`` and ``fps`` (video).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.io.safe_pickle import describe_exception
from probseq.errors import UserError

__all__ = ["register_writer", "register_prime_reader", "write_samples", "read_prime",
           "writer_extensions", "prime_extensions", "is_pianoroll"]

Writer = Callable[[Batch, Path, dict], Any]
PrimeReader = Callable[[Path, dict], Tensor]
When = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True)
class _Entry:
    fn: Callable
    when: When | None

    def accepts(self, meta: Mapping[str, Any]) -> bool:
        return self.when is None or bool(self.when(meta))


_WRITERS: dict[str, list[_Entry]] = {}
_READERS: dict[str, list[_Entry]] = {}


def _normalise_ext(ext: str) -> str:
    ext = ext.strip().lower()
    if not ext or ext == ".":
        raise ValueError("a media extension must be non-empty, e.g. '.mid'")
    return ext if ext.startswith(".") else "." + ext


def _register(table: dict[str, list[_Entry]], ext: str, fn: Callable, when: When | None) -> None:
    entries = table.setdefault(_normalise_ext(ext), [])
    entry = _Entry(fn, when)
    if entry not in entries:  # importing a module twice must not register twice
        entries.append(entry)


def register_writer(ext: str, fn: Writer, *, when: When | None = None) -> Writer:
    """Register ``fn(samples: Batch, path: Path, meta: dict)`` for output files ending in ``ext``.

    ``fn`` may return the paths it wrote (a list or one path); any other return value (``None``)
    means it wrote just ``path``.
    ``when(meta)`` limits it to some datasets. Returns ``fn`` (usable as a decorator helper).
    """
    _register(_WRITERS, ext, fn, when)
    return fn


def register_prime_reader(ext: str, fn: PrimeReader, *, when: When | None = None) -> PrimeReader:
    """Register ``fn(path: Path, meta: dict) -> Tensor (T, D)`` for ``--prime`` files ending in ``ext``."""
    _register(_READERS, ext, fn, when)
    return fn


def _load_dataset_modules() -> None:
    # dataset modules register their own formats when imported
    from probseq.data.registry import import_dataset_modules

    import_dataset_modules()


def writer_extensions() -> list[str]:
    """Every extension some writer handles (after importing all dataset modules)."""
    _load_dataset_modules()
    return sorted(_WRITERS)


def prime_extensions() -> list[str]:
    """Every extension some prime reader handles (after importing all dataset modules)."""
    _load_dataset_modules()
    return sorted(_READERS)


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _pick(table: dict[str, list[_Entry]], path: Path, meta: Mapping[str, Any], what: str) -> Callable:
    ext = _suffix(path)
    known = ", ".join(sorted(table))
    if ext not in table:
        if not ext:
            raise UserError(f"{path} has no file extension, so probseq cannot tell which format to "
                            f"{what}; use one of {known}")
        raise UserError(f"probseq cannot {what} {ext} files; known extensions: {known}")
    for entry in reversed(table[ext]):
        if entry.accepts(meta):
            return entry.fn
    kind = meta.get("media") or "this"
    raise UserError(f"no {ext} format fits {kind} data; known extensions: {known}")


def write_samples(samples: Batch | Tensor, path: str | Path,
                  meta: Mapping[str, Any] | None = None) -> list[Path]:
    """Write sampled sequences to ``path`` in the format its extension names.

    Args:
        samples: a :class:`Batch` ``(B, T, ...)`` with lengths, or a ``(B, T, ...)`` tensor of
            full-length sequences.
        path: output file; parent directories are created.
        meta: the dataset's ``meta`` (piano-roll timing, frame shape, ...).

    Returns:
        The files written.

    Raises:
        UserError: unknown extension (the message lists the known ones), a format that does not
            fit the data, or a missing optional package.
    """
    _load_dataset_modules()
    meta = dict(meta or {})
    if isinstance(samples, Tensor):
        if samples.dim() < 2:
            raise UserError(f"samples must have shape (batch, time, ...), got {tuple(samples.shape)}")
        samples = Batch(samples, torch.full((samples.shape[0],), samples.shape[1], dtype=torch.long))
    path = Path(path)
    writer = _pick(_WRITERS, path, meta, "write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the directory {path.parent}: {exc.strerror or exc}") from None
    written = writer(samples, path, meta)
    if isinstance(written, (str, Path)):
        return [Path(written)]
    if isinstance(written, (list, tuple)) and written and all(isinstance(p, (str, Path)) for p in written):
        return [Path(p) for p in written]
    return [path]  # None (or anything else): the writer wrote just ``path``


def read_prime(path: str | Path, meta: Mapping[str, Any] | None = None) -> Tensor:
    """Read a ``--prime`` file as the prefix of frames to continue.

    Returns:
        ``(T, D)`` frames (``(T,)`` symbols for categorical data), float32 for real/binary data.

    Raises:
        UserError: missing file, unknown extension, unreadable contents, no frames, NaN.
    """
    _load_dataset_modules()
    meta = dict(meta or {})
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such prime file: {path}")
    reader = _pick(_READERS, path, meta, "read a prime from")
    frames = reader(path, meta)
    if not isinstance(frames, Tensor):
        frames = torch.as_tensor(np.asarray(frames))
    if frames.dim() < 1 or frames.shape[0] == 0:
        raise UserError(f"the prime {path} holds no frames")
    if frames.is_floating_point():
        if not bool(torch.isfinite(frames).all()):
            raise UserError(f"the prime {path} contains NaN or infinite values")
        frames = frames.float()
    return frames


def is_pianoroll(meta: Mapping[str, Any]) -> bool:
    """Whether ``meta`` describes piano-roll data (MIDI in and out makes sense)."""
    return meta.get("media") == "pianoroll"


def _is_video(meta: Mapping[str, Any]) -> bool:
    shape = meta.get("frame_shape")
    return shape is not None and len(shape) == 2


# --------------------------------------------------------------------------- built-in writers
def _write_npz(samples: Batch, path: Path, meta: dict) -> Path:
    try:
        with open(path, "wb") as f:  # a file object keeps numpy from appending ".npz"
            np.savez_compressed(f, values=samples.values.detach().cpu().numpy(),
                                lengths=samples.lengths.detach().cpu().numpy(),
                                meta=np.array(json.dumps(meta, default=str)))
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _write_midi(samples: Batch, path: Path, meta: dict) -> Path:
    from probseq.io.midi import write_pianoroll_midi

    return write_pianoroll_midi(samples, path, lowest_note=int(meta.get("lowest_note", 21)),
                                steps_per_beat=meta.get("steps_per_beat", 1),
                                tempo_bpm=float(meta.get("tempo_bpm", 120)))


def _midi_unfit(samples: Batch, path: Path, meta: dict) -> None:
    raise UserError(f"MIDI output needs piano-roll data (jsb, piano-midi, nottingham, musedata); "
                    f"write {path.stem}.npz or {path.stem}.png instead")


def _write_png(samples: Batch, path: Path, meta: dict) -> Path:
    from probseq.io.plots import plot_frames, plot_pianoroll

    title = f"{len(samples)} samples" + (f" ({meta['title']})" if meta.get("title") else "")
    if is_pianoroll(meta):
        return plot_pianoroll(samples, path, title=title, lowest_note=int(meta.get("lowest_note", 21)),
                              steps_per_beat=meta.get("steps_per_beat"))
    frame_shape = meta.get("frame_shape") if _is_video(meta) else None
    return plot_frames(samples, path, title=title, frame_shape=frame_shape)


def _video_canvas(samples: Batch, meta: dict) -> np.ndarray:
    """``(T, rows, cols)`` uint8 frames: the sequences side by side (up to 4 per row) on a grey
    background, nearest-neighbour upscaled to about 120 pixels per sequence."""
    try:
        from PIL import Image
    except ImportError:
        raise UserError("video output needs Pillow; install it with: pip install probseq[media]") from None
    H, W = (int(v) for v in meta["frame_shape"])
    values = samples.padded_with_zeros().detach().cpu().float()
    B, T = values.shape[:2]
    if values[0, 0].numel() != H * W:
        raise UserError(f"frames of {values[0, 0].numel()} values cannot be shown as {H}x{W} images")
    frames = values.reshape(B, T, H, W).clamp(0, 1).numpy()
    cols = min(B, 4)
    rows = -(-B // cols)
    pad = 2
    canvas = np.full((T, rows * (H + pad) + pad, cols * (W + pad) + pad), 0.5, dtype=np.float32)
    for b in range(B):
        r, c = divmod(b, cols)
        y, x = pad + r * (H + pad), pad + c * (W + pad)
        canvas[:, y:y + H, x:x + W] = frames[b]
    scale = max(1, 120 // max(H, W))
    return np.stack([np.asarray(Image.fromarray((frame * 255).round().astype(np.uint8), mode="L")
                                .resize((canvas.shape[2] * scale, canvas.shape[1] * scale), Image.NEAREST))
                     for frame in canvas])


def _write_gif(samples: Batch, path: Path, meta: dict) -> Path:
    """Animated GIF: the sequences side by side (up to 4 per row), nearest-neighbour upscaled."""
    canvas = _video_canvas(samples, meta)            # says what to install when Pillow is missing
    from PIL import Image

    images = [Image.fromarray(frame, mode="L") for frame in canvas]
    duration = int(round(1000 / float(meta.get("fps", 10))))
    try:
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                       duration=duration, loop=0)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from None
    return path


def _write_mp4(samples: Batch, path: Path, meta: dict) -> Path:
    """MP4 (H.264 through imageio-ffmpeg) of the same picture as the GIF, padded to 16-pixel blocks."""
    try:
        import imageio.v3 as iio
        import imageio_ffmpeg  # noqa: F401  (the FFMPEG plugin needs it)
    except ImportError:
        raise UserError("MP4 output needs imageio and imageio-ffmpeg (pip install 'imageio>=2' imageio-ffmpeg); "
                        f"write {path.stem}.gif instead") from None
    canvas = _video_canvas(samples, meta)
    T, h, w = canvas.shape
    padded = np.full((T, -(-h // 16) * 16, -(-w // 16) * 16), 128, dtype=np.uint8)
    padded[:, :h, :w] = canvas
    try:
        iio.imwrite(path, padded, plugin="FFMPEG", fps=float(meta.get("fps", 10)), macro_block_size=16)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc}") from None
    return path


def _gif_unfit(samples: Batch, path: Path, meta: dict) -> None:
    raise UserError("GIF output needs video data (a dataset whose frames are images); "
                    f"write {path.stem}.npz or {path.stem}.png instead")


def _mp4_unfit(samples: Batch, path: Path, meta: dict) -> None:
    raise UserError("MP4 output needs video data (a dataset whose frames are images); "
                    f"write {path.stem}.npz or {path.stem}.png instead")


# --------------------------------------------------------------------------- built-in prime readers
def _read_npy(path: Path, meta: dict) -> Tensor:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # ValueError (pickled objects), OSError, EOFError ...
        raise UserError(f"{path} is not a readable .npy array ({describe_exception(exc)})") from None
    return _prime_from_array(array, path)


def _read_npz(path: Path, meta: dict) -> Tensor:
    try:
        with np.load(path, allow_pickle=False) as archive:
            contents = {k: archive[k] for k in archive.files}
    except Exception as exc:
        raise UserError(f"{path} is not a readable .npz archive ({describe_exception(exc)})") from None
    if "values" in contents:
        values = contents["values"]
        if "lengths" in contents:  # a file written by probseq's .npz writer: take sequence 0
            if values.ndim < 2 or len(contents["lengths"]) != values.shape[0]:
                raise UserError(f"{path}: 'values' must be (batch, time, ...) with one length per sequence")
            return _prime_from_array(values[0, : int(contents["lengths"][0])], path)
        return _prime_from_array(values, path)
    arrays = [k for k in contents if k != "meta"]
    if len(arrays) != 1:
        raise UserError(f"{path} holds arrays {', '.join(contents) or 'none'}; a prime .npz needs "
                        "'values' (and optionally 'lengths') or exactly one array")
    return _prime_from_array(contents[arrays[0]], path)


def _prime_from_array(array: np.ndarray, path: Path) -> Tensor:
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise UserError(f"{path} holds a {array.dtype} array; a prime must be numeric")
    if array.ndim >= 3 and array.shape[0] == 1:  # (1, T, D): one sequence with a batch axis
        array = array[0]
    if array.ndim == 0 or array.shape[0] == 0:
        raise UserError(f"{path} holds an array of shape {array.shape}; a prime needs (time steps, ...)")
    if np.issubdtype(array.dtype, np.integer) and array.ndim == 1:
        return torch.from_numpy(array.astype(np.int64))  # categorical symbols
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _read_midi_prime(path: Path, meta: dict) -> Tensor:
    from probseq.io.midi import read_midi_pianoroll

    return read_midi_pianoroll(path, steps_per_beat=meta.get("steps_per_beat", 1),
                               lowest_note=int(meta.get("lowest_note", 21)),
                               n_keys=int(meta.get("n_keys", 88)))


def _midi_prime_unfit(path: Path, meta: dict) -> Tensor:
    raise UserError("a MIDI prime needs a piano-roll model (trained on jsb, piano-midi, nottingham "
                    "or musedata); give a .npy or .npz prime instead")


# Fallbacks first (tried last), then the specific built-ins.
register_writer(".npz", _write_npz)
for _ext in (".mid", ".midi"):
    register_writer(_ext, _midi_unfit)
    register_writer(_ext, _write_midi, when=is_pianoroll)
    register_prime_reader(_ext, _midi_prime_unfit)
    register_prime_reader(_ext, _read_midi_prime, when=is_pianoroll)
register_writer(".png", _write_png)
register_writer(".gif", _gif_unfit)
register_writer(".gif", _write_gif, when=_is_video)
register_writer(".mp4", _mp4_unfit)
register_writer(".mp4", _write_mp4, when=_is_video)
register_prime_reader(".npy", _read_npy)
register_prime_reader(".npz", _read_npz)
