"""The ``video`` dataset (GIF/MP4 files and PNG frame folders) and ``moving-mnist`` (from a tiny
fake MNIST file): reading, resizing, resampling in time, splits, bad input, fit and sample."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch
from PIL import Image

from probseq.cli import main
from probseq.data.registry import load_dataset
from probseq.data.sets.moving_mnist import moving_mnist_video, read_idx_images
from probseq.data.sets.video import parse_frame_size, resample_frames
from probseq.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _own_data_home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path / "home"))


# ---------------------------------------------------------------------------- videos to test with
def _square_frames(n: int, size=(40, 40), start=0) -> list[Image.Image]:
    """A white 8x8 square moving right by 3 pixels a frame on black, as RGB images."""
    frames = []
    for t in range(n):
        a = np.zeros(size, np.uint8)
        x = (3 * t + start) % (size[1] - 8)
        a[10:18, x:x + 8] = 255
        frames.append(Image.fromarray(a).convert("RGB"))
    return frames


def _gif(path, frames, duration=100):
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return path


def _video_folder(root, n_gifs=3, n_frames=24):
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n_gifs):
        _gif(root / f"clip{i}.gif", _square_frames(n_frames, start=5 * i))
    (root / "shots" / "take").mkdir(parents=True)
    for t, image in enumerate(_square_frames(n_frames, start=2)):
        image.save(root / "shots" / "take" / f"frame{t}.png")
    return root


# ---------------------------------------------------------------------------- pieces
def test_frame_size_option():
    assert parse_frame_size(32) == (32, 32) and parse_frame_size("24x32") == (24, 32)
    with pytest.raises(UserError, match="size must be"):
        parse_frame_size("big")


def test_resampling_shows_the_frame_on_screen_at_each_time():
    frames = np.arange(3)[:, None]
    starts = np.array([0.0, 0.1, 0.4])                     # durations 100, 300, 100 ms
    assert resample_frames(frames, starts, 0.5, 10.0)[:, 0].tolist() == [0, 1, 1, 1, 2]
    assert resample_frames(frames, starts, 0.5, 5.0)[:, 0].tolist() == [0, 1, 2]
    twelve = np.arange(12)[:, None]
    assert resample_frames(twelve, np.arange(12) / 30.0, 12 / 30.0, 10.0)[:, 0].tolist() == [0, 3, 6, 9]


def test_video_folder_reads_gifs_and_frame_folders(tmp_path):
    root = _video_folder(tmp_path / "videos")
    data = load_dataset("video", data_dir=root, size="16x20")
    assert data.spec.kind == "binary" and data.spec.dim == 320
    assert data.meta["frame_shape"] == [16, 20] and data.meta["fps"] == 10.0
    names = sorted(sum(data.meta["files"].values(), []))
    assert names == ["clip0.gif", "clip1.gif", "clip2.gif", "shots/take/"]
    assert all(x.shape == (24, 320) for s in data.splits.values() for x in s)
    x = torch.cat([v for s in data.splits.values() for v in s])
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0 and 0.03 < float(x.mean()) < 0.05   # an 8x8 square in 40x40
    # the square is where it was drawn: rows 10-17 of 40 -> about rows 4-7 of 16
    frame = data.splits["train"][0][0].reshape(16, 20)
    assert frame[:3].max() < 0.05 and frame[4:7].max() > 0.9
    half = load_dataset("video", data_dir=root, size=16, fps=5, binarise=True)
    assert all(x.shape == (12, 256) for s in half.splits.values() for x in s)
    assert set(torch.cat(half.splits["train"]).unique().tolist()) <= {0.0, 1.0}
    # another folder in the run's own frame rate
    assert load_dataset("video", data_dir=root, run_meta=half.meta).meta["fps"] == 5.0


def test_one_video_is_split_in_time(tmp_path):
    (tmp_path / "one").mkdir()
    _gif(tmp_path / "one" / "long.gif", _square_frames(40), duration=50)
    data = load_dataset("video", data_dir=tmp_path / "one", size=8)
    assert data.meta["fps"] == 20.0
    assert [len(data.splits[s][0]) for s in ("train", "valid", "test")] == [32, 4, 4]


def test_mp4_is_read_at_its_frame_rate(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v3 as iio

    (tmp_path / "mp4").mkdir()
    frames = np.stack([np.asarray(f.convert("L")) for f in _square_frames(24, size=(32, 48))])
    iio.imwrite(tmp_path / "mp4" / "a.mp4", frames, plugin="FFMPEG", fps=24)
    data = load_dataset("video", data_dir=tmp_path / "mp4", size=8, fps=12)
    assert data.meta["fps"] == 12 and sum(len(x) for s in data.splits.values() for x in s) == 12


def _error(argv, capsys) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("probseq: error: ") and not any("Traceback" in line for line in lines)
    return lines[-1]


def test_bad_videos_give_one_sentence_naming_the_file(tmp_path, capsys):
    fit = ["fit", "rtrbm", "--data", "video", "--steps", "1", "--quiet", "--set", "size=8"]
    (tmp_path / "empty").mkdir()
    assert "holds no videos" in _error(fit + ["--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "r0")],
                                       capsys)
    ragged = tmp_path / "ragged" / "take"
    ragged.mkdir(parents=True)
    for t, image in enumerate(_square_frames(12)):
        (image.resize((30, 40)) if t == 7 else image).save(ragged / f"f{t:02d}.png")
    err = _error(fit + ["--data-dir", str(tmp_path / "ragged"), "--out", str(tmp_path / "r1")], capsys)
    assert "f07.png is 30x40 pixels" in err and "f00.png" in err and str(ragged) in err
    still = tmp_path / "still" / "take"
    still.mkdir(parents=True)
    _square_frames(1)[0].save(still / "only.png")
    assert "fewer than 2 frames" in _error(fit + ["--data-dir", str(tmp_path / "still"), "--out",
                                                  str(tmp_path / "r2")], capsys)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "bad.gif").write_bytes(b"GIF89a not really")
    err = _error(fit + ["--data-dir", str(broken), "--out", str(tmp_path / "r3")], capsys)
    assert "bad.gif" in err and "not a readable video" in err
    assert "size must be" in _error(fit[:-1] + ["size=huge", "--data-dir", str(tmp_path / "ragged"),
                                                 "--out", str(tmp_path / "r4")], capsys)
    assert not any((tmp_path / f"r{k}").exists() for k in range(5))


def test_fit_evaluate_and_sample_a_video_folder(tmp_path, capsys):
    root = _video_folder(tmp_path / "videos", n_frames=12)
    run = tmp_path / "run"
    assert main(["fit", "rtrbm", "--data", "video", "--data-dir", str(root), "--set", "size=16",
                 "--set", "hidden=8", "--steps", "2", "--out", str(run), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--metric", "mse", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["dataset"] == "video" and "baseline_copy_last_mse_per_dim" in result
    out = tmp_path / "s.gif"
    assert main(["sample", str(run), "-n", "2", "--length", "6", "--out", str(out)]) == 0
    with Image.open(out) as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 100
    if pytest.importorskip("imageio_ffmpeg"):
        assert main(["sample", str(run), "-n", "1", "--length", "4", "--out", str(tmp_path / "s.mp4")]) == 0
        assert (tmp_path / "s.mp4").stat().st_size > 0


# ---------------------------------------------------------------------------- moving MNIST
def _idx(path, images: np.ndarray):
    header = b"\x00\x00\x08\x03" + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())
    return path


def _fake_mnist(folder):
    """12 training digits (the first 10 of brightness 50, the last 2 of 150) and 3 test digits of 250."""
    folder.mkdir(parents=True, exist_ok=True)
    train = np.zeros((12, 28, 28), np.uint8)
    train[:, 6:22, 10:18] = 50
    train[10:, 6:22, 10:18] = 150
    test = np.zeros((3, 28, 28), np.uint8)
    test[:, 6:22, 10:18] = 250
    _idx(folder / "train-images-idx3-ubyte.gz", train)
    _idx(folder / "t10k-images-idx3-ubyte.gz", test)
    return folder


def test_idx_reader_and_its_errors(tmp_path):
    images = np.arange(2 * 28 * 28).reshape(2, 28, 28) % 256
    np.testing.assert_array_equal(read_idx_images(_idx(tmp_path / "a.gz", images)), images)
    (tmp_path / "b").write_bytes(b"\x00\x00\x08\x01" + bytes(20))
    with pytest.raises(UserError, match="not an IDX file of images"):
        read_idx_images(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2 + bytes(10))
    with pytest.raises(UserError, match="header promises 5 images"):
        read_idx_images(tmp_path / "c")


def test_a_digit_bounces_and_stays_whole_inside_the_frame():
    digit = np.zeros((1, 28, 28), np.uint8)
    digit[0, 4:24, 8:20] = 255
    rng = np.random.default_rng(3)
    video = moving_mnist_video(digit, rng, frames=200, size=40, n_digits=1)
    np.testing.assert_allclose(video.sum((1, 2)), 20 * 12)            # never cut off by an edge
    rows = np.array([np.nonzero(f.any(1))[0][0] for f in video])
    cols = np.array([np.nonzero(f.any(0))[0][0] for f in video])
    assert rows.min() == 4 and rows.max() == 12 + 4 and cols.min() == 8 and cols.max() == 12 + 8
    steps = np.hypot(np.diff(rows), np.diff(cols))
    assert steps.max() <= 5 + 1.5                                      # speed in [2, 5], rounding


def test_moving_mnist_is_deterministic_and_keeps_the_digit_splits_apart(tmp_path):
    folder = _fake_mnist(tmp_path / "mnist")
    opts = dict(data_dir=folder, n_train=4, n_valid=2, n_test=2, frames=6, size=36)
    data = load_dataset("moving-mnist", **opts)
    assert data.spec.dim == 36 * 36 and data.meta["frame_shape"] == [36, 36]
    assert all(x.shape == (6, 36 * 36) for s in data.splits.values() for x in s)
    top = {s: max(float(x.max()) for x in data.splits[s]) for s in data.splits}
    assert top == pytest.approx({"train": 50 / 255, "valid": 150 / 255, "test": 250 / 255}, abs=1e-6)
    again = load_dataset("moving-mnist", **{**opts, "n_train": 6})
    for a, b in zip(data.splits["train"], again.splits["train"]):
        assert torch.equal(a, b)
    assert torch.equal(data.splits["test"][1], again.splits["test"][1])
    fresh = data.fresh(3, 7)
    assert len(fresh) == 3 and not any(torch.equal(fresh[0], x) for x in data.splits["train"])
    binary = load_dataset("moving-mnist", **{**opts, "binarise": True})
    assert set(torch.cat(binary.splits["valid"]).unique().tolist()) == {0.0, 1.0}


def test_moving_mnist_from_the_command_line(tmp_path, capsys):
    folder = _fake_mnist(tmp_path / "mnist")
    run = tmp_path / "run"
    assert main(["fit", "rtrbm", "--data", "moving-mnist", "--data-dir", str(folder), "--set", "size=32",
                 "--set", "frames=5", "--set", "n_train=4", "--set", "n_valid=2", "--set", "n_test=2",
                 "--set", "hidden=8", "--steps", "2", "--out", str(run), "--quiet", "--threads", "1"]) == 0
    assert main(["sample", str(run), "-n", "1", "--length", "5", "--out", str(tmp_path / "m.gif")]) == 0
    assert (tmp_path / "m.gif").stat().st_size > 0
    capsys.readouterr()
    err = _error(["fit", "rtrbm", "--data", "moving-mnist", "--data-dir", str(tmp_path / "nowhere"),
                  "--steps", "1", "--out", str(tmp_path / "r")], capsys)
    assert "no such file or directory" in err or "probseq download mnist" in err
    (tmp_path / "half").mkdir()
    _idx(tmp_path / "half" / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28)))
    err = _error(["fit", "rtrbm", "--data", "moving-mnist", "--data-dir", str(tmp_path / "half"),
                  "--steps", "1", "--out", str(tmp_path / "r")], capsys)
    assert "t10k-images-idx3-ubyte" in err and "probseq download mnist" in err


def test_mp4_without_imageio_ffmpeg_is_one_sentence(tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "imageio_ffmpeg" else real(name, *a))
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"\x00" * 64)
    err = _error(["fit", "rtrbm", "--data", "video", "--data-dir", str(tmp_path / "clips"), "--steps", "1",
                  "--out", str(tmp_path / "r")], capsys)
    assert "a.mp4 needs imageio-ffmpeg (pip install imageio-ffmpeg)" in err and "GIF" in err
