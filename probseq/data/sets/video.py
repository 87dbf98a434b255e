"""``video``: a folder of videos (GIF, MP4, ...) or of frame folders (PNG sequences), as grey frames.

``--data video --data-dir DIR`` finds, recursively, every video file (``.gif``, ``.mp4``, ``.mov``,
``.avi``, ``.mkv``, ``.webm``, ``.m4v``; read with ``imageio``, MP4 and the others through
``imageio-ffmpeg``) and every folder holding image files (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``,
``.tif``, ``.tiff``: one video whose frames are the images in natural name order, ``frame2``
before ``frame10``). ``--data-file a.gif,b.mp4`` names video files directly.

Each frame is converted to grey levels (Pillow's ``convert("L")``, ITU-R 601-2 luma), resized to
``size`` (``size=32`` for 32x32, ``size=24x32`` for 24 rows by 32 columns; Pillow's bilinear
filter, which averages over the source pixels when shrinking) and scaled to ``[0, 1]``; with
``binarise=true`` every value above ``threshold`` (0.5) becomes 1 and the rest 0. Frames are then
resampled in time to ``fps``: frame ``k`` is the source frame on screen at time ``k / fps`` (so an
integer ratio keeps every ``r``-th frame, and a GIF's own frame durations are honoured). A
video's rate is its metadata's (MP4), its frame durations' (GIF: one over the median duration),
or ``folder_fps`` (default 10) for a frame folder; ``fps`` defaults to the rate of the first
video of the training split.

The frames are ``DataSpec("binary", H * W)`` (grey levels are Bernoulli means, as in
``bouncing-balls``), with ``meta["frame_shape"] = [H, W]`` and ``meta["fps"]``, so ``probseq
sample RUN --out x.gif`` (or ``x.mp4``, ``x.png``) shows them as images at the data's rate.

Splits: with at least 3 videos, whole videos by a hash of their path (:mod:`probseq.data.folder`);
with 1 or 2, each is cut in time, its first 80% of frames for ``train``, the next 10% for
``valid`` and the last 10% for ``test``. Videos stay whole; the trainer's ``--set train_chunk=L``
trains on random windows of ``L`` frames of long ones. Converted video files are cached in the data home
(keyed by their content and ``size``); frame folders are read each time.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probseq.data.folder import boolean_option, cached_conversion, read_all, split_in_time, split_names
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "load_video_folder", "parse_frame_size", "read_video",
           "read_frame_folder", "resample_frames"]

VIDEO_EXTENSIONS = (".gif", ".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: the frame duration assumed for a GIF frame that states none (what browsers show)
_GIF_DEFAULT_MS = 100.0


# ---------------------------------------------------------------------------- options
def parse_frame_size(size: Any) -> tuple[int, int]:
    """``32`` -> ``(32, 32)``; ``"24x32"`` -> ``(24, 32)`` (rows x columns)."""
    text = str(size).strip().lower()
    match = re.fullmatch(r"(\d+)(?:\s*x\s*(\d+))?", text)
    if not match:
        raise UserError(f"video option size must be N (square) or HxW, e.g. 32 or 24x32, got {size!r}")
    h = int(match.group(1))
    w = int(match.group(2)) if match.group(2) else h
    if h < 1 or w < 1:
        raise UserError(f"video option size must be positive, got {size!r}")
    return h, w


def _positive(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"video option {name} must be a number, got {value!r}") from None
    if not x > 0:
        raise UserError(f"video option {name} must be positive, got {value!r}")
    return x


# ---------------------------------------------------------------------------- reading
def _grey_resized(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """One frame (``(h, w)`` or ``(h, w, channels)``, any integer or float type) -> ``(H, W)`` uint8."""
    from PIL import Image

    a = np.asarray(frame)
    if np.issubdtype(a.dtype, np.floating):           # [0, 1] intensities
        a = np.clip(np.round(a * 255.0), 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:                          # 16-bit and other integer images
        a = np.clip(np.round(a.astype(np.float64) * (255.0 / np.iinfo(a.dtype).max)), 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    image = Image.fromarray(a)
    if image.mode != "L":
        image = image.convert("L")
    h, w = shape
    return np.asarray(image.resize((w, h), Image.BILINEAR), dtype=np.uint8)


def read_video(path: Path, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """A video file -> ``{"frames": (T, H, W) uint8, "starts": (T,) seconds}`` (grey, resized).

    GIF frames keep their own durations; other formats their metadata's frame rate.
    """
    try:
        import imageio.v3 as iio
    except ImportError:
        raise UserError("reading videos needs imageio: pip install 'imageio>=2' imageio-ffmpeg") from None
    suffix = path.suffix.lower()
    if suffix != ".gif" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise UserError(f"reading {path} needs imageio-ffmpeg (pip install imageio-ffmpeg); GIF files "
                        "and folders of PNG frames work without it")
    try:
        if suffix == ".gif":
            frames = iio.imread(path, index=None)
            durations = []
            for k in range(frames.shape[0]):
                ms = float(iio.immeta(path, index=k).get("duration") or 0.0)
                durations.append(ms if ms > 0 else _GIF_DEFAULT_MS)
            seconds = np.asarray(durations) / 1000.0
        else:
            frames = iio.imread(path, index=None, plugin="FFMPEG")
            fps = float(iio.immeta(path, plugin="FFMPEG").get("fps") or 0.0)
            if not fps > 0:
                raise UserError(f"{path} states no frame rate")
            seconds = np.full(frames.shape[0], 1.0 / fps)
    except UserError:
        raise
    except Exception as exc:                     # imageio raises many types for a bad file
        raise UserError(f"{path} is not a readable video ({type(exc).__name__}: "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})") from None
    if frames.ndim == 2:                          # a single still image
        frames = frames[None]
    if frames.shape[0] == 0:
        return {"problem": np.array("has no frames")}
    grey = np.stack([_grey_resized(f, shape) for f in frames])
    starts = np.concatenate([[0.0], np.cumsum(seconds)[:-1]])
    return {"frames": grey, "starts": starts, "end": np.array(float(np.sum(seconds)))}


def _natural_key(path: Path) -> list:
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", path.name)]


def read_frame_folder(folder: Path, images: list[Path], shape: tuple[int, int],
                      folder_fps: float) -> dict[str, np.ndarray]:
    """A folder of still images (natural name order) -> the arrays of :func:`read_video`, or
    ``{"problem": ...}`` naming the first image whose size differs from the first one's."""
    from PIL import Image, UnidentifiedImageError

    images = sorted(images, key=_natural_key)
    frames, first_size = [], None
    for image_path in images:
        try:
            with Image.open(image_path) as image:
                image.load()
                size = image.size
                if first_size is None:
                    first_size = size
                elif size != first_size:
                    return {"problem": np.array(
                        f"frame {image_path.name} is {size[0]}x{size[1]} pixels but the first frame, "
                        f"{images[0].name}, is {first_size[0]}x{first_size[1]}; all frames of a video "
                        "must have one size")}
                frames.append(_grey_resized(np.asarray(image.convert("L")), shape))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"{image_path} is not a readable image ({type(exc).__name__})") from None
    n = len(frames)
    return {"frames": np.stack(frames), "starts": np.arange(n) / folder_fps, "end": np.array(n / folder_fps)}


def native_fps(starts: np.ndarray, end: float) -> float:
    """A video's own rate: one over its median frame duration (to 6 decimals: 100 ms -> 10 fps)."""
    durations = np.diff(np.append(starts, end))
    return round(float(1.0 / np.median(durations)), 6)


def resample_frames(frames: np.ndarray, starts: np.ndarray, end: float, fps: float) -> np.ndarray:
    """The frames on screen at times ``0, 1/fps, 2/fps, ...`` before ``end`` (seconds)."""
    count = max(1, int(np.ceil(end * fps - 1e-6)))
    times = np.arange(count) / fps
    index = np.searchsorted(starts, times + 1e-9, side="right") - 1
    return frames[np.clip(index, 0, len(frames) - 1)]


# ---------------------------------------------------------------------------- finding videos
def _find_items(data_file, data_dir) -> tuple[Path, dict[str, tuple[Path, list[Path] | None]]]:
    """``(root, {relative name: (path, images or None)})``: video files, and frame folders with their images."""
    from probseq.data.folder import find_files

    if data_file is not None:
        root, files = find_files(data_file=data_file, data_dir=None, extensions=VIDEO_EXTENSIONS, what="video")
        return root, {str(p.relative_to(root).as_posix()) if p.is_relative_to(root) else str(p): (p, None)
                      for p in files}
    if data_dir is None:
        raise UserError("give the videos with --data-dir DIR (video files or folders of frames) or "
                        "--data-file FILE[,FILE...]")
    root = Path(data_dir)
    if not root.is_dir():
        raise UserError(f"--data-dir {root} is not a directory")
    items: dict[str, tuple[Path, list[Path] | None]] = {}
    folders: dict[Path, list[Path]] = {}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        name = p.name.lower()
        if name.endswith(VIDEO_EXTENSIONS):
            items[p.relative_to(root).as_posix()] = (p, None)
        elif name.endswith(IMAGE_EXTENSIONS):
            folders.setdefault(p.parent, []).append(p)
    for folder, images in folders.items():
        items[folder.relative_to(root).as_posix() + "/"] = (folder, images)
    if not items:
        raise UserError(f"{root} holds no videos ({', '.join(VIDEO_EXTENSIONS)}) and no folders of frames "
                        f"({', '.join(IMAGE_EXTENSIONS)}), searched recursively")
    return root, dict(sorted(items.items()))


# ---------------------------------------------------------------------------- the loader
@register_dataset(
    "video",
    description="your videos (GIF, MP4, ...) or folders of PNG frames: grey or binarised frames, "
                "resized to size (32x32), resampled to fps",
    source="your own files: --data-dir DIR (videos and frame folders, searched recursively) or "
           "--data-file a.gif,b.mp4",
    needs="dir",
)
def load_video_folder(data_file: str | Path | None = None, data_dir: str | Path | None = None, *,
                      size: Any = 32, fps: float | None = None, binarise: Any = False,
                      threshold: float = 0.5, folder_fps: float = 10,
                      valid_fraction: float = 0.1, test_fraction: float = 0.1, cache: bool = True,
                      run_meta: dict[str, Any] | None = None) -> Dataset:
    """Load a folder of videos (see the module docstring)."""
    shape = parse_frame_size(size)
    binarise = boolean_option("binarise", binarise)
    threshold = float(threshold)
    if not 0.0 <= threshold < 1.0:
        raise UserError(f"video option threshold must be in [0, 1), got {threshold}")
    folder_fps = _positive("folder_fps", folder_fps)
    if run_meta is not None and run_meta.get("media") == "video" and run_meta.get("fps"):
        fps = float(run_meta["fps"])              # another folder in the run's own frame rate
    fps = None if fps is None else _positive("fps", fps)
    root, items = _find_items(data_file, data_dir)

    def read(name_path: Path) -> dict[str, np.ndarray]:
        path, images = by_path[name_path]
        if images is not None:
            return read_frame_folder(path, images, shape, folder_fps)
        return cached_conversion(path, "video", {"size": list(shape)}, lambda p: read_video(p, shape),
                                 cache=bool(cache))[0]

    by_path = {path: (path, images) for path, images in items.values()}
    arrays = read_all([path for path, _ in items.values()], read, what="video")
    names = {path: name for name, (path, _) in items.items()}
    for path, a in arrays.items():
        if "problem" in a:
            raise UserError(f"{path} {a['problem']}")
    readable = {names[path]: a for path, a in arrays.items()}
    if len(readable) >= 3:
        parts = split_names(list(readable), valid_fraction=float(valid_fraction),
                            test_fraction=float(test_fraction))
    else:
        parts = {"train": sorted(readable), "valid": [], "test": []}
    if fps is None:
        first = readable[parts["train"][0]]
        fps = native_fps(first["starts"], float(first["end"]))
    videos = {}
    for name, a in readable.items():
        v = resample_frames(a["frames"], a["starts"], float(a["end"]), fps).astype(np.float32) / 255.0
        if v.shape[0] < 2:
            raise UserError(f"{root / name} has fewer than 2 frames at {fps:g} fps")
        if binarise:
            v = (v > threshold).astype(np.float32)
        videos[name] = v.reshape(v.shape[0], -1)
    if len(readable) >= 3:
        raw = {s: [videos[n] for n in parts[s]] for s in parts}
        split_rule = "whole videos by path hash"
    else:
        raw = split_in_time(videos, "video")
        split_rule = "contiguous 80/10/10 of each video"
    splits = {split: [torch.from_numpy(np.ascontiguousarray(s)) for s in seqs] for split, seqs in raw.items()}
    meta = {"media": "video", "title": "video", "frame_shape": list(shape), "fps": float(fps),
            "binarise": binarise, "threshold": threshold, "split_rule": split_rule,
            "files": {s: list(parts[s]) for s in parts}}
    return Dataset("video", DataSpec("binary", shape[0] * shape[1]), splits, meta)
