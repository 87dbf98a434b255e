"""The ``fsdd`` dataset: the split by take, the digit strings, errors; on synthetic and real files."""

from __future__ import annotations

import wave
from collections import Counter

import numpy as np
import pytest

from probseq.data.registry import dataset_infos, load_dataset
from probseq.data.sets.fsdd import SAMPLE_RATE, split_of_take
from probseq.errors import UserError


def write_fake_fsdd(folder, speakers=("ann", "bob"), takes=range(0, 12), digits=range(10), rate=8000):
    """Tiny FSDD-like folder: each recording a short tone whose pitch encodes the digit."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for spk in speakers:
        for d in digits:
            for take in takes:
                n = int(rng.integers(1200, 2400)) * rate // 8000
                t = np.arange(n) / rate
                x = 0.5 * np.sin(2 * np.pi * (300 + 250 * d) * t) + 0.01 * rng.standard_normal(n)
                with wave.open(str(folder / f"{d}_{spk}_{take}.wav"), "wb") as w:
                    w.setnchannels(1)
                    w.setsampwidth(2)
                    w.setframerate(rate)
                    w.writeframes((x * 20000).astype("<i2").tobytes())
    return folder


def test_registered_with_a_directory():
    info = {d.name: d for d in dataset_infos()}["fsdd"]
    assert info.needs == "dir"


def test_split_by_take_and_digit_strings(tmp_path):
    folder = write_fake_fsdd(tmp_path / "rec")
    (folder / "README.txt").write_text("ignored")
    (folder / "notes.wav").write_bytes(b"ignored: the name does not match")
    ds = load_dataset("fsdd", data_dir=folder, train_passes=3, valid_passes=2, test_passes=1, max_digits=4)
    assert ds.spec.kind == "categorical" and ds.spec.dim == 10
    assert ds.meta["recordings"] == {"train": 2 * 10 * 2, "valid": 2 * 10 * 5, "test": 2 * 10 * 5}
    assert [split_of_take(t) for t in (0, 4, 5, 9, 10, 49)] == ["test"] * 2 + ["valid"] * 2 + ["train"] * 2
    uses = {}
    for name, passes in (("train", 3), ("valid", 2), ("test", 1)):
        clips = Counter()
        for ex in ds.split(name):
            assert 1 <= len(ex) <= 4 and len(ex.pauses) == len(ex.clips) + 1
            assert ex.audio.shape == (sum(c.size for c in ex.clips) + sum(ex.pauses),)
            assert ex.audio.dtype == np.float32
            clips.update(id(c) for c in ex.clips)
        assert set(clips.values()) == {passes}          # every recording used `passes` times
        uses[name] = set(clips)
    assert not (uses["train"] & uses["valid"]) and not (uses["train"] & uses["test"]) \
        and not (uses["valid"] & uses["test"])
    # deterministic, and the test strings do not depend on how the training set is built
    again = load_dataset("fsdd", data_dir=folder, train_passes=1, valid_passes=2, test_passes=1, max_digits=4)
    assert [e.text for e in again.split("test")] == [e.text for e in ds.split("test")]
    first, second = ds.split("test")[0], again.split("test")[0]
    assert np.array_equal(first.audio, second.audio)
    other_seed = load_dataset("fsdd", data_dir=folder, seed=1, train_passes=1, valid_passes=1, test_passes=1,
                              max_digits=4)
    assert [e.text for e in other_seed.split("test")] != [e.text for e in ds.split("test")]


def test_speaker_filter_and_resampling(tmp_path):
    folder = write_fake_fsdd(tmp_path / "rec16", speakers=("ann", "cy"), takes=range(0, 11), digits=(1, 2),
                             rate=16000)
    ds = load_dataset("fsdd", data_dir=folder, speakers="cy", train_passes=1, valid_passes=1, test_passes=1)
    assert ds.meta["recordings"] == {"train": 2, "valid": 10, "test": 10}
    assert ds.meta["source_rates"] == [16000] and SAMPLE_RATE == 8000
    clip = ds.split("train")[0].clips[0]
    assert 1200 <= clip.size <= 2400                       # halved from 16 kHz


def test_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path))   # an empty data home
    with pytest.raises(UserError, match="probseq download fsdd.*--data-dir"):
        load_dataset("fsdd")
    with pytest.raises(UserError, match="use --data-dir"):
        load_dataset("fsdd", data_file=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no FSDD recordings"):
        load_dataset("fsdd", data_dir=tmp_path / "empty")


@pytest.mark.shared_data
def test_real_fsdd_split(shared_data):
    folder = shared_data / "fsdd" / "recordings"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    ds = load_dataset("fsdd", data_dir=folder, speakers="theo", train_passes=1, valid_passes=1, test_passes=1)
    assert ds.meta["recordings"] == {"train": 400, "valid": 50, "test": 50}
    labels = Counter(int(d) for ex in ds.split("test") for d in ex.labels)
    assert labels == Counter({d: 5 for d in range(10)})
