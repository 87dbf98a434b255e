"""BioVision Hierarchy (BVH) motion files: Euler rotations, a writer, a reader and forward kinematics.

A BVH file has two sections. ``HIERARCHY`` is a tree of joints; each joint has an ``OFFSET`` (its
position relative to its parent joint in the rest pose, in the parent's frame) and ``CHANNELS``
(what each number of a frame line means, e.g. ``Xposition Yposition Zposition Zrotation Yrotation
Xrotation`` for the root); a leaf ends in an ``End Site`` with an offset only. ``MOTION`` gives the
number of frames, the frame time in seconds and one line of numbers per frame, the channels of the
joints in the order the joints appear in the hierarchy.

Rotation convention (the one Blender, MotionBuilder and the CMU BVH conversions use): the rotation
channels of a joint, read left to right as axes ``a, b, c`` with angles ``alpha, beta, gamma`` in
degrees, give the local rotation

.. math:: L = R_a(\\alpha)\\, R_b(\\beta)\\, R_c(\\gamma)

acting on column vectors, and a joint's global rotation and position are

.. math:: G_j = G_{p(j)} L_j, \\qquad x_j = x_{p(j)} + G_{p(j)}\\, o_j,

with ``o_j`` the joint's offset (the root's position channels replace ``x_root``). So
``Zrotation Yrotation Xrotation`` means "rotate about X first, then Y, then Z about fixed axes".

Everything here is NumPy and vectorised over frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from probseq.errors import UserError

__all__ = ["euler_to_matrix", "matrix_to_euler", "BvhJoint", "BvhSkeleton", "write_bvh",
           "read_bvh", "parse_bvh", "bvh_forward_kinematics", "ROTATION_CHANNELS",
           "POSITION_CHANNELS"]

ROTATION_CHANNELS = ("Xrotation", "Yrotation", "Zrotation")
POSITION_CHANNELS = ("Xposition", "Yposition", "Zposition")
_AXIS = {"X": 0, "Y": 1, "Z": 2}


# ---------------------------------------------------------------------------- rotations
def _axis_rotation(axis: str, angle_rad: np.ndarray) -> np.ndarray:
    """``(..., 3, 3)`` rotation by ``angle_rad`` (shape ``(...)``) about the X, Y or Z axis."""
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    one, zero = np.ones_like(c), np.zeros_like(c)
    if axis == "X":
        rows = [[one, zero, zero], [zero, c, -s], [zero, s, c]]
    elif axis == "Y":
        rows = [[c, zero, s], [zero, one, zero], [-s, zero, c]]
    else:
        rows = [[c, -s, zero], [s, c, zero], [zero, zero, one]]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def _check_axes(axes: str) -> str:
    axes = axes.upper()
    if sorted(axes) != ["X", "Y", "Z"]:
        raise UserError(f"a rotation order must name X, Y and Z once each, got {axes!r}")
    return axes


def euler_to_matrix(angles_deg: np.ndarray, axes: str) -> np.ndarray:
    """``R = R_{axes[0]}(a_0) R_{axes[1]}(a_1) R_{axes[2]}(a_2)`` for angles in degrees.

    Args:
        angles_deg: ``(..., 3)``, one angle per letter of ``axes``.
        axes: a permutation of ``"XYZ"`` (the BVH channel order).

    Returns:
        ``(..., 3, 3)`` rotation matrices acting on column vectors.
    """
    axes = _check_axes(axes)
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    out = _axis_rotation(axes[0], angles[..., 0])
    for k in (1, 2):
        out = out @ _axis_rotation(axes[k], angles[..., k])
    return out


def matrix_to_euler(matrix: np.ndarray, axes: str) -> np.ndarray:
    """Inverse of :func:`euler_to_matrix`: angles ``(..., 3)`` in degrees, middle one in [-90, 90].

    With ``R = R_i(a) R_j(b) R_k(c)`` and ``s = +1`` for an even permutation ``(i, j, k)`` of
    ``(0, 1, 2)`` (``-1`` for an odd one): ``sin b = s R[i,k]``, ``tan a = -s R[j,k] / R[k,k]``,
    ``tan c = -s R[i,j] / R[i,i]``. At gimbal lock (``|b| = 90``) the split between ``a`` and ``c``
    is not unique; ``c = 0`` is chosen there.
    """
    axes = _check_axes(axes)
    i, j, k = (_AXIS[a] for a in axes)
    s = 1.0 if (j - i) % 3 == 1 else -1.0
    r = np.asarray(matrix, dtype=np.float64)
    sin_b = np.clip(s * r[..., i, k], -1.0, 1.0)
    b = np.arcsin(sin_b)
    a = np.arctan2(-s * r[..., j, k], r[..., k, k])
    c = np.arctan2(-s * r[..., i, j], r[..., i, i])
    locked = np.abs(sin_b) > 1.0 - 1e-9
    if np.any(locked):
        # R = R_i(a +/- c) R_j(+/-90): read the combined angle from the j-k block of the i column
        a_locked = np.arctan2(s * r[..., k, j], r[..., j, j])
        a = np.where(locked, a_locked, a)
        c = np.where(locked, 0.0, c)
    return np.rad2deg(np.stack([a, b, c], -1))


# ---------------------------------------------------------------------------- hierarchy
@dataclass
class BvhJoint:
    """One joint: ``parent`` is an index into :attr:`BvhSkeleton.joints` (``-1`` for the root)."""

    name: str
    parent: int
    offset: np.ndarray                      # (3,)
    channels: tuple[str, ...]
    end_site: np.ndarray | None = None      # (3,) for a leaf with an End Site

    @property
    def rotation_order(self) -> str:
        """The rotation channels' axes in file order, e.g. ``"ZYX"`` (empty if none)."""
        return "".join(c[0] for c in self.channels if c in ROTATION_CHANNELS)


@dataclass
class BvhSkeleton:
    """Joints in file (depth-first) order; a parent always precedes its children."""

    joints: list[BvhJoint] = field(default_factory=list)

    @property
    def n_channels(self) -> int:
        return sum(len(j.channels) for j in self.joints)

    def channel_slices(self) -> list[slice]:
        """For each joint, its slice of a frame line."""
        out, start = [], 0
        for j in self.joints:
            out.append(slice(start, start + len(j.channels)))
            start += len(j.channels)
        return out

    def validate(self) -> None:
        names = [j.name for j in self.joints]
        if len(set(names)) != len(names):
            raise UserError("BVH joint names must be unique")
        for idx, j in enumerate(self.joints):
            if (idx == 0) != (j.parent == -1) or j.parent >= idx:
                raise UserError(f"BVH joint {j.name!r} has an invalid parent index {j.parent}")
            bad = [c for c in j.channels if c not in ROTATION_CHANNELS + POSITION_CHANNELS]
            if bad:
                raise UserError(f"BVH joint {j.name!r} has an unknown channel {bad[0]!r}")


def _fmt(values: Sequence[float]) -> str:
    return " ".join(f"{float(v):.6f}" for v in values)


def write_bvh(path: str | Path, skeleton: BvhSkeleton, motion: np.ndarray, frame_time: float) -> Path:
    """Write ``motion`` (``(T, n_channels)``; positions in the offsets' units, angles in degrees)."""
    skeleton.validate()
    motion = np.asarray(motion, dtype=np.float64)
    if motion.ndim != 2 or motion.shape[1] != skeleton.n_channels:
        raise ValueError(f"motion must have shape (T, {skeleton.n_channels}), got {motion.shape}")
    if not np.isfinite(motion).all():
        raise UserError("cannot write a BVH file from motion with NaN or infinite values")
    children: dict[int, list[int]] = {i: [] for i in range(len(skeleton.joints))}
    for i, j in enumerate(skeleton.joints[1:], start=1):
        children[j.parent].append(i)
    lines = ["HIERARCHY"]

    def emit(i: int, depth: int) -> None:
        j, pad = skeleton.joints[i], "  " * depth
        lines.append(f"{pad}{'ROOT' if i == 0 else 'JOINT'} {j.name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {_fmt(j.offset)}")
        lines.append(f"{pad}  CHANNELS {len(j.channels)}{''.join(' ' + c for c in j.channels)}")
        for c in children[i]:
            emit(c, depth + 1)
        if not children[i]:
            end = j.end_site if j.end_site is not None else np.zeros(3)
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_fmt(end)}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {motion.shape[0]}", f"Frame Time: {frame_time:.8f}"]
    lines += [_fmt(row) for row in motion]
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def parse_bvh(text: str, source: str = "<bvh>") -> tuple[BvhSkeleton, np.ndarray, float]:
    """Parse BVH text into ``(skeleton, motion (T, n_channels), frame_time)``."""
    tokens = text.split()
    pos = 0

    def take(what: str) -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise UserError(f"{source}: the BVH file ends early, expected {what}")
        pos += 1
        return tokens[pos - 1]

    def expect(word: str) -> None:
        got = take(repr(word))
        if got != word:
            raise UserError(f"{source}: expected {word!r} in the BVH file, found {got!r}")

    def number() -> float:
        tok = take("a number")
        try:
            return float(tok)
        except ValueError:
            raise UserError(f"{source}: expected a number in the BVH file, found {tok!r}") from None

    skeleton = BvhSkeleton()
    expect("HIERARCHY")
    stack: list[int] = []
    kind = take("ROOT")
    if kind != "ROOT":
        raise UserError(f"{source}: a BVH hierarchy starts with ROOT, found {kind!r}")
    pending = ("ROOT", take("a joint name"))
    while True:
        if pending is not None:
            kind, name = pending
            pending = None
            expect("{")
            expect("OFFSET")
            offset = np.array([number() for _ in range(3)])
            expect("CHANNELS")
            n = int(number())
            channels = tuple(take("a channel name") for _ in range(n))
            skeleton.joints.append(BvhJoint(name, stack[-1] if stack else -1, offset, channels))
            stack.append(len(skeleton.joints) - 1)
            continue
        tok = take("JOINT, End Site or }")
        if tok == "JOINT":
            pending = ("JOINT", take("a joint name"))
        elif tok == "End":
            expect("Site")
            expect("{")
            expect("OFFSET")
            skeleton.joints[stack[-1]].end_site = np.array([number() for _ in range(3)])
            expect("}")
        elif tok == "}":
            stack.pop()
            if not stack:
                break
        else:
            raise UserError(f"{source}: unexpected {tok!r} in the BVH hierarchy")
    skeleton.validate()
    expect("MOTION")
    expect("Frames:")
    n_frames = int(number())
    expect("Frame")
    expect("Time:")
    frame_time = number()
    values = tokens[pos:]
    width = skeleton.n_channels
    if len(values) != n_frames * width:
        raise UserError(f"{source}: the BVH motion has {len(values)} numbers; {n_frames} frames of "
                        f"{width} channels need {n_frames * width}")
    try:
        motion = np.array(values, dtype=np.float64).reshape(n_frames, width)
    except ValueError:
        raise UserError(f"{source}: the BVH motion section holds a value that is not a number") from None
    return skeleton, motion, frame_time


def read_bvh(path: str | Path) -> tuple[BvhSkeleton, np.ndarray, float]:
    """Read a BVH file (see :func:`parse_bvh`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    return parse_bvh(path.read_text(), source=str(path))


def bvh_forward_kinematics(skeleton: BvhSkeleton, motion: np.ndarray) -> np.ndarray:
    """World positions ``(T, J, 3)`` of every joint, by the convention in the module docstring."""
    motion = np.asarray(motion, dtype=np.float64)
    n = motion.shape[0]
    glob: list[np.ndarray] = []
    positions = np.zeros((n, len(skeleton.joints), 3))
    for idx, (joint, sl) in enumerate(zip(skeleton.joints, skeleton.channel_slices())):
        values = motion[:, sl]
        local = np.broadcast_to(np.eye(3), (n, 3, 3))
        order = joint.rotation_order
        if order:
            angles = np.stack([values[:, joint.channels.index(f"{a}rotation")] for a in order], -1)
            local = _ordered_rotation(angles, order)
        translation = np.array(joint.offset, dtype=np.float64)
        if joint.parent < 0:
            pos = np.broadcast_to(translation, (n, 3)).copy()
            for a, name in enumerate(POSITION_CHANNELS):
                if name in joint.channels:
                    pos[:, a] += values[:, joint.channels.index(name)]
            positions[:, idx] = pos
            glob.append(local)
        else:
            parent_rot = glob[joint.parent]
            positions[:, idx] = positions[:, joint.parent] + parent_rot @ translation
            glob.append(parent_rot @ local)
    return positions


def _ordered_rotation(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Like :func:`euler_to_matrix` for a partial order (one or two axes are allowed in BVH)."""
    out = _axis_rotation(order[0], np.deg2rad(angles_deg[..., 0]))
    for k in range(1, len(order)):
        out = out @ _axis_rotation(order[k], np.deg2rad(angles_deg[..., k]))
    return out
