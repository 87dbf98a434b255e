"""Stick-figure animations of motion capture, drawn with matplotlib and saved as GIF by pillow.

The drawing half of the ``.gif`` writer for motion-capture datasets: it takes joint positions and
parent indices and knows nothing of any dataset (:func:`probseq.data.sets.mocap.write_motion_gif`
computes the positions and registers the writer; video datasets get :mod:`probseq.io.media`'s
pixel GIF writer).

No ffmpeg is needed: :class:`matplotlib.animation.PillowWriter` writes the GIF. Each joint is joined
to its parent by a line. The view is fixed for the
whole animation (equal scale on every axis, the up axis drawn vertically), so the figure moves
through the box as it moves through the room.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from probseq.errors import UserError

__all__ = ["animate_stick_figures"]


def _to_plot_axes(positions: np.ndarray, up_axis: int) -> np.ndarray:
    """Reorder coordinates so the up axis becomes matplotlib's z (right-handed)."""
    if up_axis == 2:
        return positions
    if up_axis == 1:                     # (x, y up, z) -> (z, x, y): ground (z, x), up y
        return positions[..., [2, 0, 1]]
    raise ValueError(f"up_axis must be 1 or 2, got {up_axis}")


def animate_stick_figures(sequences: Sequence[np.ndarray], parents: Sequence[int], path: str | Path, *,
                          up_axis: int = 2, fps: float = 30.0, titles: Sequence[str] | None = None,
                          size: float = 3.0) -> Path:
    """Write a GIF with one panel per sequence of joint positions ``(T_i, J, 3)``.

    Args:
        sequences: joint positions per sequence; panels of shorter sequences freeze at their end.
        parents: ``parents[j]`` is the joint ``j`` is drawn connected to (``-1``: none).
        up_axis: which coordinate points up in the data (1 for CMU/ASF, 2 for the MIT data).
        fps: playback rate.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.animation import FuncAnimation, PillowWriter

    if not sequences:
        raise UserError("no sequences to draw")
    seqs = [_to_plot_axes(np.asarray(s, dtype=np.float64), up_axis) for s in sequences]
    for s in seqs:
        if s.ndim != 3 or s.shape[1] != len(parents) or s.shape[2] != 3:
            raise ValueError(f"positions must have shape (T, {len(parents)}, 3), got {s.shape}")
        if not np.isfinite(s).all():
            raise UserError("cannot draw a stick figure from positions with NaN or infinite values")
    bones = [(j, p) for j, p in enumerate(parents) if p >= 0]
    steps = max(s.shape[0] for s in seqs)
    fig = plt.figure(figsize=(size * len(seqs), size))
    panels = []
    for i, s in enumerate(seqs):
        ax = fig.add_subplot(1, len(seqs), i + 1, projection="3d")
        lo, hi = s.reshape(-1, 3).min(0), s.reshape(-1, 3).max(0)
        centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2, 1e-6)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(centre[2] - half, centre[2] + half)
        ax.set_box_aspect((1, 1, 1))
        ax.set_xticklabels([]), ax.set_yticklabels([]), ax.set_zticklabels([])
        ax.view_init(elev=15, azim=-60)
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        lines = [ax.plot([], [], [], "-", color="C0" if i % 2 == 0 else "C3", lw=2)[0] for _ in bones]
        panels.append((s, lines))
    fig.tight_layout()

    def draw(t: int):
        changed = []
        for s, lines in panels:
            frame = s[min(t, s.shape[0] - 1)]
            for (j, p), line in zip(bones, lines):
                line.set_data_3d([frame[p, 0], frame[j, 0]], [frame[p, 1], frame[j, 1]],
                                 [frame[p, 2], frame[j, 2]])
                changed.append(line)
        return changed

    path = Path(path)
    animation = FuncAnimation(fig, draw, frames=steps, blit=False)
    animation.save(str(path), writer=PillowWriter(fps=fps))
    plt.close(fig)
    return path

