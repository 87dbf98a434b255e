"""Euler rotations, BVH write/read, ASF/AMC kinematics and the ASF -> BVH conversion."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from probseq.io.amc import (AmcMotion, amc_from_bvh, asf_rotation, forward_kinematics, parse_asf,
                              read_amc, read_asf, to_bvh)
from probseq.io.bvh import (BvhJoint, BvhSkeleton, bvh_forward_kinematics, euler_to_matrix,
                              matrix_to_euler, parse_bvh, read_bvh, write_bvh)
from probseq.errors import UserError
from probseq.testing.synthetic_mocap import SYNTHETIC_ASF, write_synthetic_subject

ORDERS = ["".join(p) for p in itertools.permutations("XYZ")]


# ---------------------------------------------------------------------------- rotations
@pytest.mark.parametrize("order", ORDERS)
def test_euler_round_trip_including_gimbal_lock(order):
    rng = np.random.default_rng(0)
    angles = rng.uniform(-180, 180, (500, 3))
    angles[:, 1] = rng.uniform(-89.9, 89.9, 500)
    torch_free = euler_to_matrix(angles, order)
    np.testing.assert_allclose(matrix_to_euler(torch_free, order), angles, atol=1e-8)
    angles[:, 1] = rng.choice([-90.0, 90.0], 500)                   # gimbal lock: the matrix must survive
    r = euler_to_matrix(angles, order)
    np.testing.assert_allclose(euler_to_matrix(matrix_to_euler(r, order), order), r, atol=1e-10)


def test_euler_matrices_follow_the_bvh_convention():
    # "Zrotation Xrotation" = R_z R_x: rotate about X first, then about the fixed Z axis
    r = euler_to_matrix(np.array([90.0, 90.0, 0.0]), "ZXY")
    np.testing.assert_allclose(r @ np.array([0.0, 1.0, 0.0]), [-0.0, 0.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(r @ np.array([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0], atol=1e-12)
    # Acclaim order "XYZ" applies X first: the same matrix as BVH "ZYX" with reversed angles
    np.testing.assert_allclose(asf_rotation(np.array([10.0, 20.0, 30.0]), "XYZ"),
                               euler_to_matrix(np.array([30.0, 20.0, 10.0]), "ZYX"), atol=1e-12)


# ---------------------------------------------------------------------------- BVH files
def _toy_skeleton() -> BvhSkeleton:
    return BvhSkeleton([
        BvhJoint("hips", -1, np.zeros(3), ("Xposition", "Yposition", "Zposition", "Zrotation",
                                           "Xrotation", "Yrotation")),
        BvhJoint("chest", 0, np.array([0.0, 2.0, 0.0]), ("Zrotation", "Xrotation", "Yrotation")),
        BvhJoint("head", 1, np.array([0.0, 1.5, 0.2]), ("Xrotation", "Yrotation", "Zrotation"),
                 end_site=np.array([0.0, 0.5, 0.0])),
        BvhJoint("leg", 0, np.array([0.5, -1.0, 0.0]), ("Yrotation", "Zrotation", "Xrotation"),
                 end_site=np.array([0.0, -2.0, 0.0])),
    ])


def _hierarchy_counts(text: str) -> tuple[int, int, list[int]]:
    """Joints, declared channels and numbers per motion line, read from the raw text."""
    head, motion = text.split("MOTION")
    joints = len(re.findall(r"^\s*(ROOT|JOINT)\s", head, re.M))
    channels = sum(int(n) for n in re.findall(r"CHANNELS\s+(\d+)", head))
    assert head.count("{") == head.count("}")
    lines = motion.strip().splitlines()
    frames = int(lines[0].split(":")[1])
    assert lines[1].startswith("Frame Time:") and len(lines) == 2 + frames
    return joints, channels, [len(line.split()) for line in lines[2:]]


def test_write_then_read_round_trip(tmp_path):
    skel = _toy_skeleton()
    motion = np.random.default_rng(1).uniform(-170, 170, (7, skel.n_channels))
    path = write_bvh(tmp_path / "toy.bvh", skel, motion, 1 / 30)
    joints, channels, widths = _hierarchy_counts(path.read_text())
    assert joints == 4 and channels == 15 and set(widths) == {15}
    back, values, frame_time = read_bvh(path)
    assert [j.name for j in back.joints] == ["hips", "chest", "head", "leg"]
    assert [j.parent for j in back.joints] == [-1, 0, 1, 0]
    assert [j.channels for j in back.joints] == [j.channels for j in skel.joints]
    np.testing.assert_allclose(back.joints[2].end_site, [0.0, 0.5, 0.0])
    np.testing.assert_allclose(values, motion, atol=1e-6)
    assert abs(frame_time - 1 / 30) < 1e-8


def test_bvh_forward_kinematics_on_a_hand_checked_pose():
    skel = _toy_skeleton()
    frame = np.zeros((1, skel.n_channels))
    frame[0, :3] = [1.0, 2.0, 3.0]
    frame[0, 3] = 90.0                        # hips Zrotation 90: the chest offset (0, 2, 0) -> (-2, 0, 0)
    pos = bvh_forward_kinematics(skel, frame)[0]
    np.testing.assert_allclose(pos[0], [1.0, 2.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(pos[1], [-1.0, 2.0, 3.0], atol=1e-12)
    np.testing.assert_allclose(pos[2], [-2.5, 2.0, 3.2], atol=1e-12)


def test_malformed_bvh_gives_clear_errors(tmp_path):
    path = write_bvh(tmp_path / "toy.bvh", _toy_skeleton(), np.zeros((2, 15)), 0.1)
    text = path.read_text()
    with pytest.raises(UserError, match="numbers"):
        parse_bvh(text.rstrip() + " 1.0\n")
    with pytest.raises(UserError, match="unknown channel"):
        parse_bvh(text.replace("Xrotation", "Wrotation", 1))
    with pytest.raises(UserError, match="HIERARCHY"):
        parse_bvh("MOTION\n")
    with pytest.raises(UserError, match="NaN"):
        write_bvh(tmp_path / "bad.bvh", _toy_skeleton(), np.full((1, 15), np.nan), 0.1)


# ---------------------------------------------------------------------------- ASF/AMC -> BVH
def _check_conversion(skeleton, motion: AmcMotion, tmp_path, frame_time=1 / 120):
    bvh, values = to_bvh(skeleton, motion)
    path = write_bvh(tmp_path / "out.bvh", bvh, values, frame_time)
    joints, channels, widths = _hierarchy_counts(path.read_text())
    assert joints == len(skeleton.bones) and channels == 6 + 3 * (joints - 1)
    assert set(widths) == {channels}
    back, read_values, _ = read_bvh(path)
    # (1) the BVH's own forward kinematics put every joint where the ASF/AMC kinematics do
    asf_pos, names, _ = forward_kinematics(skeleton, motion)
    bvh_pos = bvh_forward_kinematics(back, read_values)
    for i, joint in enumerate(back.joints):
        parent = skeleton.parent[joint.name]
        expected = asf_pos[:, names.index(parent)] if parent else asf_pos[:, 0]
        np.testing.assert_allclose(bvh_pos[:, i], expected, atol=1e-4, err_msg=joint.name)
    # (2) the angles come back: BVH -> AMC values equal the originals (modulo 360 degrees)
    recovered = amc_from_bvh(skeleton, motion.channels, back, read_values)
    diff = recovered.values - motion.values
    rot = np.array([d.startswith("r") for _, d in motion.channels])
    diff[:, rot] = (diff[:, rot] + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(diff, 0.0, atol=1e-4)
    return back, read_values


def test_cmu_subject_35_converts_to_an_equivalent_bvh(shared_data, tmp_path):
    skeleton = read_asf(shared_data / "mocap" / "35.asf")                 # CRLF line endings
    motion = read_amc(shared_data / "mocap" / "35_01.amc", skeleton)
    assert motion.values.shape == (358, 62) and len(skeleton.bones) == 31
    assert motion.channels[:4] == [("root", "tx"), ("root", "ty"), ("root", "tz"), ("root", "rx")]
    np.testing.assert_allclose(motion.values[0, :3], [4.40047, 17.8934, -21.0986])
    bvh, values = _check_conversion(skeleton, motion, tmp_path)
    # ASF "axis ... XYZ" (X applied first) is written as "Zrotation Yrotation Xrotation"; for a bone
    # whose local frame is the world frame (lowerback: axis 0 0 0) the numbers are the AMC's own
    joint = [j.name for j in bvh.joints].index("lowerback")
    assert bvh.joints[joint].channels == ("Zrotation", "Yrotation", "Xrotation")
    start = sum(len(j.channels) for j in bvh.joints[:joint])
    amc = [motion.channels.index(("lowerback", d)) for d in ("rz", "ry", "rx")]
    np.testing.assert_allclose(values[:, start:start + 3], motion.values[:, amc], atol=1e-5)


def test_a_subject_the_code_has_never_seen(tmp_path):
    amc = write_synthetic_subject(tmp_path, n_files=1, frames=30)[0]
    skeleton = read_asf(tmp_path / "synth.asf")
    assert skeleton.angle_unit == "rad" and skeleton.root_rotation_order == "ZXY"
    motion = read_amc(amc, skeleton)
    assert [b for b, _ in motion.channels].count("hand_a") == 3 and ("arm_a", "rz") in motion.channels
    assert np.abs(motion.values[:, 3:]).max() > 10.0                       # radians became degrees
    _check_conversion(skeleton, motion, tmp_path)


def test_asf_kinematics_rest_pose_and_a_root_turn():
    skeleton = parse_asf(SYNTHETIC_ASF)
    channels = [("root", d) for d in skeleton.root_order]
    rest = AmcMotion(channels, np.zeros((1, 6)))
    pos, names, parents = forward_kinematics(skeleton, rest)
    spine = skeleton.bones["spine"]
    np.testing.assert_allclose(pos[0, names.index("spine")], 3.0 * spine.direction, atol=1e-12)
    neck = pos[0, names.index("spine")] + skeleton.bones["neck"].length * skeleton.bones["neck"].direction
    np.testing.assert_allclose(pos[0, names.index("neck")], neck, atol=1e-12)
    assert parents[names.index("hand_a")] == names.index("arm_a")
    turned = AmcMotion(channels, np.array([[0, 0, 0, 0, 0, 90.0]]))       # root RY = 90 degrees
    pos, _, _ = forward_kinematics(skeleton, turned)
    np.testing.assert_allclose(pos[0, names.index("arm_a")] - pos[0, names.index("spine")],
                               [0.0, 0.0, -2.0], atol=1e-9)                # +x turned about y -> -z


def test_asf_and_amc_errors_name_the_line(tmp_path):
    skeleton = parse_asf(SYNTHETIC_ASF)
    with pytest.raises(UserError, match=r"<amc>:3: bone 'tail' is not in the skeleton"):
        from probseq.io.amc import parse_amc
        parse_amc(":DEGREES\n1\ntail 1 2 3\n", skeleton)
    from probseq.io.amc import parse_amc
    with pytest.raises(UserError, match="has 2 values, its dof need 3"):
        parse_amc("1\nspine 1 2\n", skeleton)
    with pytest.raises(UserError, match="NaN"):
        parse_amc("1\nneck nan\n", skeleton)
    with pytest.raises(UserError, match="frame 2 differs"):
        parse_amc("1\nneck 1\nfoot 1\n2\nneck 1\n", skeleton)
    with pytest.raises(UserError, match="no frames"):
        parse_amc(":FULLY-SPECIFIED\n", skeleton)
    with pytest.raises(UserError, match="hierarchy"):
        parse_asf(SYNTHETIC_ASF.replace("leg foot", "leg"))
    with pytest.raises(UserError, match="no such file"):
        read_asf(tmp_path / "missing.asf")
