"""Bouncing-balls videos, the synthetic data of the RTRBM paper.

Sutskever, Hinton & Taylor, "The Recurrent Temporal Restricted Boltzmann Machine", NIPS 2008,
section 5: ``n_balls = 3`` balls of radius 1.2 move in a ``10 x 10`` box, rendered at ``30 x 30``
pixels, sequences of 100 frames (the paper trained on 4000 such sequences). This module is an
independent, vectorised implementation of the same physics and rendering.

Physics (all sequences of a batch advance together; each frame is ``substeps`` Euler steps of
length ``dt = 1 / substeps``):

1. move: ``x <- x + dt * v``;
2. walls: a centre that crossed ``[r, box - r]`` is reflected back into it (mirror image) and the
   velocity component flips, so centres never leave the box (the original generator flips the
   velocity only, letting a ball overshoot the wall by up to ``dt |v|``);
3. balls: each overlapping pair (``|x_i - x_j| < r_i + r_j``) that is still approaching exchanges
   momentum along the line of centres ``n = (x_i - x_j) / |x_i - x_j|``,

   .. math::
       u = (v_i - v_j) \\cdot n < 0, \\qquad
       v_i \\leftarrow v_i - \\frac{2 m_j u}{m_i + m_j} n, \\qquad
       v_j \\leftarrow v_j + \\frac{2 m_i u}{m_i + m_j} n,

   a perfectly elastic collision (momentum and kinetic energy are conserved exactly; masses
   ``m_i`` proportional to ``r_i^2``). Testing "still approaching" keeps touching balls from
   exchanging momentum back and forth, a known quirk of the original generator.

Initial state (one ``numpy.random.Generator`` per sequence, spawned from the seed, so sequence
``i`` does not depend on how many sequences are drawn): centres uniform in ``[r, box - r]^2``,
redrawn until no two balls overlap; velocities Gaussian, the whole ``(n_balls, 2)`` velocity matrix
scaled to Frobenius norm ``speed`` (0.5 box units per frame, as in Sutskever's generator).

Rendering: pixel ``(row, col)`` has centre ``((col + 1/2) box / size, (row + 1/2) box / size)``
(x along columns, y along rows) and intensity

.. math::
    I = \\min\\Big(1, \\sum_i \\exp\\big(-(\\lVert p - x_i \\rVert^2 / r_i^2)^4\\big)\\Big),

a disc of radius ``r`` with a soft edge one pixel wide: values are mostly exactly 0 or nearly 1,
fractional on the rims. The RTRBM treated such intensities as Bernoulli means, so the dataset is
declared ``DataSpec("binary", size * size)`` with fractional frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from probseq.errors import UserError

__all__ = ["BallTrajectories", "simulate_bouncing_balls", "render_balls", "generate_bouncing_balls"]


@dataclass(frozen=True)
class BallTrajectories:
    """Simulated balls.

    Attributes:
        positions: ``(N, T, n_balls, 2)`` centres at the start of each frame (x, y).
        velocities: ``(N, T, n_balls, 2)`` velocities at the start of each frame.
        radii: ``(n_balls,)``.
        masses: ``(n_balls,)``, proportional to ``radii ** 2`` (all 1 for equal radii).
        box: side of the square box.
    """

    positions: np.ndarray
    velocities: np.ndarray
    radii: np.ndarray
    masses: np.ndarray
    box: float

    def kinetic_energy(self) -> np.ndarray:
        """``(N, T)`` total kinetic energy ``sum_i m_i |v_i|^2 / 2``."""
        return 0.5 * np.einsum("i,ntid->nt", self.masses, self.velocities ** 2)


def _radii(radius: float | Sequence[float], n_balls: int) -> np.ndarray:
    radii = np.broadcast_to(np.asarray(radius, dtype=np.float64), (n_balls,)).copy() \
        if np.ndim(radius) == 0 else np.asarray(radius, dtype=np.float64)
    if radii.shape != (n_balls,):
        raise UserError(f"give one radius or {n_balls} radii, got {len(radii)}")
    if not (radii > 0).all():
        raise UserError(f"ball radii must be positive, got {radii.tolist()}")
    return radii


def _initial_state(rng: np.random.Generator, radii: np.ndarray, box: float, speed: float,
                   max_tries: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    n = len(radii)
    low, high = radii[:, None], box - radii[:, None]
    touching = radii[:, None] + radii[None, :]
    upper = np.triu(np.ones((n, n), dtype=bool), k=1)
    for _ in range(max_tries):
        x = low + rng.random((n, 2)) * (high - low)
        dist = np.linalg.norm(x[:, None] - x[None, :], axis=-1)
        if not (dist < touching)[upper].any():
            break
    else:
        raise UserError(f"could not place {n} balls of radii {radii.tolist()} without overlap in a "
                        f"box of size {box}; use fewer or smaller balls or a larger box")
    v = rng.standard_normal((n, 2))
    v *= speed / max(np.linalg.norm(v), 1e-12)
    return x, v


def _reflect_walls(x: np.ndarray, v: np.ndarray, radii: np.ndarray,
                   box: float) -> tuple[np.ndarray, np.ndarray]:
    """Mirror centres ``x (N, n, 2)`` back into ``[r, box - r]``; flip ``v`` once per reflection.

    Folding the coordinate ``y = x - r`` into ``[0, L]`` (``L = box - 2r``) with period ``2L``
    handles any number of reflections in one step; an odd number of folds reverses the velocity.
    """
    r = radii[None, :, None]
    span = box - 2 * r
    y = x - r
    folds = np.floor(y / span)
    y = y - folds * span
    odd = (folds % 2) != 0
    return np.where(odd, span - y, y) + r, np.where(odd, -v, v)


def _collide(x: np.ndarray, v: np.ndarray, radii: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """Elastic collisions of every overlapping, approaching pair (pairs in order i < j).

    ``x, v``: ``(N, n, 2)``. Returns the new velocities (formula in the module docstring).
    """
    v = v.copy()
    n = len(radii)
    for i in range(n):
        for j in range(i + 1, n):
            d = x[:, i] - x[:, j]
            dist = np.linalg.norm(d, axis=-1, keepdims=True)
            normal = d / np.maximum(dist, 1e-12)
            u = ((v[:, i] - v[:, j]) * normal).sum(-1, keepdims=True)
            hit = (dist < radii[i] + radii[j]) & (u < 0)
            impulse = np.where(hit, 2.0 * u / (masses[i] + masses[j]), 0.0) * normal
            v[:, i] -= masses[j] * impulse
            v[:, j] += masses[i] * impulse
    return v


def simulate_bouncing_balls(n_sequences: int, n_frames: int = 100, *, n_balls: int = 3,
                            radius: float | Sequence[float] = 1.2, box: float = 10.0,
                            speed: float = 0.5, substeps: int = 2,
                            seed: int | np.random.SeedSequence = 0) -> BallTrajectories:
    """Simulate ``n_sequences`` independent boxes of elastic balls (see the module docstring).

    Args:
        n_sequences: ``N``.
        n_frames: ``T``.
        n_balls: balls per box.
        radius: one radius for all balls, or one per ball.
        box: side of the square box (box units).
        speed: Frobenius norm of each sequence's initial ``(n_balls, 2)`` velocity matrix, in box
            units per frame.
        substeps: Euler steps per frame.
        seed: integer seed or a :class:`numpy.random.SeedSequence`; sequence ``i`` uses the
            ``i``-th spawned child, so it is the same whatever ``n_sequences`` is.

    Returns:
        :class:`BallTrajectories` with ``(N, T, n_balls, 2)`` positions and velocities.

    Complexity: ``O(N T substeps n_balls^2)``, vectorised over ``N``.
    """
    if n_sequences < 0 or n_frames < 1 or n_balls < 1 or substeps < 1:
        raise UserError("need n_sequences >= 0, n_frames >= 1, n_balls >= 1 and substeps >= 1")
    if not (box > 0 and speed >= 0):
        raise UserError(f"box must be positive and speed non-negative, got box={box}, speed={speed}")
    radii = _radii(radius, n_balls)
    if (2 * radii >= box).any():
        raise UserError(f"balls of radius {radii.max()} do not fit in a box of size {box}")
    masses = radii ** 2 / radii[0] ** 2
    if isinstance(seed, np.random.SeedSequence):  # a copy: spawning must not mutate the caller's
        root = np.random.SeedSequence(seed.entropy, spawn_key=seed.spawn_key)
    else:
        root = np.random.SeedSequence(int(seed))
    x = np.empty((n_sequences, n_balls, 2))
    v = np.empty((n_sequences, n_balls, 2))
    for i, child in enumerate(root.spawn(n_sequences)):
        x[i], v[i] = _initial_state(np.random.default_rng(child), radii, box, speed)

    dt = 1.0 / substeps
    pos = np.empty((n_sequences, n_frames, n_balls, 2))
    vel = np.empty_like(pos)
    for t in range(n_frames):
        pos[:, t], vel[:, t] = x, v
        for _ in range(substeps):
            x, v = _reflect_walls(x + dt * v, v, radii, box)
            v = _collide(x, v, radii, masses)
    return BallTrajectories(pos, vel, radii, masses, float(box))


#: ``q = (d^2 / r^2)^4`` beyond which a pixel is exactly dark: ``exp(-80)`` is still a normal float32
_Q_CUTOFF = 80.0


def _glow(q: Tensor) -> Tensor:
    """``exp(-q)``, exactly 0 for ``q >= 80`` (clamped before exp: no slow denormals)."""
    far = q >= _Q_CUTOFF
    return q.clamp(max=_Q_CUTOFF).neg_().exp_().masked_fill_(far, 0.0)


def render_balls(positions: np.ndarray, *, radii: np.ndarray | float = 1.2, box: float = 10.0,
                 size: int = 30, chunk: int = 64) -> Tensor:
    """Render ball centres ``(N, T, n_balls, 2)`` as ``(N, T, size * size)`` float32 intensities.

    Row-major pixels (``frame.reshape(size, size)[row, col]``); formula in the module docstring.
    A ball lights only pixels with ``(d^2 / r^2)^4 < 80``, i.e. within ``80^{1/8} r ~ 1.73 r`` of its
    centre, so each ball is drawn in a ``S x S`` pixel window around it (``S = 13`` for the
    defaults, instead of all ``size^2`` pixels) and scattered into the frame; the result equals the
    dense formula (:func:`_render_dense`, the test oracle) up to float32 summation order.
    Cost ``O(N T n_balls S^2)``, ``chunk`` sequences at a time.
    """
    pos = torch.as_tensor(np.asarray(positions), dtype=torch.float32)
    N, T, n, _ = pos.shape
    radii_arr = _radii(radii, n)
    pixel = box / size
    reach = float(radii_arr.max()) * _Q_CUTOFF ** 0.125
    half = int(np.ceil(reach / pixel)) + 1  # window half-width in pixels
    side = 2 * half + 1
    padded = size + 2 * half
    inv_r2 = torch.as_tensor(1.0 / radii_arr ** 2, dtype=torch.float32)[:, None]  # (n, 1)
    offsets = torch.arange(-half, half + 1)
    window = torch.arange(side)[:, None] * padded + torch.arange(side)[None, :]  # (S, S)
    out = torch.empty(N, T, size * size, dtype=torch.float32)
    for start in range(0, N, chunk):
        p = pos[start:start + chunk]
        c = p.shape[0]
        centre_px = torch.floor(p / pixel).long().clamp_(0, size - 1)  # (c, T, n, 2)
        cols = centre_px[..., 0, None] + offsets  # (c, T, n, S) pixel columns, may leave [0, size)
        rows = centre_px[..., 1, None] + offsets
        dx2 = ((cols + 0.5) * pixel - p[..., 0, None]).square_().mul_(inv_r2)
        dy2 = ((rows + 0.5) * pixel - p[..., 1, None]).square_().mul_(inv_r2)
        q = (dy2[..., :, None] + dx2[..., None, :]).square_().square_()  # (c, T, n, S, S)
        # flat index in the padded canvas: a per-ball base plus a fixed (S, S) window table
        base = centre_px[..., 1] * padded + centre_px[..., 0]  # (c, T, n)
        index = base[..., None, None] + window
        canvas = torch.zeros(c * T, padded * padded, dtype=torch.float32)
        canvas.scatter_add_(1, index.reshape(c * T, n * side * side), _glow(q).reshape(c * T, -1))
        frames = canvas.view(c, T, padded, padded)[:, :, half:half + size, half:half + size]
        out[start:start + c] = frames.clamp(max=1.0).reshape(c, T, size * size)
    return out


def _render_dense(positions: np.ndarray, *, radii: np.ndarray | float = 1.2, box: float = 10.0,
                  size: int = 30) -> Tensor:
    """The rendering formula evaluated at every pixel for every ball (slow; the test oracle)."""
    pos = torch.as_tensor(np.asarray(positions), dtype=torch.float64)
    n = pos.shape[2]
    inv_r2 = torch.as_tensor(1.0 / _radii(radii, n) ** 2)[:, None, None]
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) * (box / size)
    dx2 = (centres[None, :] - pos[..., 0, None, None]) ** 2  # (N, T, n, 1, W)
    dy2 = (centres[:, None] - pos[..., 1, None, None]) ** 2  # (N, T, n, H, 1)
    glow = _glow(((dx2 + dy2) * inv_r2) ** 4).sum(2)
    return glow.clamp(max=1.0).reshape(*pos.shape[:2], size * size).float()


def generate_bouncing_balls(n_sequences: int, *, n_frames: int = 100, size: int = 30, n_balls: int = 3,
                            radius: float | Sequence[float] = 1.2, box: float = 10.0,
                            speed: float = 0.5, substeps: int = 2,
                            seed: int | np.random.SeedSequence = 0) -> Tensor:
    """Simulate and render: ``(N, n_frames, size * size)`` float32 videos with values in ``[0, 1]``."""
    if size < 1:
        raise UserError(f"image size must be positive, got {size}")
    traj = simulate_bouncing_balls(n_sequences, n_frames, n_balls=n_balls, radius=radius, box=box,
                                   speed=speed, substeps=substeps, seed=seed)
    return render_balls(traj.positions, radii=traj.radii, box=box, size=size)
