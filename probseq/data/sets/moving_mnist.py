"""``moving-mnist``: MNIST digits bouncing in a square (Srivastava, Mansimov & Salakhutdinov 2015).

The standard video benchmark after bouncing balls: each video is ``frames`` (20) frames of a
``size`` x ``size`` (64 x 64) square in which ``digits`` (2) MNIST digits of 28 x 28 pixels move in
straight lines and bounce off the edges, overlapping where they meet (the brighter pixel wins, a
pixel-wise maximum, as in the authors' generator). Each digit starts at a uniformly random place
(its top-left corner in ``[0, size - 28]`` on both axes) with a velocity of uniformly random
direction and a speed uniform in ``[2, 5]`` pixels per frame; positions are rounded to whole
pixels when drawn, and a digit that would leave the square is reflected back into it.

Digits come from the MNIST image files fetched by ``probseq download mnist`` (checksummed) into the
data home's ``mnist/`` folder, or from ``--data-dir DIR`` holding ``train-images-idx3-ubyte`` and
``t10k-images-idx3-ubyte`` (gzipped or not). Training videos use the first 50,000 training digits
(five sixths of the file), validation videos the last 10,000 (one sixth), test videos the 10,000
test digits, so no digit image is shared between splits.

Everything is generated deterministically from ``seed``: video ``i`` of a split comes from its own
random stream (``SeedSequence([seed, split, i])``), so changing ``n_train`` leaves the other videos
unchanged, and ``fresh=true`` training draws new videos from the training digits. Frames are
intensities in ``[0, 1]``, ``DataSpec("binary", size * size)``; ``binarise=true`` thresholds them
at ``threshold`` (0.5). ``meta["frame_shape"]`` lets ``sample --out x.gif`` show them.

Reference: N. Srivastava, E. Mansimov, R. Salakhutdinov, "Unsupervised learning of video
representations using LSTMs", ICML 2015, section 3.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probseq.data.folder import boolean_option
from probseq.data.home import data_home
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["read_idx_images", "moving_mnist_video", "load_moving_mnist", "MNIST_FILES"]

#: the two image files, as ``probseq download mnist`` writes them
MNIST_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
DIGIT = 28
SPEED = (2.0, 5.0)
_SPLIT_INDEX = {"train": 0, "valid": 1, "test": 2}


def read_idx_images(path: Path) -> np.ndarray:
    """An IDX3 image file (MNIST's format, gzipped or not) -> ``(N, rows, cols)`` uint8.

    The format: a big-endian header ``0x00000803`` (unsigned bytes, 3 dimensions), then the three
    sizes as big-endian 32-bit integers, then the pixels row by row.
    """
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise UserError(f"{path} cannot be read ({type(exc).__name__}: {exc})") from None
    if len(data) < 16 or data[:4] != b"\x00\x00\x08\x03":
        raise UserError(f"{path} is not an IDX file of images (it does not start with 0x00000803)")
    n, rows, cols = (int.from_bytes(data[4 + 4 * k: 8 + 4 * k], "big") for k in range(3))
    if len(data) != 16 + n * rows * cols:
        raise UserError(f"{path} holds {len(data) - 16} pixel bytes; its header promises {n} images of "
                        f"{rows}x{cols} = {n * rows * cols}")
    if n == 0:
        raise UserError(f"{path} holds no images")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(n, rows, cols)


def _find_images(folder: Path, split: str) -> Path:
    stem = MNIST_FILES[split]
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"{folder} has no {stem}.gz (or {stem}); fetch MNIST with `probseq download mnist` "
                    "or point --data-dir at a folder holding the MNIST image files")


def moving_mnist_video(digits: np.ndarray, rng: np.random.Generator, *, frames: int, size: int,
                       n_digits: int) -> np.ndarray:
    """One video ``(frames, size, size)`` float32 in ``[0, 1]`` from a pool of ``(N, 28, 28)`` digits."""
    h, w = digits.shape[1:]
    limit = np.array([size - h, size - w], dtype=np.float64)
    video = np.zeros((frames, size, size), dtype=np.float32)
    for _ in range(n_digits):
        image = digits[rng.integers(len(digits))].astype(np.float32) / 255.0
        position = rng.uniform(0.0, 1.0, 2) * limit
        angle = rng.uniform(0.0, 2 * np.pi)
        velocity = rng.uniform(*SPEED) * np.array([np.sin(angle), np.cos(angle)])
        for t in range(frames):
            r, c = (int(round(v)) for v in position)
            np.maximum(video[t, r:r + h, c:c + w], image, out=video[t, r:r + h, c:c + w])
            position = position + velocity
            for axis in (0, 1):                    # reflect off the walls
                if position[axis] < 0:
                    position[axis], velocity[axis] = -position[axis], -velocity[axis]
                elif position[axis] > limit[axis]:
                    position[axis], velocity[axis] = 2 * limit[axis] - position[axis], -velocity[axis]
            position = np.clip(position, 0.0, limit)
    return video


def _int_option(name: str, value: Any, low: int) -> int:
    try:
        x = int(value)
        if isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"moving-mnist option {name} must be an integer, got {value!r}") from None
    if x < low:
        raise UserError(f"moving-mnist option {name} must be at least {low}, got {x}")
    return x


@register_dataset(
    "moving-mnist",
    description="Moving MNIST: 2 digits bouncing in 64x64 frames, 20 frames (generated from MNIST; options "
                "n_train, n_valid, n_test, frames, size, digits, seed, binarise)",
    source="generated as in Srivastava et al., ICML 2015, from the MNIST digits of `probseq download mnist` "
           "(or --data-dir DIR with the MNIST image files)",
    needs="dir",
    home="mnist",
)
def load_moving_mnist(data_file: str | Path | None = None, data_dir: str | Path | None = None, *,
                      n_train: int = 500, n_valid: int = 100, n_test: int = 200, frames: int = 20,
                      size: int = 64, digits: int = 2, seed: int = 0, binarise: Any = False,
                      threshold: float = 0.5) -> Dataset:
    """Generate Moving MNIST from the MNIST image files (see the module docstring).

    The defaults keep memory at about 260 MB (one video is 20 x 4096 float32 = 320 KB); the
    paper drew new videos on the fly, which ``--set fresh=true`` does.
    """
    if data_file is not None:
        raise UserError("moving-mnist reads a folder of MNIST image files: pass --data-dir DIR, not --data-file")
    folder = Path(data_dir) if data_dir is not None else data_home() / "mnist"
    if not folder.is_dir():
        raise UserError(f"moving-mnist needs the MNIST digits: run `probseq download mnist` (into {folder}) "
                        "or pass --data-dir DIR holding the MNIST image files")
    counts = {s: _int_option(f"n_{s}", v, 1) for s, v in (("train", n_train), ("valid", n_valid), ("test", n_test))}
    frames, size, digits = _int_option("frames", frames, 2), _int_option("size", size, DIGIT), \
        _int_option("digits", digits, 1)
    seed = _int_option("seed", seed, 0)
    binarise = boolean_option("binarise", binarise)
    threshold = float(threshold)
    train_images = read_idx_images(_find_images(folder, "train"))
    test_images = read_idx_images(_find_images(folder, "test"))
    for path, images in (("train", train_images), ("test", test_images)):
        if images.shape[1:] != (DIGIT, DIGIT):
            raise UserError(f"the MNIST {path} images are {images.shape[1]}x{images.shape[2]}, not 28x28")
    cut = len(train_images) - max(1, len(train_images) // 6) if len(train_images) > 1 else 1
    pools = {"train": train_images[:cut], "valid": train_images[cut:] if cut < len(train_images) else train_images,
             "test": test_images}

    def videos(split: str, keys) -> list[torch.Tensor]:
        out = []
        for key in keys:
            rng = np.random.default_rng(np.random.SeedSequence([seed, _SPLIT_INDEX[split], *key]))
            v = moving_mnist_video(pools[split], rng, frames=frames, size=size, n_digits=digits)
            if binarise:
                v = (v > threshold).astype(np.float32)
            out.append(torch.from_numpy(v.reshape(frames, size * size)))
        return out

    splits = {s: videos(s, [(i,) for i in range(counts[s])]) for s in ("train", "valid", "test")}

    def fresh(n: int, step_seed: int) -> list[torch.Tensor]:
        """``n`` new training videos from the training digits, from streams of their own
        (``SeedSequence([seed, 0, 1, step_seed, i])``, never one of the training split's)."""
        return videos("train", [(1, int(step_seed), i) for i in range(int(n))])

    meta = {"media": "video", "title": "moving MNIST", "frame_shape": [size, size], "fps": 10,
            "digits": digits, "seed": seed, "binarise": binarise, "threshold": threshold}
    return Dataset("moving-mnist", DataSpec("binary", size * size), splits, meta, fresh=fresh)
