"""Motion features a model can learn, and their inverse: rotations, body-frame root motion, resampling.

Raw Euler angles are a poor thing to model: they jump by 360 degrees, and the same pose has several
spellings. Following Holden, Saito & Komura (2016) and Taylor, Hinton & Roweis (2007), a pose
sequence — the root's world position ``p_t`` ``(T, 3)`` and every joint's *local* rotation matrix
``L_{t,j}`` ``(T, J, 3, 3)`` (joint 0 the root) — becomes, per frame:

===================== ======= =============================================================
feature               size    what it is
===================== ======= =============================================================
root height           1       ``p_t[u]``, absolute (``u`` the up axis)
ground velocity       2       ``(R_u(\\theta_{t-1})^T (p_t - p_{t-1}))`` on the two ground axes:
                              the step in the body's own heading frame
heading change        1       ``wrap(\\theta_t - \\theta_{t-1})`` in radians, in ``(-pi, pi]``
root rotation         3 or 6  ``R_u(\\theta_t)^T L_{t,0}``: the root's tilt, heading removed
joint rotations       3 or 6  ``L_{t,j}`` for ``j >= 1``
===================== ======= =============================================================

The heading ``\\theta_t`` is the *twist* of the root rotation about the up axis: with the root's
quaternion ``q = (w, x, y, z)`` (``w >= 0``) and ``u`` the up axis, ``\\theta = 2 atan2(q_u, w)``,
and ``R_u(\\theta)^T L_0`` has no twist left (its quaternion's ``u`` component is zero). Every
feature is therefore unchanged by turning the whole take about the up axis or moving it on the
ground. The first frame has no previous one; its velocity and heading change copy the second
frame's. The inverse (:func:`pose_from_body_features`) integrates from the origin, heading 0, so
a take comes back equal up to that rigid ground motion.

Rotations are written as an **exponential map** (``rotation="expmap"``, 3 numbers: axis times angle;
made continuous over time by :func:`continuous_expmap`, which picks among ``v (1 + 2 pi k / |v|)``
the spelling nearest the previous frame's) or as the **6-D representation** of Zhou et al. (2019)
(``rotation="6d"``: the first two columns of the matrix; the inverse is Gram-Schmidt, so any six
numbers map to a rotation).

Resampling (:func:`resample_pose`) to another frame rate: when the source rate is an integer
multiple of the target, every ``r``-th frame is kept exactly; otherwise frame ``k`` is taken at time
``k / fps``, with root positions interpolated linearly and rotations by quaternion slerp per joint.

References: D. Holden, J. Saito, T. Komura, "A deep learning framework for character motion
synthesis and editing", SIGGRAPH 2016; Y. Zhou, C. Barnes, J. Lu, J. Yang, H. Li, "On the
continuity of rotation representations in neural networks", CVPR 2019; G. Taylor, G. Hinton,
S. Roweis, "Modeling human motion using binary latent variables", NIPS 2007.

Everything here is NumPy (float64) and vectorised over frames and joints.
"""

from __future__ import annotations

import numpy as np

from probseq.errors import UserError
from probseq.io.bvh import matrix_to_euler

__all__ = ["ROTATIONS", "rotation_size", "matrix_to_quaternion", "quaternion_to_matrix", "slerp",
           "matrix_to_expmap", "expmap_to_matrix", "continuous_expmap", "matrix_to_6d", "sixd_to_matrix",
           "rotation_to_features", "features_to_rotation", "heading_angle", "up_rotation",
           "body_features", "pose_from_body_features", "resample_pose", "resample_times",
           "ground_axes", "BODY_ROOT_SIZE", "bvh_rotation_joints", "bvh_extra_channels", "bvh_pose",
           "bvh_motion_from_pose", "bvh_feature_width", "bvh_features", "bvh_motion_from_features"]

ROTATIONS = ("expmap", "6d")
#: height, two ground velocities, heading change
BODY_ROOT_SIZE = 4


def rotation_size(rotation: str) -> int:
    """Numbers per rotation: 3 for ``expmap``, 6 for ``6d``."""
    if rotation not in ROTATIONS:
        raise UserError(f"rotation must be one of {', '.join(ROTATIONS)}, got {rotation!r}")
    return 3 if rotation == "expmap" else 6


# ---------------------------------------------------------------------------- quaternions
def matrix_to_quaternion(matrix: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotations -> unit quaternions ``(..., 4)`` as ``(w, x, y, z)`` with ``w >= 0``.

    Shepperd's method: of the four formulas, each element uses the one whose pivot (``4w^2``,
    ``4x^2``, ...) is largest, so no division by a small number.
    """
    m = np.asarray(matrix, dtype=np.float64)
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    pivots = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22,
                       1 - m00 - m11 + m22], -1)
    choice = np.argmax(pivots, -1)
    big = 0.5 * np.sqrt(np.maximum(np.take_along_axis(pivots, choice[..., None], -1)[..., 0], 1e-300))
    d = 4.0 * big
    a21, a02, a10 = m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]
    s01, s02, s12 = m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1]
    candidates = np.stack([
        np.stack([big, a21 / d, a02 / d, a10 / d], -1),
        np.stack([a21 / d, big, s01 / d, s02 / d], -1),
        np.stack([a02 / d, s01 / d, big, s12 / d], -1),
        np.stack([a10 / d, s02 / d, s12 / d, big], -1),
    ], -2)
    q = np.take_along_axis(candidates, choice[..., None, None], -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return np.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Unit quaternions ``(..., 4)`` ``(w, x, y, z)`` -> rotation matrices ``(..., 3, 3)``."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = np.moveaxis(q, -1, 0)
    rows = [[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def slerp(q0: np.ndarray, q1: np.ndarray, t: np.ndarray | float) -> np.ndarray:
    """Spherical linear interpolation between unit quaternions, along the shorter arc.

    .. math:: \\mathrm{slerp}(q_0, q_1; t) = \\frac{\\sin((1-t)\\Omega)}{\\sin \\Omega} q_0
              + \\frac{\\sin(t\\Omega)}{\\sin\\Omega} q_1, \\quad \\cos\\Omega = |q_0 \\cdot q_1|

    (``q_1`` negated first when ``q_0 . q_1 < 0``; linear interpolation when ``Omega`` is tiny).
    ``t`` broadcasts against ``q0[..., 0]``.
    """
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    omega = np.arccos(dot)
    sin_omega = np.sin(omega)
    small = sin_omega < 1e-8
    safe = np.where(small, 1.0, sin_omega)
    a = np.where(small, 1 - t, np.sin((1 - t) * omega) / safe)
    b = np.where(small, t, np.sin(t * omega) / safe)
    out = a * q0 + b * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- representations
def matrix_to_expmap(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> exponential maps ``(..., 3)`` (axis times angle in ``[0, pi]``)."""
    q = matrix_to_quaternion(matrix)
    vec = q[..., 1:]
    n = np.linalg.norm(vec, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(n, q[..., :1])
    scale = np.where(n > 1e-12, angle / np.where(n > 1e-12, n, 1.0), 2.0)
    return vec * scale


def expmap_to_matrix(v: np.ndarray) -> np.ndarray:
    """Exponential maps ``(..., 3)`` -> rotation matrices (Rodrigues' formula via the quaternion)."""
    v = np.asarray(v, dtype=np.float64)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(|v|/2) / |v|, with its limit 1/2 at 0
    factor = np.where(angle > 1e-12, np.sin(half) / np.where(angle > 1e-12, angle, 1.0), 0.5)
    return quaternion_to_matrix(np.concatenate([np.cos(half), v * factor], -1))


def continuous_expmap(v: np.ndarray) -> np.ndarray:
    """Make exponential maps ``(T, ..., 3)`` continuous over the first axis.

    ``v`` and ``v (1 + 2 pi k / |v|)`` (any integer ``k``) are the same rotation; frame ``t`` takes
    the spelling, for ``k`` in ``{-2, -1, 0, 1}``, nearest frame ``t - 1``'s. Without it an angle
    crossing ``pi`` flips the vector to the other side of the ball.
    """
    v = np.array(v, dtype=np.float64, copy=True)
    if v.shape[0] < 2:
        return v
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    axis = v / np.where(angle > 1e-12, angle, 1.0)
    ks = np.array([-2.0, -1.0, 0.0, 1.0])
    for t in range(1, v.shape[0]):
        options = axis[t][None] * (angle[t][None] + 2 * np.pi * ks.reshape((-1,) + (1,) * angle[t].ndim))
        dist = np.sum((options - v[t - 1][None]) ** 2, -1)
        best = np.argmin(dist, 0)
        v[t] = np.take_along_axis(options, best[None, ..., None], 0)[0]
    return v


def matrix_to_6d(matrix: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(..., 3, 3)`` -> the first two columns ``(..., 6)`` (Zhou et al. 2019)."""
    m = np.asarray(matrix, dtype=np.float64)
    return np.concatenate([m[..., :, 0], m[..., :, 1]], -1)


def sixd_to_matrix(x: np.ndarray) -> np.ndarray:
    """Any ``(..., 6)`` -> rotation matrices by Gram-Schmidt on the two 3-vectors.

    ``b_1 = a_1/|a_1|``, ``b_2 = (a_2 - (b_1 . a_2) b_1)/|.|``, ``b_3 = b_1 x b_2``; the columns are
    ``b_1, b_2, b_3``. Degenerate input (a zero or two parallel vectors) is completed arbitrarily.
    """
    x = np.asarray(x, dtype=np.float64)
    a1, a2 = x[..., :3], x[..., 3:]
    n1 = np.linalg.norm(a1, axis=-1, keepdims=True)
    b1 = np.where(n1 > 1e-12, a1 / np.where(n1 > 1e-12, n1, 1.0), np.array([1.0, 0.0, 0.0]))
    a2 = a2 - np.sum(b1 * a2, -1, keepdims=True) * b1
    n2 = np.linalg.norm(a2, axis=-1, keepdims=True)
    fallback = np.cross(b1, np.where(np.abs(b1[..., :1]) < 0.9, np.array([1.0, 0, 0]), np.array([0.0, 1, 0])))
    fallback = fallback / np.linalg.norm(fallback, axis=-1, keepdims=True)
    b2 = np.where(n2 > 1e-12, a2 / np.where(n2 > 1e-12, n2, 1.0), fallback)
    b3 = np.cross(b1, b2)
    return np.stack([b1, b2, b3], -1)


def rotation_to_features(matrix: np.ndarray, rotation: str) -> np.ndarray:
    """``(T, ..., 3, 3)`` -> ``(T, ..., 3 | 6)`` in the chosen representation (expmaps made continuous)."""
    rotation_size(rotation)
    if rotation == "expmap":
        return continuous_expmap(matrix_to_expmap(matrix))
    return matrix_to_6d(matrix)


def features_to_rotation(x: np.ndarray, rotation: str) -> np.ndarray:
    """Inverse of :func:`rotation_to_features`: ``(..., 3 | 6)`` -> ``(..., 3, 3)``."""
    rotation_size(rotation)
    return expmap_to_matrix(x) if rotation == "expmap" else sixd_to_matrix(x)


# ---------------------------------------------------------------------------- heading
def ground_axes(up_axis: int) -> list[int]:
    """The two axes of the ground plane, in increasing order (``[0, 2]`` for y up)."""
    if up_axis not in (0, 1, 2):
        raise ValueError(f"up_axis must be 0, 1 or 2, got {up_axis}")
    return [a for a in range(3) if a != up_axis]


def up_rotation(theta: np.ndarray, up_axis: int) -> np.ndarray:
    """``(..., 3, 3)`` rotation by ``theta`` radians about the up axis (right-handed)."""
    q = np.zeros(np.shape(theta) + (4,))
    q[..., 0] = np.cos(0.5 * np.asarray(theta))
    q[..., 1 + up_axis] = np.sin(0.5 * np.asarray(theta))
    return quaternion_to_matrix(q)


def heading_angle(root_rotation: np.ndarray, up_axis: int) -> np.ndarray:
    """The twist of ``(..., 3, 3)`` root rotations about the up axis, in ``(-pi, pi]``."""
    q = matrix_to_quaternion(root_rotation)
    return _wrap(2.0 * np.arctan2(q[..., 1 + up_axis], q[..., 0]))


def _wrap(angle: np.ndarray) -> np.ndarray:
    """Angles to ``(-pi, pi]``."""
    return np.pi - np.mod(np.pi - np.asarray(angle), 2 * np.pi)


# ---------------------------------------------------------------------------- features
def body_features(root_position: np.ndarray, rotations: np.ndarray, *, rotation: str = "expmap",
                  up_axis: int = 1) -> np.ndarray:
    """Pose sequence -> features (the table in the module docstring).

    Args:
        root_position: ``(T, 3)`` world positions of the root.
        rotations: ``(T, J, 3, 3)`` local rotations, joint 0 the root (world orientation).
        rotation: ``"expmap"`` or ``"6d"``.
        up_axis: 1 when y is up (BVH, CMU), 2 when z is up.

    Returns:
        ``(T, 4 + J * r)`` with ``r`` = 3 or 6.
    """
    r = rotation_size(rotation)
    p = np.asarray(root_position, dtype=np.float64)
    rot = np.asarray(rotations, dtype=np.float64)
    n = p.shape[0]
    if rot.shape[:1] != (n,) or rot.shape[2:] != (3, 3) or p.shape != (n, 3):
        raise ValueError(f"root_position (T, 3) and rotations (T, J, 3, 3) disagree: {p.shape}, {rot.shape}")
    ground = ground_axes(up_axis)
    theta = heading_angle(rot[:, 0], up_axis)
    velocity = np.zeros((n, 2))
    turn = np.zeros(n)
    if n >= 2:
        step = np.einsum("tba,tb->ta", up_rotation(theta[:-1], up_axis), p[1:] - p[:-1])
        velocity[1:] = step[:, ground]
        turn[1:] = _wrap(np.diff(theta))
        velocity[0], turn[0] = velocity[1], turn[1]
    local = rot.copy()
    local[:, 0] = np.swapaxes(up_rotation(theta, up_axis), -1, -2) @ rot[:, 0]
    rotation_features = rotation_to_features(local, rotation).reshape(n, -1)
    assert rotation_features.shape[1] == rot.shape[1] * r
    return np.concatenate([p[:, up_axis:up_axis + 1], velocity, turn[:, None], rotation_features], 1)


def pose_from_body_features(features: np.ndarray, *, rotation: str = "expmap",
                            up_axis: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`body_features`: ``(T, 4 + J r)`` -> root positions ``(T, 3)``, rotations ``(T, J, 3, 3)``.

    Integrates heading and position from heading 0 at the ground origin: ``theta_0 = 0``,
    ``theta_t = theta_{t-1} + turn_t``, ``p_t = p_{t-1} + R_u(theta_{t-1}) [v_t]`` on the ground,
    height as given. The first frame's velocity and turn are not used.
    """
    r = rotation_size(rotation)
    x = np.asarray(features, dtype=np.float64)
    n, width = x.shape
    if (width - BODY_ROOT_SIZE) % r or width <= BODY_ROOT_SIZE:
        raise UserError(f"motion features of width {width} do not hold {BODY_ROOT_SIZE} root values "
                        f"and whole {rotation} rotations")
    ground = ground_axes(up_axis)
    turn = x[:, 3].copy()
    turn[0] = 0.0
    theta = np.cumsum(turn)
    step = np.zeros((n, 3))
    step[:, ground] = x[:, 1:3]
    step[0] = 0.0
    world_step = np.zeros((n, 3))
    if n >= 2:
        world_step[1:] = np.einsum("tab,tb->ta", up_rotation(theta[:-1], up_axis), step[1:])
    position = np.cumsum(world_step, 0)
    position[:, up_axis] = x[:, 0]
    rot = features_to_rotation(x[:, BODY_ROOT_SIZE:].reshape(n, -1, r), rotation)
    rot[:, 0] = up_rotation(theta, up_axis) @ rot[:, 0]
    return position, rot


# ---------------------------------------------------------------------------- resampling
def resample_times(n_frames: int, source_fps: float, fps: float) -> tuple[np.ndarray, int | None]:
    """Source-frame positions of the output frames, and the integer step when there is one.

    Output frame ``k`` is at time ``k / fps``, i.e. at source position ``k source_fps / fps``, for
    every ``k`` that stays within the take. When ``source_fps / fps`` is within 0.1% of an integer
    ``r``, the positions are exactly ``0, r, 2r, ...`` and ``r`` is returned.
    """
    if fps <= 0 or source_fps <= 0:
        raise UserError(f"frame rates must be positive, got fps={fps} and a source at {source_fps} fps")
    ratio = source_fps / fps
    step = int(round(ratio))
    if step >= 1 and abs(ratio - step) <= 1e-3 * ratio:
        return np.arange(0, n_frames, step, dtype=np.float64), step
    count = int(np.floor((n_frames - 1) / ratio + 1e-9)) + 1
    return np.arange(count) * ratio, None


def resample_pose(root_position: np.ndarray, rotations: np.ndarray, extra: np.ndarray | None,
                  source_fps: float, fps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Resample a pose sequence to ``fps`` (see :func:`resample_times`).

    Root positions and ``extra`` values ``(T, E)`` (other position channels) are interpolated
    linearly, rotations ``(T, J, 3, 3)`` by slerp of their quaternions, joint by joint; with an
    integer step the kept frames are copied exactly.
    """
    n = root_position.shape[0]
    times, step = resample_times(n, source_fps, fps)
    if step is not None:
        keep = times.astype(int)
        return root_position[keep], rotations[keep], None if extra is None else extra[keep]
    lo = np.minimum(np.floor(times).astype(int), n - 1)
    hi = np.minimum(lo + 1, n - 1)
    w = times - lo
    lerp = lambda a: a[lo] + w.reshape((-1,) + (1,) * (a.ndim - 1)) * (a[hi] - a[lo])  # noqa: E731
    q = matrix_to_quaternion(rotations)
    rot = quaternion_to_matrix(slerp(q[lo], q[hi], np.broadcast_to(w[:, None], (len(times), q.shape[1]))))
    return lerp(root_position), rot, None if extra is None else lerp(extra)


# ---------------------------------------------------------------------------- BVH takes
def _full_order(order: str) -> str:
    """A BVH joint's rotation axes completed to all three (missing axes appended, X, Y, Z order)."""
    return order + "".join(a for a in "XYZ" if a not in order)


def bvh_rotation_joints(skeleton) -> list[int]:
    """The joints that get rotation features: the root, and every other joint with a rotation channel."""
    return [i for i, j in enumerate(skeleton.joints) if i == 0 or j.rotation_order]


def bvh_extra_channels(skeleton) -> list[int]:
    """Indices (in a frame line) of the position channels of joints other than the root."""
    out = []
    for i, (joint, sl) in enumerate(zip(skeleton.joints, skeleton.channel_slices())):
        if i > 0:
            out += [sl.start + k for k, c in enumerate(joint.channels) if c.endswith("position")]
    return out


def bvh_pose(skeleton, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A BVH take's pose sequence: root positions ``(T, 3)``, local rotations ``(T, J, 3, 3)``, and
    the other joints' position channels ``(T, E)`` (:func:`bvh_extra_channels`).

    Conventions of :mod:`probseq.io.bvh`: the root position is its offset plus its position
    channels; a joint's local rotation is the product of its rotation channels in file order
    (identity when it has none).
    """
    motion = np.asarray(motion, dtype=np.float64)
    n = motion.shape[0]
    rotations = np.broadcast_to(np.eye(3), (n, len(skeleton.joints), 3, 3)).copy()
    root_position = np.broadcast_to(np.asarray(skeleton.joints[0].offset, dtype=np.float64), (n, 3)).copy()
    for i, (joint, sl) in enumerate(zip(skeleton.joints, skeleton.channel_slices())):
        values = motion[:, sl]
        order = joint.rotation_order
        if order:
            rot = np.eye(3)
            for a in order:
                angle = np.deg2rad(values[:, joint.channels.index(f"{a}rotation")])
                rot = rot @ up_rotation(angle, "XYZ".index(a))
            rotations[:, i] = rot
        if i == 0:
            for a, name in enumerate(("Xposition", "Yposition", "Zposition")):
                if name in joint.channels:
                    root_position[:, a] += values[:, joint.channels.index(name)]
    return root_position, rotations, motion[:, bvh_extra_channels(skeleton)]


def bvh_motion_from_pose(skeleton, root_position: np.ndarray, rotations: np.ndarray,
                         extra: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`bvh_pose`: BVH frame values ``(T, n_channels)`` for ``skeleton``.

    Each rotation becomes Euler angles in the joint's own channel order (unwrapped over time, so
    there are no 360-degree jumps). A joint with one or two rotation channels keeps the angles of
    the decomposition in its order completed with the missing axes: exact for rotations it can
    express, the nearest such rotation's angles otherwise. Root position channels are the position
    minus the root's offset.
    """
    n = root_position.shape[0]
    out = np.zeros((n, skeleton.n_channels))
    extra_columns = bvh_extra_channels(skeleton)
    if extra_columns:
        out[:, extra_columns] = np.zeros((n, len(extra_columns))) if extra is None else extra
    for i, (joint, sl) in enumerate(zip(skeleton.joints, skeleton.channel_slices())):
        order = joint.rotation_order
        if order:
            angles = matrix_to_euler(rotations[:, i], _full_order(order))[:, :len(order)]
            angles = np.unwrap(angles, period=360.0, axis=0)
            for k, a in enumerate(order):
                out[:, sl.start + joint.channels.index(f"{a}rotation")] = angles[:, k]
        if i == 0:
            for a, name in enumerate(("Xposition", "Yposition", "Zposition")):
                if name in joint.channels:
                    out[:, sl.start + joint.channels.index(name)] = root_position[:, a] - joint.offset[a]
    return out


def bvh_feature_width(skeleton, rotation: str) -> int:
    """Numbers per frame of :func:`bvh_features` for ``skeleton``."""
    return (BODY_ROOT_SIZE + len(bvh_rotation_joints(skeleton)) * rotation_size(rotation)
            + len(bvh_extra_channels(skeleton)))


def bvh_features(skeleton, motion: np.ndarray, *, source_fps: float | None = None, fps: float | None = None,
                 rotation: str = "expmap", up_axis: int = 1) -> np.ndarray:
    """BVH frame values -> features ``(T', bvh_feature_width)``: :func:`body_features` of the root and
    of every joint with rotation channels (:func:`bvh_rotation_joints`), then the other joints'
    position channels as they are. With ``source_fps`` and ``fps`` the take is first resampled
    (:func:`resample_pose`).
    """
    root_position, rotations, extra = bvh_pose(skeleton, motion)
    if source_fps is not None and fps is not None and root_position.shape[0]:
        root_position, rotations, extra = resample_pose(root_position, rotations, extra, source_fps, fps)
    if root_position.shape[0] == 0:
        return np.zeros((0, bvh_feature_width(skeleton, rotation)))
    body = body_features(root_position, rotations[:, bvh_rotation_joints(skeleton)],
                         rotation=rotation, up_axis=up_axis)
    return np.concatenate([body, extra], 1)


def bvh_motion_from_features(skeleton, features: np.ndarray, *, rotation: str = "expmap",
                             up_axis: int = 1) -> np.ndarray:
    """Inverse of :func:`bvh_features` (at the features' frame rate): BVH frame values ``(T, n_channels)``,
    the root starting at the ground origin with heading 0."""
    x = np.asarray(features, dtype=np.float64)
    width = bvh_feature_width(skeleton, rotation)
    if x.ndim != 2 or x.shape[1] != width:
        raise UserError(f"motion features have shape {x.shape}; this skeleton's frames have {width} values")
    n_extra = len(bvh_extra_channels(skeleton))
    body, extra = x[:, :width - n_extra], x[:, width - n_extra:]
    root_position, some = pose_from_body_features(body, rotation=rotation, up_axis=up_axis)
    rotations = np.broadcast_to(np.eye(3), (x.shape[0], len(skeleton.joints), 3, 3)).copy()
    rotations[:, bvh_rotation_joints(skeleton)] = some
    return bvh_motion_from_pose(skeleton, root_position, rotations, extra)
