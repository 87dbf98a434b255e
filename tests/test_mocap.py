"""Motion capture datasets (mocap-mit, cmu): representation, splits, inverse transforms, media, CLI."""

from __future__ import annotations

import json
import numpy as np
import pytest
import torch

from probseq.cli import main
from probseq.io.amc import read_amc, read_asf
from probseq.data.batch import Batch
from probseq.io.bvh import read_bvh
from probseq.io.media import read_prime, write_samples
from probseq.data.registry import load_dataset
from probseq.data.sets.mocap import (MIT_COLUMNS, cmu_features_from_motion, cmu_motion_from_features,
                                     mit_frames_from_features, mit_positions, mit_to_bvh)
from probseq.io.bvh import bvh_forward_kinematics
from probseq.errors import UserError
from probseq.testing.synthetic_mocap import write_synthetic_subject


# ---------------------------------------------------------------------------- mocap-mit
@pytest.fixture(scope="module")
def mit():
    from probseq.data.home import data_home

    path = data_home() / "mocap" / "motion.mat"
    if not path.is_file():
        pytest.skip(f"needs {path} in the data home (PROBSEQ_DATA), which is absent")
    import scipy.io

    raw = [np.asarray(s, dtype=np.float64) for s in scipy.io.loadmat(str(path))["Motion"].flat]
    return load_dataset("mocap-mit", data_file=path), raw


def test_mit_is_taylors_49_columns_z_scored_on_train(mit):
    data, raw = mit
    assert data.spec.kind == "real" and data.spec.dim == 49 == len(MIT_COLUMNS)
    assert MIT_COLUMNS[:10].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 13]
    train = torch.cat(data.split("train"))
    assert train.shape[0] == sum(round(0.8 * s.shape[0]) for s in raw)      # 350 + 208 + 2502
    torch.testing.assert_close(train.mean(0), torch.zeros(49), atol=1e-4, rtol=0)
    torch.testing.assert_close(train.std(0, unbiased=False), torch.ones(49), atol=1e-4, rtol=0)
    assert [len(s) for s in data.split("test")] == [44, 26, 313]
    assert max(len(s) for s in data.split("train")) == 100                   # train_chunk windows
    json.dumps(data.meta)                                                    # run.json must hold it


def test_mit_splits_are_contiguous_and_disjoint(mit):
    data, raw = mit
    full = [mit_frames_from_features(torch.cat([s for s in data.split(name)]), data.meta)
            for name in ("valid", "test")]
    valid_first = raw[0][round(0.8 * 438):round(0.9 * 438)]
    np.testing.assert_allclose(full[0][:len(valid_first)], valid_first, atol=1e-4)
    test_last = raw[2][round(0.9 * 3128):]
    np.testing.assert_allclose(full[1][-len(test_last):], test_last, atol=1e-3)


def test_mit_inverse_transform_restores_all_108_channels(mit):
    data, raw = mit
    back = mit_frames_from_features(data.split("test")[2], data.meta)
    np.testing.assert_allclose(back, raw[2][round(0.9 * 3128):], rtol=0, atol=2e-3)


def test_mit_bvh_has_the_same_kinematics_as_the_data(mit, tmp_path):
    data, raw = mit
    frames = raw[0][:20]
    skel, values = mit_to_bvh(frames, data.meta["parents"])
    assert len(skel.joints) == 18 and values.shape == (20, 6 + 17 * 3)
    bvh_pos = bvh_forward_kinematics(skel, values)
    z_up = mit_positions(frames, data.meta["parents"])
    np.testing.assert_allclose(bvh_pos, z_up[..., [1, 2, 0]], atol=1e-8)   # (x, y, z) -> (y, z, x)
    assert (bvh_pos[:, :, 1].max() - bvh_pos[:, :, 1].min()) > 1000         # a body about 1.5 m tall, y up


# ---------------------------------------------------------------------------- cmu
def test_cmu_subject_35_features_and_inverse(shared_data):
    data = load_dataset("cmu", data_dir=shared_data / "mocap")
    assert data.spec.kind == "real" and data.spec.dim == 62
    assert [len(s) for s in data.split("valid") + data.split("test")] == [9, 9]   # 90 frames at 30 fps
    skeleton = read_asf(shared_data / "mocap" / "35.asf")
    motion = read_amc(shared_data / "mocap" / "35_01.amc", skeleton)
    test = cmu_motion_from_features(data.split("test")[0], data.meta)
    original = motion.values[::4][81:]
    x, z = motion.channels.index(("root", "tx")), motion.channels.index(("root", "tz"))
    np.testing.assert_allclose(np.delete(test.values, [x, z], 1), np.delete(original, [x, z], 1), atol=1e-3)
    # ground-plane position is integrated from the origin: the path matches up to its start
    np.testing.assert_allclose(test.values[:, [x, z]], original[:, [x, z]] - original[0, [x, z]], atol=1e-3)
    json.dumps(data.meta)


def test_cmu_features_are_velocities_and_unwrapped_angles():
    from probseq.io.amc import AmcMotion

    channels = [("root", "tx"), ("root", "ty"), ("root", "tz"), ("root", "ry"), ("knee", "rx")]
    values = np.array([[0.0, 5, 0, 170, 1], [1, 5, 2, 179, 2], [3, 5, 4, -175, 3]])
    feats = cmu_features_from_motion(AmcMotion(channels, values))
    np.testing.assert_allclose(feats[:, 0], [1, 1, 2])                    # dx, first copies the second
    np.testing.assert_allclose(feats[:, 2], [2, 2, 2])
    np.testing.assert_allclose(feats[:, 3], [170, 179, 185])               # no jump at +-180
    meta = {"mean": [0.0] * 5, "std": [1.0] * 5, "velocity_channels": [0, 2],
            "channels": [list(c) for c in channels]}
    back = cmu_motion_from_features(feats, meta)
    np.testing.assert_allclose(back.values[:, 0], [0, 1, 3])


def test_cmu_reads_a_subject_it_has_never_seen(tmp_path):
    write_synthetic_subject(tmp_path, n_files=4, frames=40)
    (tmp_path / "notes.txt").write_text("ignored")
    data = load_dataset("cmu", data_dir=tmp_path)
    assert data.spec.dim == 6 + 1 + 3 + 1 + 2 + 2 + 3                       # the synthetic dof
    assert len(data.split("train")) == 2 and len(data.split("test")) == 1  # whole files: last is test
    assert data.meta["files"][-1] == "synth_04.amc" and all(len(s) == 10 for s in data.split("test"))


def test_cmu_errors_are_clear(tmp_path):
    with pytest.raises(UserError, match="no .amc files"):
        load_dataset("cmu", data_dir=tmp_path)
    write_synthetic_subject(tmp_path, n_files=1, frames=40)
    (tmp_path / "synth.asf").unlink()
    with pytest.raises(UserError, match="no .asf skeleton"):
        load_dataset("cmu", data_dir=tmp_path)
    write_synthetic_subject(tmp_path, n_files=1, frames=40)
    (tmp_path / "other.asf").write_text((tmp_path / "synth.asf").read_text())
    (tmp_path / "zz_01.amc").write_text("1\nneck 0.1\n")
    with pytest.raises(UserError, match="expected zz.asf"):
        load_dataset("cmu", data_dir=tmp_path)
    with pytest.raises(UserError, match="must divide"):
        load_dataset("cmu", data_dir=tmp_path, fps=7)
    with pytest.raises(UserError, match="--data-dir"):
        load_dataset("cmu", data_file=tmp_path / "synth_01.amc")


def test_mocap_mit_rejects_a_file_that_is_not_motion_mat(tmp_path):
    bad = tmp_path / "motion.mat"
    bad.write_text("not matlab")
    with pytest.raises(UserError, match="not a readable MATLAB file"):
        load_dataset("mocap-mit", data_file=bad)


# ---------------------------------------------------------------------------- media
@pytest.fixture
def synthetic(tmp_path):
    write_synthetic_subject(tmp_path / "subject", n_files=3, frames=48)
    return load_dataset("cmu", data_dir=tmp_path / "subject")


def test_bvh_writer_and_prime_reader_round_trip(synthetic, tmp_path):
    test = synthetic.split("test")[0]
    paths = write_samples(Batch.from_sequences([test, test[:5]]), tmp_path / "s.bvh", synthetic.meta)
    assert [p.name for p in paths] == ["s_1.bvh", "s_2.bvh"]
    skel, values, frame_time = read_bvh(paths[0])
    assert values.shape == (12, skel.n_channels) and abs(frame_time - 1 / 30) < 1e-6
    prime = read_prime(paths[0], synthetic.meta)
    # frame 0's velocity is a copy of frame 1's; BVH keeps 6 decimals, and the root velocities'
    # small standard deviation magnifies that rounding in the normalised features
    torch.testing.assert_close(prime[1:], test[1:], atol=2e-3, rtol=0)


def test_stick_figure_gif_for_motion_pixels_stay_with_video(synthetic, tmp_path):
    from PIL import Image

    samples = Batch.from_sequences([synthetic.split("test")[0][:4], synthetic.split("valid")[0][:3]])
    [path] = write_samples(samples, tmp_path / "s.gif", synthetic.meta)
    with Image.open(path) as gif:
        assert gif.n_frames == 4
    with pytest.raises(UserError, match="piano-roll"):
        write_samples(samples, tmp_path / "s.mid", synthetic.meta)


@pytest.mark.slow
def test_cli_fit_sample_bvh_and_gif(synthetic, tmp_path, capsys):
    data_dir = tmp_path / "subject"
    run = tmp_path / "run"
    assert main(["fit", "trbm", "--data", "cmu", "--data-dir", str(data_dir), "--steps", "3",
                 "--set", "hidden=6", "--set", "sample_steps=3", "--out", str(run), "--quiet"]) == 0
    assert main(["evaluate", str(run), "--metric", "mse", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["next_frame_mse_per_dim"] > 0 and result["baseline_copy_last_mse_per_dim"] > 0
    assert main(["sample", str(run), "-n", "2", "--length", "8", "--out", str(tmp_path / "s.bvh")]) == 0
    for k in (1, 2):
        skel, values, _ = read_bvh(tmp_path / f"s_{k}.bvh")
        assert values.shape == (8, skel.n_channels) and len(skel.joints) == 8
    assert main(["sample", str(run), "-n", "1", "--length", "12", "--prime", str(tmp_path / "s_1.bvh"),
                 "--out", str(tmp_path / "c.bvh")]) == 0
    _, primed, _ = read_bvh(tmp_path / "c.bvh")
    _, prime, _ = read_bvh(tmp_path / "s_1.bvh")
    assert primed.shape[0] == 12
    np.testing.assert_allclose(primed[:8], prime, atol=1e-3)              # the continuation keeps its prime
    assert main(["sample", str(run), "-n", "1", "--length", "3", "--out", str(tmp_path / "s.gif")]) == 0


@pytest.mark.slow
def test_benchmark_script_runs_with_tiny_arguments(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "mocap_mit.py"
    spec = importlib.util.spec_from_file_location("mocap_mit", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        args = module.parse_args(["--steps", "2", "--hidden", "4", "--pretrain-steps", "1",
                                  "--cd-steps", "1", "--cd-steps-late", "1", "--out", str(tmp_path)])
        result = module.main(args)
    except UserError as exc:  # pragma: no cover - only without the shared data
        pytest.skip(str(exc))
    assert set(result["models"]) == {"trbm", "rtrbm"} and result["copy_last_test_mse_per_dim"] > 0
    assert result["models"]["trbm"]["denoise"]["noisy_mse_per_dim"] > 0
    assert (tmp_path / "trbm" / "run.json").is_file()
