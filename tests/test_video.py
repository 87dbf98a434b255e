"""Animated GIFs of samples: video frames land where they belong; motion goes to the stick figure.

The pixel writer itself is :mod:`probseq.io.media`'s; these tests check what a viewer sees
(row-major ``H x W`` frames, not transposed, in time order) without relying on its layout, and
that the motion writer registered by :mod:`probseq.data.sets.mocap` claims motion data only.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from probseq.data.batch import Batch
from probseq.io.media import write_samples
from probseq.errors import UserError

H, W = 4, 6
VIDEO = {"frame_shape": [H, W], "fps": 10}


def _frames(path) -> list[np.ndarray]:
    out = []
    with Image.open(path) as gif:
        for k in range(gif.n_frames):
            gif.seek(k)
            out.append(np.asarray(gif.convert("L"), dtype=np.float64))
    return out


def _centroid(image: np.ndarray) -> tuple[float, float]:
    bright = image > 250
    ys, xs = np.nonzero(bright)
    return float(ys.mean()), float(xs.mean())


def test_a_lit_pixel_moves_across_the_gif_as_in_the_frames(tmp_path):
    frames = torch.zeros(1, W + H, H, W)
    for t in range(W):
        frames[0, t, 1, t] = 1.0                     # along row 1, left to right
    for t in range(H):
        frames[0, W + t, t, 2] = 1.0                 # then down column 2
    [path] = write_samples(frames.reshape(1, W + H, H * W), tmp_path / "v.gif", VIDEO)
    images = _frames(path)
    assert len(images) == W + H
    centres = [_centroid(img) for img in images]
    xs = [c[1] for c in centres[:W]]
    ys = [c[0] for c in centres[W:]]
    assert all(b > a for a, b in zip(xs, xs[1:])) and len({round(c[0], 6) for c in centres[:W]}) == 1
    assert all(b > a for a, b in zip(ys, ys[1:])) and len({round(c[1], 6) for c in centres[W:]}) == 1
    assert centres[W + 1] == centres[2]              # pixel (1, 2) lies on both paths


def test_brightness_follows_the_frame_values(tmp_path):
    values = torch.tensor([0.0, 1.0, 0.0, 1.0]).reshape(1, 4, 1).expand(1, 4, H * W).contiguous()
    [path] = write_samples(values, tmp_path / "blink.gif", VIDEO)
    means = [img.mean() for img in _frames(path)]
    assert means[1] > means[0] + 50 and means[3] > means[2] + 50
    assert abs(means[0] - means[2]) < 1e-9 and abs(means[1] - means[3]) < 1e-9


def test_gif_writer_is_chosen_by_the_data(tmp_path):
    motion_meta = {"motion_format": "mit"}
    with pytest.raises(UserError, match="lacks 'mean'"):
        # motion meta without its skeleton: the stick-figure writer claims it and says what is missing
        write_samples(torch.zeros(1, 2, 49), tmp_path / "m.gif", motion_meta)
    with pytest.raises(UserError, match="video"):
        write_samples(torch.zeros(1, 2, H * W), tmp_path / "x.gif", {})
    [path] = write_samples(Batch(torch.rand(2, 3, H * W), torch.tensor([3, 2])), tmp_path / "v.gif", VIDEO)
    assert len(_frames(path)) == 3
