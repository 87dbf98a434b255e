"""Acclaim ASF/AMC motion capture (the CMU Graphics Lab format): reader, kinematics, BVH export.

An ``.asf`` file describes a skeleton: units, the root (channel ``order``, rotation ``axis``
order), and per bone a unit ``direction`` (world frame, rest pose), a ``length``, an ``axis``
(three angles and an order, defining the bone's local frame ``C``) and its degrees of freedom
``dof`` (a subset of ``rx ry rz``, in the order the values appear in the motion file). An
``.amc`` file gives, per frame, a frame number line and then one line ``bone v1 v2 ...`` per bone.

Forward kinematics (the Acclaim convention; angles of an order string ``"XYZ"`` are applied X
first, i.e. ``R = R_z R_y R_x`` on column vectors):

.. math::

    L_b = C_b\\, M_b\\, C_b^{-1}, \\qquad G_b = G_{p(b)} L_b, \\qquad
    e_b = e_{p(b)} + \\ell_b\\, G_b\\, d_b,

with ``M_b`` the frame's rotation from the bone's dof values (missing axes are zero), ``d_b`` its
direction, ``ell_b`` its length and ``e_b`` its end point; the root has ``e_root`` = its
translation channels and ``G_root = C_root M_root C_root^{-1}``.

BVH export (:func:`to_bvh`): one BVH joint per ASF bone, placed at the bone's start; its offset
is the parent bone's vector ``ell d`` (zero under the root) and its local rotation is ``L_b``,
written as Euler angles in the channel order that reproduces the ASF order (``XYZ`` ->
``Zrotation Yrotation Xrotation``). Leaf bones get an ``End Site`` at their end. Since both
formats put rotations in the same world-aligned rest frame, the BVH's forward kinematics equal
the ASF's exactly (checked by ``tests/test_bvh.py``). Bones without rotational dof get three
zero rotation channels, so every joint has channels (some importers reject ``CHANNELS 0``).
Translation dof on non-root bones (``tx ty tz l``, rare) are kept as features but ignored by the
kinematics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probseq.io.bvh import BvhJoint, BvhSkeleton, euler_to_matrix, matrix_to_euler
from probseq.errors import UserError

__all__ = ["AsfBone", "AsfSkeleton", "AmcMotion", "parse_asf", "read_asf", "parse_amc", "read_amc",
           "asf_rotation", "local_rotations", "forward_kinematics", "to_bvh", "amc_from_bvh"]

_ROTATION_DOF = ("rx", "ry", "rz")


@dataclass
class AsfBone:
    """One bone of an ASF skeleton (angles in degrees, lengths in the file's units)."""

    name: str
    direction: np.ndarray          # (3,) unit vector, world frame, rest pose
    length: float
    axis: np.ndarray               # (3,) angles of the local frame C, in ``axis_order``
    axis_order: str                # e.g. "XYZ": X applied first
    dof: tuple[str, ...] = ()      # subset of rx ry rz (tx ty tz l), in motion-file order


@dataclass
class AsfSkeleton:
    """An ASF skeleton. ``bones`` holds the root first (name ``"root"``), then the bones in file order.

    Attributes:
        root_order: the root's channels in motion-file order, lower-case (``tx ty tz rx ry rz``).
        parent: bone name -> parent bone name (``None`` for the root).
        angle_unit: ``"deg"`` or ``"rad"`` as declared by the file (values are stored in degrees).
        length_scale: the ``:units length`` value (lengths are kept in file units).
    """

    name: str
    bones: dict[str, AsfBone]
    root_order: tuple[str, ...]
    parent: dict[str, str | None]
    angle_unit: str = "deg"
    length_scale: float = 1.0
    #: axes of the root's rotation channels in application order (from ``order``), e.g. ``"XYZ"``
    root_rotation_order: str = "XYZ"
    text: str = field(default="", repr=False)

    def children(self, name: str) -> list[str]:
        return [b for b, p in self.parent.items() if p == name]

    def depth_first(self) -> list[str]:
        """Bone names, root first, each parent before its children (file order among siblings)."""
        order, stack = [], ["root"]
        while stack:
            b = stack.pop()
            order.append(b)
            stack.extend(reversed(self.children(b)))
        return order

    def dof(self, bone: str) -> tuple[str, ...]:
        return self.root_order if bone == "root" else self.bones[bone].dof


@dataclass
class AmcMotion:
    """Frames of an AMC file: ``values (T, C)`` with ``channels[c] = (bone, dof)``; angles in degrees."""

    channels: list[tuple[str, str]]
    values: np.ndarray


# ---------------------------------------------------------------------------- ASF
def _clean_lines(text: str) -> list[tuple[int, str]]:
    out = []
    for number, raw in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        line = raw.split("#", 1)[0].strip()
        if line:
            out.append((number, line))
    return out


def _floats(parts: list[str], source: str, number: int) -> np.ndarray:
    try:
        return np.array([float(p) for p in parts], dtype=np.float64)
    except ValueError:
        raise UserError(f"{source}:{number}: expected numbers, found {' '.join(parts)!r}") from None


def _order(token: str, source: str, number: int) -> str:
    token = token.upper()
    if sorted(token) != ["X", "Y", "Z"]:
        raise UserError(f"{source}:{number}: a rotation order must name X, Y and Z once each, got {token!r}")
    return token


def parse_asf(text: str, source: str = "<asf>") -> AsfSkeleton:
    """Parse ASF text (any line endings) into an :class:`AsfSkeleton`."""
    lines = _clean_lines(text)
    section, angle_unit, length_scale = None, "deg", 1.0
    root_order: tuple[str, ...] = ()
    root_axis, root_orientation = "XYZ", np.zeros(3)
    bones: dict[str, AsfBone] = {}
    parent: dict[str, str | None] = {"root": None}
    current: dict | None = None
    in_limits = False
    name = "skeleton"
    for number, line in lines:
        if line.startswith(":"):
            parts = line.split()
            section = parts[0][1:].lower()
            if section == "name" and len(parts) > 1:
                name = parts[1]
            continue
        parts = line.split()
        key = parts[0].lower()
        if section == "units":
            if key == "angle":
                angle_unit = parts[1].lower()[:3]
                if angle_unit not in ("deg", "rad"):
                    raise UserError(f"{source}:{number}: unknown angle unit {parts[1]!r}")
            elif key == "length":
                length_scale = float(_floats(parts[1:2], source, number)[0])
        elif section == "root":
            if key == "order":
                root_order = tuple(p.lower() for p in parts[1:])
            elif key == "axis":
                root_axis = _order(parts[1], source, number)
            elif key == "orientation":
                root_orientation = _floats(parts[1:4], source, number)
        elif section == "bonedata":
            if key == "begin":
                current, in_limits = {"dof": ()}, False
            elif key == "end":
                if current is None or "name" not in current:
                    raise UserError(f"{source}:{number}: a bone block without a name")
                missing = [k for k in ("direction", "length", "axis") if k not in current]
                if missing:
                    raise UserError(f"{source}:{number}: bone {current['name']!r} has no {missing[0]}")
                bones[current["name"]] = AsfBone(
                    current["name"], current["direction"], current["length"], current["axis"],
                    current["axis_order"], current["dof"])
                current = None
            elif current is None:
                raise UserError(f"{source}:{number}: {parts[0]!r} outside a begin/end bone block")
            elif key == "name":
                current["name"] = parts[1]
            elif key == "direction":
                d = _floats(parts[1:4], source, number)
                norm = float(np.linalg.norm(d))
                current["direction"] = d / norm if norm > 0 else d
            elif key == "length":
                current["length"] = float(_floats(parts[1:2], source, number)[0])
            elif key == "axis":
                current["axis"] = _floats(parts[1:4], source, number)
                current["axis_order"] = _order(parts[4] if len(parts) > 4 else "XYZ", source, number)
            elif key == "dof":
                current["dof"] = tuple(p.lower() for p in parts[1:])
                in_limits = False
            elif key == "limits" or (in_limits and line.startswith("(")):
                in_limits = True
            elif key in ("id", "bodymass", "cofmass"):
                pass
            elif line.startswith("("):
                pass
            else:
                raise UserError(f"{source}:{number}: unknown bone field {parts[0]!r}")
        elif section == "hierarchy":
            if key in ("begin", "end"):
                continue
            for child in parts[1:]:
                parent[child] = parts[0]
    if not root_order:
        raise UserError(f"{source}: the ASF file has no :root order line")
    if not bones:
        raise UserError(f"{source}: the ASF file defines no bones")
    unknown = [b for b in parent if b != "root" and b not in bones]
    if unknown:
        raise UserError(f"{source}: the hierarchy names bone {unknown[0]!r}, which has no bone data")
    orphans = [b for b in bones if b not in parent]
    if orphans:
        raise UserError(f"{source}: bone {orphans[0]!r} is not in the :hierarchy section")
    scale = 180.0 / np.pi if angle_unit == "rad" else 1.0
    for bone in bones.values():
        bone.axis = bone.axis * scale
    root_rot = "".join(c[1].upper() for c in root_order if c in _ROTATION_DOF)
    root = AsfBone("root", np.zeros(3), 0.0, root_orientation * scale, root_axis, root_order)
    root_rotation_order = root_rot if sorted(root_rot) == ["X", "Y", "Z"] else root_axis
    all_bones = {"root": root, **bones}
    return AsfSkeleton(name, all_bones, root_order, parent, angle_unit, length_scale,
                       root_rotation_order, text)


def read_asf(path: str | Path) -> AsfSkeleton:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    return parse_asf(path.read_text(errors="replace"), source=str(path))


# ---------------------------------------------------------------------------- AMC
def parse_amc(text: str, skeleton: AsfSkeleton, source: str = "<amc>") -> AmcMotion:
    """Parse AMC text; the channel layout is the bone order of the first frame.

    Values in radians (``:RADIANS`` header, or an ASF in radians without ``:DEGREES``) are
    converted to degrees; translations are kept in file units.
    """
    unit = skeleton.angle_unit
    frames: list[tuple[int, dict[str, np.ndarray]]] = []   # (line number, bone -> values)
    for number, line in _clean_lines(text):
        if line.startswith(":"):
            word = line[1:].split()[0].upper() if len(line) > 1 else ""
            unit = {"DEGREES": "deg", "RADIANS": "rad"}.get(word, unit)
            continue
        parts = line.split()
        if len(parts) == 1 and parts[0].isdigit():
            frames.append((number, {}))
            continue
        if not frames:
            raise UserError(f"{source}:{number}: data before the first frame number")
        bone, current = parts[0], frames[-1][1]
        if bone not in skeleton.bones:
            raise UserError(f"{source}:{number}: bone {bone!r} is not in the skeleton {skeleton.name!r}")
        values = _floats(parts[1:], source, number)
        if len(values) != len(skeleton.dof(bone)):
            raise UserError(f"{source}:{number}: bone {bone!r} has {len(values)} values, its dof "
                            f"need {len(skeleton.dof(bone))}")
        if not np.isfinite(values).all():
            raise UserError(f"{source}:{number}: bone {bone!r} has a NaN or infinite value")
        if bone in current:
            raise UserError(f"{source}:{number}: bone {bone!r} appears twice in one frame")
        current[bone] = values
    if not frames or not frames[0][1]:
        raise UserError(f"{source}: the AMC file holds no frames")
    layout = list(frames[0][1])
    rows = []
    for k, (number, current) in enumerate(frames):
        if set(current) != set(layout):
            odd = sorted(set(layout) ^ set(current))[0]
            raise UserError(f"{source}:{number}: frame {k + 1} differs from the first frame in bone {odd!r}")
        rows.append(np.concatenate([current[b] for b in layout]))
    channels = [(b, d) for b in layout for d in skeleton.dof(b)]
    values = np.stack(rows)
    if unit == "rad":
        rot = np.array([d in _ROTATION_DOF for _, d in channels])
        values[:, rot] = np.rad2deg(values[:, rot])
    return AmcMotion(channels, values)


def read_amc(path: str | Path, skeleton: AsfSkeleton) -> AmcMotion:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    return parse_amc(path.read_text(errors="replace"), skeleton, source=str(path))


# ---------------------------------------------------------------------------- kinematics
def asf_rotation(angles_deg: np.ndarray, order: str) -> np.ndarray:
    """Acclaim rotation: ``order = "XYZ"`` applies X first, i.e. ``R_z R_y R_x`` (column vectors).

    ``angles_deg[..., k]`` is the angle about axis ``order[k]``.
    """
    return euler_to_matrix(np.asarray(angles_deg)[..., ::-1], order[::-1])


def _rotation_order(skeleton: AsfSkeleton, bone: str) -> str:
    if bone == "root":
        return skeleton.root_rotation_order
    return skeleton.bones[bone].axis_order


def _dof_angles(skeleton: AsfSkeleton, motion: AmcMotion, bone: str) -> np.ndarray:
    """``(T, 3)`` angles about the axes of the bone's rotation order (zero for missing dof)."""
    order = _rotation_order(skeleton, bone)
    out = np.zeros((motion.values.shape[0], 3))
    index = {ch: c for c, ch in enumerate(motion.channels)}
    for k, axis in enumerate(order):
        c = index.get((bone, "r" + axis.lower()))
        if c is not None:
            out[:, k] = motion.values[:, c]
    return out


def local_rotations(skeleton: AsfSkeleton, motion: AmcMotion) -> dict[str, np.ndarray]:
    """``L_b = C_b M_b C_b^{-1}`` for every bone, ``(T, 3, 3)`` each."""
    out = {}
    for bone in skeleton.depth_first():
        b = skeleton.bones[bone]
        c = asf_rotation(b.axis, b.axis_order)
        m = asf_rotation(_dof_angles(skeleton, motion, bone), _rotation_order(skeleton, bone))
        out[bone] = c @ m @ c.T
    return out


def _root_translation(skeleton: AsfSkeleton, motion: AmcMotion) -> np.ndarray:
    index = {ch: c for c, ch in enumerate(motion.channels)}
    out = np.zeros((motion.values.shape[0], 3))
    for k, d in enumerate(("tx", "ty", "tz")):
        c = index.get(("root", d))
        if c is not None:
            out[:, k] = motion.values[:, c]
    return out


def forward_kinematics(skeleton: AsfSkeleton, motion: AmcMotion) -> tuple[np.ndarray, list[str], list[int]]:
    """World positions ``(T, J, 3)`` of the root and every bone's end point.

    Returns ``(positions, names, parents)`` with ``parents[j]`` the index of the joint a stick
    figure connects ``j`` to (``-1`` for the root).
    """
    names = skeleton.depth_first()
    local = local_rotations(skeleton, motion)
    glob: dict[str, np.ndarray] = {}
    positions = np.zeros((motion.values.shape[0], len(names), 3))
    for j, bone in enumerate(names):
        p = skeleton.parent[bone]
        if p is None:
            glob[bone] = local[bone]
            positions[:, j] = _root_translation(skeleton, motion)
            continue
        glob[bone] = glob[p] @ local[bone]
        b = skeleton.bones[bone]
        positions[:, j] = positions[:, names.index(p)] + glob[bone] @ (b.length * b.direction)
    parents = [-1 if skeleton.parent[b] is None else names.index(skeleton.parent[b]) for b in names]
    return positions, names, parents


def _bvh_order(asf_order: str) -> str:
    """The BVH channel order reproducing an ASF order: ``"XYZ"`` -> ``"ZYX"``."""
    return asf_order[::-1]


def to_bvh(skeleton: AsfSkeleton, motion: AmcMotion) -> tuple[BvhSkeleton, np.ndarray]:
    """The BVH hierarchy and ``(T, C)`` frame values equivalent to ``motion`` (see module docstring).

    Angles are unwrapped over time (no 360-degree jumps), so keyframe interpolation stays smooth.
    """
    names = skeleton.depth_first()
    local = local_rotations(skeleton, motion)
    bvh = BvhSkeleton()
    columns = []
    for bone in names:
        p = skeleton.parent[bone]
        order = _bvh_order(_rotation_order(skeleton, bone))
        rotations = tuple(f"{a}rotation" for a in order)
        if p is None:
            bvh.joints.append(BvhJoint(bone, -1, np.zeros(3),
                                       ("Xposition", "Yposition", "Zposition") + rotations))
            columns.append(_root_translation(skeleton, motion))
        else:
            pb = skeleton.bones[p]
            bvh.joints.append(BvhJoint(bone, names.index(p), pb.length * pb.direction, rotations))
        columns.append(np.unwrap(matrix_to_euler(local[bone], order), period=360.0, axis=0))
        if not skeleton.children(bone):
            b = skeleton.bones[bone]
            bvh.joints[-1].end_site = b.length * b.direction
    return bvh, np.concatenate(columns, axis=1)


def amc_from_bvh(skeleton: AsfSkeleton, channels: list[tuple[str, str]], bvh: BvhSkeleton,
                 values: np.ndarray) -> AmcMotion:
    """Inverse of :func:`to_bvh`: AMC channel values from BVH frames written for ``skeleton``.

    Rotation dof come back in ``(-180, 180]`` (unwrapped over time); a bone's rotation about an
    axis it has no dof for is dropped (it is zero for BVH written by :func:`to_bvh`).
    """
    slices = dict(zip((j.name for j in bvh.joints), bvh.channel_slices()))
    joints = {j.name: j for j in bvh.joints}
    n = values.shape[0]
    out = np.zeros((n, len(channels)))
    for bone in {b for b, _ in channels}:
        if bone not in joints:
            raise UserError(f"the BVH file has no joint {bone!r}; it was not written for this skeleton")
        joint, sl = joints[bone], slices[bone]
        order = joint.rotation_order
        frame = values[:, sl]
        angles = np.stack([frame[:, joint.channels.index(f"{a}rotation")] for a in order], -1)
        b = skeleton.bones[bone]
        c = asf_rotation(b.axis, b.axis_order)
        m = c.T @ euler_to_matrix(angles, order) @ c
        asf_order = _rotation_order(skeleton, bone)
        dof_angles = np.unwrap(matrix_to_euler(m, asf_order[::-1])[..., ::-1], period=360.0, axis=0)
        for col, (cb, d) in enumerate(channels):
            if cb != bone:
                continue
            if d in _ROTATION_DOF:
                out[:, col] = dof_angles[:, asf_order.index(d[1].upper())]
            elif d in ("tx", "ty", "tz") and bone == "root":
                out[:, col] = frame[:, joint.channels.index(f"{d[1].upper()}position")]
    return AmcMotion(list(channels), out)
