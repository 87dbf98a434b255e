"""The ``bvh`` dataset and its features (probseq.io.motion_features): rotations, body-frame root
motion, resampling, round trips, bad takes, and fit/evaluate/sample/prime from the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probseq.cli import main
from probseq.data.registry import load_dataset
from probseq.errors import UserError
from probseq.io.bvh import (BvhJoint, BvhSkeleton, bvh_forward_kinematics, euler_to_matrix, read_bvh,
                            write_bvh)
from probseq.io.motion_features import (ROTATIONS, body_features, bvh_features, bvh_motion_from_features,
                                        bvh_pose, continuous_expmap, expmap_to_matrix, heading_angle,
                                        matrix_to_6d, matrix_to_expmap, matrix_to_quaternion,
                                        pose_from_body_features, quaternion_to_matrix, resample_times,
                                        sixd_to_matrix, slerp, up_rotation)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _own_data_home(tmp_path, monkeypatch):
    """The conversion cache goes to a fresh data home, never the developer data."""
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path / "home"))


# ---------------------------------------------------------------------------- takes to test with
def _skeleton(variant: str) -> BvhSkeleton:
    """Two skeletons: ``a`` (three-axis joints, two rotation orders) and ``b`` (another hierarchy
    with a one-axis knee and a joint with position channels)."""
    root = ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")
    if variant == "a":
        return BvhSkeleton([
            BvhJoint("hips", -1, np.array([0.0, 0.0, 0.0]), root),
            BvhJoint("chest", 0, np.array([0.0, 10.0, 0.0]), ("Zrotation", "Xrotation", "Yrotation")),
            BvhJoint("head", 1, np.array([0.0, 8.0, 1.0]), ("Zrotation", "Xrotation", "Yrotation"),
                     end_site=np.array([0.0, 4.0, 0.0])),
            BvhJoint("leg", 0, np.array([3.0, -2.0, 0.0]), ("Yrotation", "Xrotation", "Zrotation")),
            BvhJoint("foot", 3, np.array([0.0, -15.0, 0.0]), ("Yrotation", "Xrotation", "Zrotation"),
                     end_site=np.array([0.0, 0.0, 4.0])),
        ])
    return BvhSkeleton([
        BvhJoint("pelvis", -1, np.array([0.0, 90.0, 0.0]), root),
        BvhJoint("thigh", 0, np.array([-9.0, 0.0, 0.0]), ("Xrotation", "Yrotation", "Zrotation")),
        BvhJoint("knee", 1, np.array([0.0, -40.0, 0.0]), ("Xrotation",), end_site=np.array([0.0, -40.0, 0.0])),
        BvhJoint("spine", 0, np.array([0.0, 20.0, 0.0]),
                 ("Xposition", "Yposition", "Zposition", "Yrotation", "Zrotation", "Xrotation"),
                 end_site=np.array([0.0, 30.0, 0.0])),
    ])


def _motion(skeleton: BvhSkeleton, n: int, fps: float, seed: int) -> np.ndarray:
    """Smooth periodic motion (a walk in a circle with swinging joints), sampled at ``fps``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fps
    out = np.zeros((n, skeleton.n_channels))
    for joint, sl in zip(skeleton.joints, skeleton.channel_slices()):
        for k, channel in enumerate(joint.channels):
            freq, phase, amp = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi), rng.uniform(5, 40)
            out[:, sl.start + k] = amp * np.sin(2 * np.pi * freq * t + phase)
            if channel.endswith("position"):
                out[:, sl.start + k] *= 0.05
    root = skeleton.joints[0]
    heading = 25.0 * t                               # turning steadily, degrees
    out[:, root.channels.index("Yrotation")] += heading
    out[:, root.channels.index("Xposition")] += 50 * np.sin(np.deg2rad(heading))
    out[:, root.channels.index("Zposition")] += 50 * np.cos(np.deg2rad(heading))
    out[:, root.channels.index("Yposition")] += 90
    return out


def _write_takes(folder, variant="a", fps_list=(60, 120, 60, 120, 60), seconds=1.5):
    folder.mkdir(parents=True, exist_ok=True)
    skeleton = _skeleton(variant)
    paths = []
    for i, fps in enumerate(fps_list):
        path = folder / f"take{i}.bvh"
        write_bvh(path, skeleton, _motion(skeleton, int(seconds * fps), fps, seed=i), 1.0 / fps)
        paths.append(path)
    return paths


def _aligned(positions: np.ndarray, root_position: np.ndarray, root_rotation: np.ndarray) -> np.ndarray:
    """World positions moved so that the first frame's root is at the ground origin, heading 0."""
    a = up_rotation(heading_angle(root_rotation, 1), 1)
    return (positions - root_position * np.array([1.0, 0.0, 1.0])) @ a


# ---------------------------------------------------------------------------- rotations
def test_rotation_representations_round_trip():
    rng = np.random.default_rng(0)
    r = euler_to_matrix(rng.uniform(-180, 180, (400, 3)), "ZXY")
    np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(r)), r, atol=1e-12)
    assert (matrix_to_quaternion(r)[:, 0] >= 0).all()
    v = matrix_to_expmap(r)
    assert np.linalg.norm(v, axis=-1).max() <= np.pi + 1e-12
    np.testing.assert_allclose(expmap_to_matrix(v), r, atol=1e-12)
    np.testing.assert_allclose(sixd_to_matrix(matrix_to_6d(r)), r, atol=1e-12)
    # any six numbers give a rotation
    m = sixd_to_matrix(rng.normal(size=(50, 6)))
    np.testing.assert_allclose(m @ np.swapaxes(m, -1, -2), np.broadcast_to(np.eye(3), m.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(m), 1.0, atol=1e-12)
    # a half turn, where the log map is least stable
    axis = rng.normal(size=(20, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    half_turn = expmap_to_matrix(np.pi * axis)
    np.testing.assert_allclose(expmap_to_matrix(matrix_to_expmap(half_turn)), half_turn, atol=1e-12)


def test_expmaps_stay_continuous_through_a_half_turn():
    angle = np.linspace(0, 3 * np.pi, 300)
    axis = np.array([0.6, 0.0, 0.8])
    v = continuous_expmap(matrix_to_expmap(expmap_to_matrix(angle[:, None] * axis)))
    assert np.abs(np.diff(v, axis=0)).max() < 0.05          # the raw log map jumps by ~2 pi at pi
    np.testing.assert_allclose(v, angle[:, None] * axis, atol=1e-9)


def test_slerp_is_the_constant_speed_rotation_between_its_ends():
    axis = np.array([0.0, 0.0, 1.0])
    q0 = matrix_to_quaternion(expmap_to_matrix(0.2 * axis))
    q1 = matrix_to_quaternion(expmap_to_matrix(1.4 * axis))
    for t in (0.0, 0.25, 0.5, 1.0):
        expected = expmap_to_matrix((0.2 + 1.2 * t) * axis)
        np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, q1, t)), expected, atol=1e-12)
    # the shorter arc even when the quaternions have opposite signs
    np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, -q1, 0.5)), expmap_to_matrix(0.8 * axis), atol=1e-12)


def test_resample_times_integer_step_and_fractional_positions():
    times, step = resample_times(10, 120.0048, 30)           # a 0.008333 s frame time is 4 frames
    assert step == 4 and times.tolist() == [0, 4, 8]
    times, step = resample_times(10, 60, 25)
    assert step is None and np.allclose(times, [0, 2.4, 4.8, 7.2])


# ---------------------------------------------------------------------------- body-frame features
def _random_pose(n=40, joints=4, seed=0):
    rng = np.random.default_rng(seed)
    p = np.cumsum(rng.normal(size=(n, 3)), 0)
    rot = expmap_to_matrix(np.cumsum(0.1 * rng.normal(size=(n, joints, 3)), 0))
    return p, rot


@pytest.mark.parametrize("rotation", ROTATIONS)
def test_body_features_round_trip_and_ignore_where_the_take_is(rotation):
    p, rot = _random_pose()
    f = body_features(p, rot, rotation=rotation)
    assert f.shape == (40, 4 + 4 * (3 if rotation == "expmap" else 6))
    q, back = pose_from_body_features(f, rotation=rotation)
    np.testing.assert_allclose(body_features(q, back, rotation=rotation), f, atol=1e-10)
    # the pose comes back up to where it stood and faced at the start
    np.testing.assert_allclose(q, _aligned(p, p[0], rot[0, 0]), atol=1e-10)
    np.testing.assert_allclose(back[:, 1:], rot[:, 1:], atol=1e-12)
    # turning the whole take about the vertical and moving it on the ground changes nothing
    g = up_rotation(2.1, 1)
    moved = np.concatenate([(g @ rot[:, 0])[:, None], rot[:, 1:]], 1)
    np.testing.assert_allclose(body_features(p @ g.T + np.array([7.0, 0.0, -3.0]), moved, rotation=rotation),
                               f, atol=1e-10)


def test_body_features_by_hand():
    # walking forward (+z) at 2 units per frame while turning 90 degrees per frame, height 5
    theta = np.deg2rad(90.0) * np.arange(3)
    rot = up_rotation(theta, 1)[:, None]
    p = np.array([[0.0, 5.0, 0.0], [0.0, 5.0, 2.0], [2.0, 5.0, 2.0]])   # each step along the previous heading
    f = body_features(p, rot, rotation="expmap")
    np.testing.assert_allclose(f[:, 0], 5.0)
    np.testing.assert_allclose(f[:, 1:3], [[0.0, 2.0]] * 3, atol=1e-12)   # (x, z) in the body frame
    np.testing.assert_allclose(f[:, 3], np.pi / 2)
    np.testing.assert_allclose(f[:, 4:], 0.0, atol=1e-12)                 # no tilt left at the root


# ---------------------------------------------------------------------------- BVH round trips
@pytest.mark.parametrize("variant", ["a", "b"])
@pytest.mark.parametrize("rotation", ROTATIONS)
def test_bvh_to_features_and_back(variant, rotation):
    skeleton = _skeleton(variant)
    motion = _motion(skeleton, 50, 30.0, seed=3)
    f = bvh_features(skeleton, motion, rotation=rotation)
    back = bvh_motion_from_features(skeleton, f, rotation=rotation)
    np.testing.assert_allclose(bvh_features(skeleton, back, rotation=rotation), f, atol=1e-9)
    # the same joint positions and rotations (Euler angles may differ by equivalent spellings)
    root_position, rotations, extra = bvh_pose(skeleton, motion)
    expected = _aligned(bvh_forward_kinematics(skeleton, motion), root_position[0], rotations[0, 0])
    np.testing.assert_allclose(bvh_forward_kinematics(skeleton, back), expected, atol=1e-9)
    _, rotations_back, extra_back = bvh_pose(skeleton, back)
    np.testing.assert_allclose(rotations_back[:, 1:], rotations[:, 1:], atol=1e-12)
    np.testing.assert_allclose(extra_back, extra, atol=1e-12)


def test_resampling_a_take_follows_its_motion():
    """Joints turning at constant speed about one of their axes (so the motion between two frames is
    a geodesic): the 40 fps features of a 60 fps take (a fractional step, slerp) equal those of the
    same motion sampled at 40 fps directly."""
    skeleton = _skeleton("a")

    def take(fps, seconds=1.0):
        t = np.arange(int(seconds * fps) + 1)[:, None] / fps
        values = np.zeros((t.shape[0], skeleton.n_channels))
        values[:, 1] = 90.0
        values[:, 2] = 30 * t[:, 0]                                  # walking along z
        values[:, 3:] = 20.0
        values[:, 4::3] += 70.0 * t                                  # each joint's middle angle grows steadily
        return values

    for rotation in ROTATIONS:
        direct = bvh_features(skeleton, take(40.0), rotation=rotation)
        resampled = bvh_features(skeleton, take(60.0), source_fps=60.0, fps=40.0, rotation=rotation)
        assert resampled.shape == direct.shape
        np.testing.assert_allclose(resampled, direct, atol=1e-6)


# ---------------------------------------------------------------------------- the loader
def test_loader_resamples_normalises_on_train_and_records_the_skeleton(tmp_path):
    _write_takes(tmp_path / "takes")
    data = load_dataset("bvh", data_dir=tmp_path / "takes")
    # the root's tilt has no turn about the vertical left: its exponential map's y (feature 5) is
    # always 0, so it is left out
    assert data.spec.kind == "real" and data.spec.dim == 4 + 5 * 3 - 1 and 5 not in data.meta["kept"]
    assert all(len(x) == 45 for split in data.splits.values() for x in split)   # 1.5 s at 30 fps
    train = torch.cat(data.splits["train"])
    assert torch.allclose(train.mean(0), torch.zeros(data.spec.dim), atol=1e-4)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(data.spec.dim), atol=1e-4)
    meta = data.meta
    assert meta["fps"] == 30 and meta["frame_time"] == pytest.approx(1 / 30)
    assert [j["name"] for j in meta["skeleton"]["joints"]] == ["hips", "chest", "head", "leg", "foot"]
    assert sorted(sum(meta["files"].values(), [])) == [f"take{i}.bvh" for i in range(5)]
    assert all(meta["files"][s] for s in ("train", "valid", "test"))
    # another folder scored with the run's normalisation
    other = load_dataset("bvh", data_dir=tmp_path / "takes", run_meta=meta)
    assert other.meta["mean"] == meta["mean"]
    six = load_dataset("bvh", data_dir=tmp_path / "takes", rotation="6d", fps=20)
    assert six.spec.dim == 4 + 5 * 6 and len(six.splits["test"][0]) == 30      # no 6-D entry is always 0


def test_a_joint_that_never_moves_is_left_out_and_restored(tmp_path):
    from probseq.data.sets.bvh import bvh_motion_from_sample

    skeleton = _skeleton("a")
    head = skeleton.channel_slices()[2]
    (tmp_path / "still").mkdir()
    for i in range(3):
        motion = _motion(skeleton, 40, 30.0, seed=i)
        motion[:, head] = [10.0, 20.0, 30.0]                     # the head never moves
        write_bvh(tmp_path / "still" / f"t{i}.bvh", skeleton, motion, 1 / 30)
    data = load_dataset("bvh", data_dir=tmp_path / "still")
    assert data.spec.dim == 19 - 3 - 1 and len(data.meta["kept"]) == 15      # the head, the root's y
    back = bvh_motion_from_sample(data.splits["train"][0], data.meta)
    np.testing.assert_allclose(back[:, head], np.broadcast_to([10.0, 20.0, 30.0], (40, 3)), atol=1e-6)


def test_one_take_is_cut_into_contiguous_splits(tmp_path):
    _write_takes(tmp_path / "one", fps_list=(30,), seconds=4)
    data = load_dataset("bvh", data_dir=tmp_path / "one")
    assert [len(data.splits[s][0]) for s in ("train", "valid", "test")] == [96, 12, 12]
    assert data.meta["split_rule"] == "contiguous 80/10/10 of each take"


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()     # warnings for skipped takes may come first
    assert lines[-1].startswith("probseq: error: ") and not any("Traceback" in line for line in lines)
    return lines[-1]


def test_bad_takes_give_one_sentence_naming_the_file(tmp_path, capsys):
    fit = ["fit", "rtrbm", "--data", "bvh", "--steps", "1", "--quiet"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no BVH files" in _error(fit + ["--data-dir", str(empty), "--out", str(tmp_path / "r0")], capsys)

    paths = _write_takes(tmp_path / "mixed", fps_list=(30, 30, 30))
    _write_takes(tmp_path / "other", variant="b", fps_list=(30,))
    (tmp_path / "other" / "take0.bvh").rename(tmp_path / "mixed" / "stranger.bvh")
    err = _error(fit + ["--data-dir", str(tmp_path / "mixed"), "--out", str(tmp_path / "r1")], capsys)
    assert "different skeleton" in err and ("stranger.bvh" in err or "take" in err) and len(err.splitlines()) == 1
    (tmp_path / "mixed" / "stranger.bvh").unlink()

    # a take whose motion lines do not match its hierarchy's channels: skipped with a warning ...
    text = paths[0].read_text().splitlines()
    head = text.index("MOTION")
    bad = tmp_path / "mixed" / "bad.bvh"
    bad.write_text("\n".join(text[:head + 3] + [" ".join(line.split()[:-1]) for line in text[head + 3:]]) + "\n")
    assert len(load_dataset("bvh", data_dir=tmp_path / "mixed").splits["train"]) >= 1
    warning = capsys.readouterr().err
    assert "skipped" in warning and str(bad) in warning and "channels" in warning
    # ... and the only take: one sentence naming it
    alone = tmp_path / "alone"
    alone.mkdir()
    bad.rename(alone / "bad.bvh")
    err = _error(fit + ["--data-dir", str(alone), "--out", str(tmp_path / "r3")], capsys)
    assert "bad.bvh" in err and "channels" in err

    zero = tmp_path / "mixed" / "zero.bvh"
    zero.write_text("\n".join(text[:head] + ["MOTION", "Frames: 0", text[head + 2]]) + "\n")
    err = _error(fit + ["--data-dir", str(tmp_path / "mixed"), "--out", str(tmp_path / "r4")], capsys)
    assert "zero.bvh has no frames" in err
    zero.write_text("\n".join(text[:head + 3] + [text[head + 3].replace(text[head + 3].split()[4], "nan", 1)]
                              + text[head + 4:]) + "\n")
    err = _error(fit + ["--data-dir", str(tmp_path / "mixed"), "--out", str(tmp_path / "r5")], capsys)
    assert "zero.bvh holds NaN" in err
    zero.unlink()
    assert "rotation must be" in _error(fit + ["--data-dir", str(tmp_path / "mixed"), "--set", "rotation=quat",
                                               "--out", str(tmp_path / "r6")], capsys)
    assert not (tmp_path / "r6").exists() and not (tmp_path / "r4").exists()


def test_fit_evaluate_sample_and_prime_from_the_command_line(tmp_path, capsys):
    import bvh as bvh_package

    _write_takes(tmp_path / "takes", fps_list=(60, 120, 60, 120))
    run = tmp_path / "run"
    assert main(["fit", "rtrbm", "--data", "bvh", "--data-dir", str(tmp_path / "takes"), "--steps", "2",
                 "--set", "hidden=8", "--out", str(run), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--metric", "mse", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["dataset"] == "bvh" and result["next_frame_mse_per_dim"] > 0
    assert result["baseline_copy_last_mse_per_dim"] > 0 and result["baseline_linear_mse_per_dim"] > 0
    assert result["ar_start_mse_per_dim"] > 0 and "ridge" in result["ar_start_choice"]   # the untrained start

    out = tmp_path / "walk.bvh"
    assert main(["sample", str(run), "-n", "1", "--length", "40", "--out", str(out)]) == 0
    parsed = bvh_package.Bvh(out.read_text())
    assert parsed.nframes == 40 and parsed.frame_time == pytest.approx(1 / 30, rel=1e-6)
    assert parsed.get_joints_names() == ["hips", "chest", "head", "leg", "foot"]
    assert parsed.joint_channels("leg") == ["Yrotation", "Xrotation", "Zrotation"]
    skeleton, values, _ = read_bvh(out)
    assert np.isfinite(values).all() and values.shape == (40, 3 + 5 * 3)

    assert main(["sample", str(run), "-n", "1", "--length", "50", "--prime", str(out),
                 "--out", str(tmp_path / "more.bvh")]) == 0
    _, continued, _ = read_bvh(tmp_path / "more.bvh")
    assert continued.shape[0] == 50
    # the continuation keeps its prime (written from features, so it starts at the origin, heading 0)
    np.testing.assert_allclose(bvh_forward_kinematics(skeleton, continued[:40]),
                               bvh_forward_kinematics(skeleton, values), atol=0.05)
    assert main(["sample", str(run), "-n", "1", "--length", "3", "--out", str(tmp_path / "walk.gif")]) == 0
    assert (tmp_path / "walk.gif").stat().st_size > 0
    _write_takes(tmp_path / "stranger", variant="b", fps_list=(30,))
    err = _error(["sample", str(run), "-n", "1", "--length", "60", "--prime",
                  str(tmp_path / "stranger" / "take0.bvh"), "--out", str(tmp_path / "x.bvh")], capsys)
    assert "different skeleton" in err


def test_prime_reader_rejects_a_take_of_another_skeleton(tmp_path):
    from probseq.data.sets.bvh import read_bvh_prime

    paths = _write_takes(tmp_path / "takes", fps_list=(30, 30, 30))
    meta = load_dataset("bvh", data_dir=tmp_path / "takes").meta
    prime = read_bvh_prime(paths[0], meta)
    assert prime.shape == (45, 18) and prime.dtype == torch.float32
    other = _write_takes(tmp_path / "b", variant="b", fps_list=(30,))[0]
    with pytest.raises(UserError, match="different skeleton"):
        read_bvh_prime(other, meta)


# ---------------------------------------------------------------------------- cmu with the same features
def test_cmu_body_features_are_the_bvh_features_and_invert(tmp_path):
    from probseq.data.batch import Batch
    from probseq.data.sets.mocap import cmu_motion_from_features, motion_positions
    from probseq.io.amc import forward_kinematics, local_rotations, read_amc, read_asf
    from probseq.io.media import read_prime, write_samples
    from probseq.testing.synthetic_mocap import write_synthetic_subject

    paths = write_synthetic_subject(tmp_path / "subject", n_files=3, frames=48)
    channels = load_dataset("cmu", data_dir=tmp_path / "subject")
    body = load_dataset("cmu", data_dir=tmp_path / "subject", features="body")
    assert channels.meta.get("features") == "channels" and body.meta["features"] == "body"
    test = body.split("test")[0]
    assert body.spec.dim == test.shape[1] != channels.spec.dim
    # the inverse gives AMC values whose kinematics are the take's, up to where it stood and faced
    skeleton = read_asf(tmp_path / "subject" / "synth.asf")
    original = read_amc(paths[-1], skeleton)
    original.values = original.values[::4]
    expected, _, _ = forward_kinematics(skeleton, original)
    aligned = _aligned(expected, expected[0, 0], local_rotations(skeleton, original)["root"][0])
    positions, _, _ = motion_positions(test, body.meta)
    np.testing.assert_allclose(positions, aligned, atol=1e-3)
    assert cmu_motion_from_features(test, body.meta).values.shape == original.values.shape
    # written as BVH and read back as a prime: the same features
    out = write_samples(Batch.from_sequences([test]), tmp_path / "s.bvh", body.meta)[0]
    torch.testing.assert_close(read_prime(out, body.meta)[1:], test[1:], atol=5e-3, rtol=0)
    with pytest.raises(UserError, match="features must be"):
        load_dataset("cmu", data_dir=tmp_path / "subject", features="quaternions")
