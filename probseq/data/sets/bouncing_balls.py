"""``bouncing-balls``: generated videos of elastic balls (RTRBM paper, Sutskever et al. 2008).

Nothing is read from or cached to disk: every load regenerates the data from ``seed`` (about a
second for the defaults). Splits come from independent seed streams (``SeedSequence(seed)``
spawns train, valid, test), and within a split sequence ``i`` does not depend on how many
sequences are drawn, so changing ``n_train`` leaves the test set unchanged.

Frames are ``size * size`` intensities in ``[0, 1]`` (mostly 0, nearly 1 inside a ball, fractional
on the rims); the spec is ``DataSpec("binary", size * size)``, treating them as Bernoulli means as
the RTRBM paper did. ``meta["frame_shape"] = [size, size]`` lets the ``.png`` and ``.gif``
writers draw them as images.

``binarize=true`` replaces every intensity ``p`` by a draw from Bernoulli(``p``) (one fixed draw,
from its own seed stream, so the videos are the same on every load). Models that give
probabilities only to 0/1 frames (the RBM family) need it for a likelihood; for a factorial
Bernoulli model the expected log-likelihood over such draws equals the cross-entropy that the
fractional frames get, so the two are scored on the same footing.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch

from probseq.data.bouncing_balls import generate_bouncing_balls
from probseq.data.folder import boolean_option
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["load_bouncing_balls", "DEFAULTS"]

_INTS = ("n_train", "n_valid", "n_test", "n_frames", "size", "n_balls", "seed")


def _option(name: str, value: Any) -> Any:
    kind = int if name in _INTS else float
    try:
        converted = kind(value)
        if kind is int and isinstance(value, float) and not value.is_integer():
            raise ValueError
    except (TypeError, ValueError):
        raise UserError(f"bouncing-balls option {name} must be {'an integer' if kind is int else 'a number'}, "
                        f"got {value!r}") from None
    return converted


@register_dataset(
    "bouncing-balls",
    description="Videos of 3 elastic balls in a box, 30x30 pixels, 100 frames (generated; "
                "options n_train, n_valid, n_test, n_frames, size, n_balls, radius, box, speed, seed, binarize)",
    source="generated as in Sutskever, Hinton & Taylor, NIPS 2008 (the RTRBM paper), section 5",
    needs="none",
)
def load_bouncing_balls(data_file=None, data_dir=None, *, n_train: int = 400, n_valid: int = 100,
                        n_test: int = 200, n_frames: int = 100, size: int = 30, n_balls: int = 3,
                        radius: float = 1.2, box: float = 10.0, speed: float = 0.5,
                        seed: int = 0, binarize: bool = False, **unknown: Any) -> Dataset:
    """Generate the bouncing-balls dataset.

    The paper used 4000 training and 200 test sequences; the defaults 400/100/200 keep memory at
    about 250 MB (one sequence is 100 x 900 float32 = 360 KB) and generate in about a second.

    The options are explicit keyword parameters so that ``probseq fit ... --set n_train=1000``
    reaches them (the command line routes ``--set`` keys by the loader's signature); strings are
    converted.

    Returns:
        A :class:`Dataset` whose splits hold ``(n_frames, size * size)`` float32 tensors.
    """
    if data_file is not None or data_dir is not None:
        raise UserError("bouncing-balls is generated, not read: drop --data-file/--data-dir and "
                        "set its options instead (e.g. --set n_train=1000)")
    if unknown:
        raise UserError(f"unknown bouncing-balls option(s) {', '.join(sorted(unknown))}; known: "
                        f"{', '.join(DEFAULTS)}")
    given = dict(n_train=n_train, n_valid=n_valid, n_test=n_test, n_frames=n_frames, size=size,
                 n_balls=n_balls, radius=radius, box=box, speed=speed, seed=seed)
    opts = {k: _option(k, v) for k, v in given.items()}
    binarize = boolean_option("binarize", binarize)
    for key in ("n_train", "n_valid", "n_test", "n_frames", "size", "n_balls"):
        if opts[key] < 1:
            raise UserError(f"bouncing-balls option {key} must be at least 1, got {opts[key]}")
    if opts["seed"] < 0:
        raise UserError(f"bouncing-balls option seed must be non-negative, got {opts['seed']}")
    *video_streams, binarize_stream = np.random.SeedSequence(opts["seed"]).spawn(4)
    physics = {k: opts[k] for k in ("n_frames", "size", "n_balls", "radius", "box", "speed")}
    splits = {}
    for split, stream, draw in zip(("train", "valid", "test"), video_streams, binarize_stream.spawn(3)):
        videos = generate_bouncing_balls(opts[f"n_{split}"], seed=stream, **physics)
        if binarize:
            uniform = torch.from_numpy(np.random.default_rng(draw).random(videos.shape, dtype=np.float32))
            videos = (uniform < videos).to(videos.dtype)
        splits[split] = list(videos.unbind(0))
    size = opts["size"]
    meta = {
        "media": "video",
        "title": "bouncing balls",
        "frame_shape": [size, size],
        "fps": 10,
        **{k: opts[k] for k in ("n_balls", "radius", "box", "speed", "seed")},
        "binarize": binarize,
    }

    def fresh(n: int, seed: int) -> list[torch.Tensor]:
        """``n`` new training videos from ``seed`` (same physics; binarized when the splits are)."""
        stream, draw = np.random.SeedSequence([opts["seed"], 3, int(seed)]).spawn(2)
        videos = generate_bouncing_balls(int(n), seed=stream, **physics)
        if binarize:
            uniform = torch.from_numpy(np.random.default_rng(draw).random(videos.shape, dtype=np.float32))
            videos = (uniform < videos).to(videos.dtype)
        return list(videos.unbind(0))

    return Dataset(name="bouncing-balls", spec=DataSpec("binary", size * size), splits=splits, meta=meta,
                   fresh=fresh)


#: loader options and their defaults, read off the signature
DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(load_bouncing_balls).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}
