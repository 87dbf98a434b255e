"""Media registry: dispatch by extension, built-in writers/readers, clear errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import probseq.io.media as media
from probseq.data.batch import Batch
from probseq.io.media import read_prime, register_prime_reader, register_writer, write_samples
from probseq.io.midi import read_midi_pianoroll, write_pianoroll_midi
from probseq.errors import UserError

PIANO = {"media": "pianoroll", "lowest_note": 21, "n_keys": 88, "steps_per_beat": 2, "tempo_bpm": 120}
VIDEO = {"media": "video", "frame_shape": [6, 5], "fps": 10}


@pytest.fixture
def rolls(generator):
    seqs = [(torch.rand(T, 88, generator=generator) < 0.05).float() for T in (7, 4, 9)]
    for s in seqs:
        s[0, 40] = 1.0  # at least one note each
    return Batch.from_sequences(seqs)


@pytest.fixture
def isolated_registry(monkeypatch):
    """Registrations made by a test are dropped afterwards."""
    monkeypatch.setattr(media, "_WRITERS", {k: list(v) for k, v in media._WRITERS.items()})
    monkeypatch.setattr(media, "_READERS", {k: list(v) for k, v in media._READERS.items()})


# ----------------------------------------------------------------------------- dispatch
def test_unknown_extension_lists_known_ones(tmp_path, rolls):
    with pytest.raises(UserError) as exc:
        write_samples(rolls, tmp_path / "out.xyz", PIANO)
    message = str(exc.value)
    assert "\n" not in message
    for ext in (".npz", ".mid", ".midi", ".png"):
        assert ext in message
    with pytest.raises(UserError, match="no file extension"):
        write_samples(rolls, tmp_path / "out", PIANO)
    (tmp_path / "prime.xyz").write_text("x")
    with pytest.raises(UserError, match=r"\.npy"):
        read_prime(tmp_path / "prime.xyz", PIANO)


def test_extension_is_case_insensitive(tmp_path, rolls):
    [path] = write_samples(rolls, tmp_path / "OUT.MID", PIANO)
    assert read_midi_pianoroll(path, steps_per_beat=2).shape[1] == 88


def test_write_samples_imports_dataset_modules_first(tmp_path, rolls, monkeypatch, isolated_registry):
    import probseq.data.registry as registry

    calls = []
    original = registry.import_dataset_modules

    def spy():
        calls.append(1)
        register_writer(".late", lambda s, p, m: p.write_text("late"))  # as a dataset module would
        original()

    monkeypatch.setattr(registry, "import_dataset_modules", spy)
    assert write_samples(rolls, tmp_path / "x.late", {}) == [tmp_path / "x.late"]
    assert calls and (tmp_path / "x.late").read_text() == "late"


def test_newest_matching_writer_wins(tmp_path, rolls, isolated_registry):
    register_writer(".fmt", lambda s, p, m: p.write_text("generic"))
    register_writer(".fmt", lambda s, p, m: p.write_text("special"), when=lambda m: m.get("special"))
    write_samples(rolls, tmp_path / "a.fmt", {"special": True})
    write_samples(rolls, tmp_path / "b.fmt", {})
    assert (tmp_path / "a.fmt").read_text() == "special"
    assert (tmp_path / "b.fmt").read_text() == "generic"


def test_registering_twice_is_harmless(isolated_registry):
    def fn(s, p, m):
        return None

    register_writer("twice", fn)
    register_writer(".TWICE", fn)
    assert len(media._WRITERS[".twice"]) == 1


def test_custom_prime_reader(tmp_path, isolated_registry):
    register_prime_reader(".txtroll", lambda p, m: torch.tensor([[float(c) for c in line] for line in p.read_text().split()]))
    (tmp_path / "p.txtroll").write_text("0110\n1001\n")
    assert read_prime(tmp_path / "p.txtroll", {}).tolist() == [[0, 1, 1, 0], [1, 0, 0, 1]]


# ----------------------------------------------------------------------------- built-in formats
def test_npz_round_trip_and_prime(tmp_path, rolls):
    [path] = write_samples(rolls, tmp_path / "sub" / "s.npz", PIANO)  # parent dir is created
    with np.load(path, allow_pickle=False) as f:
        assert np.array_equal(f["values"], rolls.values.numpy())
        assert np.array_equal(f["lengths"], rolls.lengths.numpy())
        assert json.loads(str(f["meta"])) == PIANO
    prime = read_prime(path, PIANO)
    assert torch.equal(prime, rolls.sequences()[0])  # the first sequence, unpadded


def test_npz_writer_takes_a_plain_tensor(tmp_path):
    values = torch.randn(2, 5, 3)
    [path] = write_samples(values, tmp_path / "t.npz", {})
    with np.load(path) as f:
        assert f["lengths"].tolist() == [5, 5]


def test_npy_and_single_array_npz_primes(tmp_path):
    frames = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float64)
    np.save(tmp_path / "a.npy", frames)
    np.save(tmp_path / "b.npy", frames[None])  # (1, T, D)
    np.savez(tmp_path / "c.npz", anything=frames)
    for name in ("a.npy", "b.npy", "c.npz"):
        prime = read_prime(tmp_path / name, {})
        assert prime.dtype == torch.float32 and prime.shape == (6, 4)
        assert torch.allclose(prime, torch.from_numpy(frames).float())
    np.save(tmp_path / "sym.npy", np.array([3, 1, 2]))
    assert read_prime(tmp_path / "sym.npy", {}).dtype == torch.int64  # categorical symbols


@pytest.mark.parametrize("make, fragment", [
    (lambda p: np.save(p / "x.npy", np.array([[1.0, np.nan]])), "NaN"),
    (lambda p: np.save(p / "x.npy", np.zeros((0, 3))), "no frames|shape"),
    (lambda p: np.save(p / "x.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True), "not a readable"),
    (lambda p: (p / "x.npy").write_bytes(b"junk"), "not a readable"),
    (lambda p: np.savez(p / "x.npz", a=np.zeros(3), b=np.zeros(3)), "exactly one array"),
])
def test_bad_primes(tmp_path, make, fragment):
    make(tmp_path)
    [path] = list(tmp_path.iterdir())
    with pytest.raises(UserError, match=fragment):
        read_prime(path, {})


def test_missing_prime(tmp_path):
    with pytest.raises(UserError, match="no such prime file"):
        read_prime(tmp_path / "absent.npy", {})


def test_midi_writer_and_prime_for_pianorolls(tmp_path, rolls):
    [path] = write_samples(rolls, tmp_path / "s.mid", PIANO)
    back = read_midi_pianoroll(path, steps_per_beat=2)
    gap = torch.zeros(8, 88)  # one 4/4 bar at 2 steps per beat
    expected = torch.cat([rolls.sequences()[0], gap, rolls.sequences()[1], gap, rolls.sequences()[2]])
    assert torch.equal(back, expected)
    one = write_pianoroll_midi(rolls.sequences()[2], tmp_path / "one.midi", steps_per_beat=2)
    assert torch.equal(read_prime(one, PIANO), rolls.sequences()[2])


def test_midi_refused_for_other_data(tmp_path):
    with pytest.raises(UserError, match="piano-roll data"):
        write_samples(torch.rand(2, 5, 3), tmp_path / "s.mid", {"media": "motion"})
    write_pianoroll_midi(torch.eye(88)[:2], tmp_path / "p.mid")
    with pytest.raises(UserError, match="piano-roll model"):
        read_prime(tmp_path / "p.mid", {})


def _png_size(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_png_for_pianorolls_video_real_and_categorical(tmp_path, rolls):
    assert min(_png_size(write_samples(rolls, tmp_path / "roll.png", PIANO)[0])) > 100
    video = Batch(torch.rand(3, 4, 30), torch.tensor([4, 2, 3]))
    assert min(_png_size(write_samples(video, tmp_path / "video.png", VIDEO)[0])) > 50
    real = Batch.from_sequences([torch.randn(12, 5), torch.randn(7, 5)])
    assert min(_png_size(write_samples(real, tmp_path / "real.png", {})[0])) > 100
    symbols = Batch.from_sequences([torch.tensor([1, 2, 3]), torch.tensor([0, 4])])
    assert min(_png_size(write_samples(symbols, tmp_path / "sym.png", {})[0])) > 100


def test_gif_for_video_only(tmp_path):
    video = Batch(torch.rand(5, 4, 30), torch.tensor([4, 4, 2, 3, 1]))
    [path] = write_samples(video, tmp_path / "v.gif", VIDEO)
    with Image.open(path) as image:
        assert image.format == "GIF" and image.n_frames == 4
    with pytest.raises(UserError, match="video data"):
        write_samples(video, tmp_path / "x.gif", {})
    with pytest.raises(UserError, match="6x5"):
        write_samples(Batch(torch.rand(1, 2, 7), torch.tensor([2])), tmp_path / "y.gif", VIDEO)


def test_bouncing_balls_samples_to_gif_and_png(tmp_path):
    from probseq.data.registry import load_dataset

    data = load_dataset("bouncing-balls", n_train=2, n_valid=1, n_test=1, n_frames=5)
    batch = Batch.from_sequences(data.splits["train"])
    assert write_samples(batch, tmp_path / "b.gif", data.meta)[0].stat().st_size > 0
    assert min(_png_size(write_samples(batch, tmp_path / "b.png", data.meta)[0])) > 50


@pytest.mark.parametrize("module, ext, meta", [("mido", ".mid", PIANO), ("matplotlib", ".png", PIANO),
                                               ("PIL", ".gif", VIDEO)])
def test_missing_optional_package_says_what_to_install(tmp_path, monkeypatch, module, ext, meta):
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    values = torch.zeros(1, 3, 88 if meta is PIANO else 30)
    values[0, 0, 3] = 1
    with pytest.raises(UserError, match=r"pip install probseq\[media\]"):
        write_samples(values, tmp_path / f"out{ext}", meta)
