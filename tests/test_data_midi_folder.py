"""The ``midi`` dataset: a folder of MIDI files in, piano-rolls for training, MIDI back out (issue 18).

MIDI files are built here with ``mido`` (tempo changes, drums, two tracks, a corrupt file); the data
home is a temporary folder, so the cache is checked for hits and misses without touching anyone's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

mido = pytest.importorskip("mido")

from probseq.cli import main  # noqa: E402
from probseq.data.folder import split_files  # noqa: E402
from probseq.data.registry import load_dataset  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
TPB = 96


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A data home of the test's own (the cache goes there)."""
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path / "home"))
    return tmp_path / "home"


def write_song(path: Path, notes, *, beats=1.0, tempi=((0, 500000),), drums=(), second_track=None):
    """A type-1 file: conductor track with ``tempi`` [(tick, us per beat)], one melody track of
    ``notes`` each ``beats`` long, optional drum hits on channel 10 and an optional second track."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TPB)
    conductor, now = mido.MidiTrack(), 0
    for tick, tempo in tempi:
        conductor.append(mido.MetaMessage("set_tempo", tempo=tempo, time=tick - now))
        now = tick
    midi.tracks.append(conductor)
    for track_notes, channel in ((notes, 0), (second_track, 1)):
        if track_notes is None:
            continue
        track = mido.MidiTrack()
        for n in track_notes:
            track.append(mido.Message("note_on", note=n, velocity=80, channel=channel, time=0))
            track.append(mido.Message("note_off", note=n, velocity=0, channel=channel, time=int(beats * TPB)))
        for d in drums:
            track.append(mido.Message("note_on", note=d, velocity=80, channel=9, time=0))
            track.append(mido.Message("note_off", note=d, velocity=0, channel=9, time=TPB))
        midi.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(str(path))
    return path


def make_folder(root: Path, n: int = 8) -> Path:
    for i in range(n):
        sub = root / ("sub" if i % 2 else "") / f"song{i}.mid"
        write_song(sub, [60 + i % 5, 62, 64, 65, 67, 65, 64, 62])
    return root


def test_step_follows_beats_and_seconds_follow_the_tempo_map(tmp_path):
    # two quarter notes at 120 bpm, then a tempo change to 60 bpm and two more quarter notes
    write_song(tmp_path / "d" / "a.mid", [60, 62, 64, 65], tempi=((0, 500000), (2 * TPB, 1000000)))
    eighth = load_dataset("midi", data_dir=tmp_path / "d", cache=False)
    roll = eighth.splits["train"][0]
    assert roll.shape == (8, 88)                         # 4 beats x 2 steps, whatever the tempo
    assert roll[:2, 60 - 21].all() and roll[6:, 65 - 21].all()
    quarter = load_dataset("midi", data_dir=tmp_path / "d", step="quarter", cache=False)
    assert quarter.splits["train"][0].shape[0] == 4 and quarter.meta["steps_per_beat"] == 1
    clock = load_dataset("midi", data_dir=tmp_path / "d", step_seconds=0.25, cache=False)
    r = clock.splits["train"][0]
    # 1 s at 120 bpm (4 steps) then 2 s at 60 bpm (8 steps): the slow notes are twice as long
    assert r.shape[0] == 12 and int(r[:, 60 - 21].sum()) == 2 and int(r[:, 65 - 21].sum()) == 4
    assert clock.meta["steps_per_beat"] == 1 and clock.meta["tempo_bpm"] == 240.0


def test_drums_pitch_range_and_merge(tmp_path):
    write_song(tmp_path / "d" / "a.mid", [60, 62], drums=[36, 38], second_track=[70, 72])
    plain = load_dataset("midi", data_dir=tmp_path / "d", cache=False)
    roll = plain.splits["train"][0]
    assert roll[:, 36 - 21].sum() == 0 and roll[:, 70 - 21].sum() == 2   # no drums; both tracks
    drums = load_dataset("midi", data_dir=tmp_path / "d", drums=True, cache=False).splits["train"][0]
    assert drums[:, 36 - 21].sum() > 0
    tracks = load_dataset("midi", data_dir=tmp_path / "d", merge=False, cache=False).splits["train"]
    assert len(tracks) == 2 and tracks[1][:, 60 - 21].sum() == 0
    narrow = load_dataset("midi", data_dir=tmp_path / "d", low=60, high=71, cache=False)
    assert narrow.spec.dim == 12 and narrow.meta["lowest_note"] == 60
    assert narrow.splits["train"][0][:, 0].sum() == 2                 # note 60 is column 0


def test_split_is_stable_when_a_file_is_added(tmp_path):
    root = make_folder(tmp_path / "d", 30)
    files = sorted(root.rglob("*.mid"))
    before = split_files(files, root)
    assert before["valid"] and before["test"] and before["train"]
    new = write_song(root / "new" / "late.mid", [60])
    after = split_files(files + [new], root)
    for name in before:
        assert set(before[name]) <= set(after[name])
    # the split depends on the relative path only: the same folder elsewhere splits the same way
    moved = split_files([tmp_path / "elsewhere" / f.relative_to(root) for f in files], tmp_path / "elsewhere")
    assert {k: [f.relative_to(tmp_path / "elsewhere") for f in v] for k, v in moved.items()} == \
           {k: [f.relative_to(root) for f in v] for k, v in before.items()}


def test_few_files_keep_train_and_get_valid_and_test(tmp_path):
    paths = [Path(f"/x/{i}.mid") for i in range(5)]
    for n in (1, 2, 3, 4, 5):
        s = split_files(paths[:n], Path("/x"))
        assert s["train"] and sum(map(len, s.values())) == n
        if n >= 3:
            assert s["valid"] and s["test"]


def test_cache_hits_and_misses_on_options_and_content(tmp_path, home):
    root = make_folder(tmp_path / "d", 3)
    load_dataset("midi", data_dir=root)
    entries = set((home / "cache" / "midi").glob("*.npz"))
    assert len(entries) == 3
    load_dataset("midi", data_dir=root)                              # same options: hits only
    assert set((home / "cache" / "midi").glob("*.npz")) == entries
    load_dataset("midi", data_dir=root, step="quarter")              # another option: 3 new entries
    assert len(set((home / "cache" / "midi").glob("*.npz"))) == 6
    write_song(root / "song0.mid", [40, 41])                         # new content: one new entry
    d = load_dataset("midi", data_dir=root, step="quarter")
    assert len(set((home / "cache" / "midi").glob("*.npz"))) == 7
    assert any(r[:, 40 - 21].any() for part in d.splits.values() for r in part)
    assert not list((home / "cache" / "midi").glob(".tmp-*"))        # nothing half-written


def test_unreadable_files_are_skipped_with_one_line_each(tmp_path, capsys):
    root = make_folder(tmp_path / "d", 4)
    (root / "broken.mid").write_bytes(b"MThd garbage")
    (root / "sub" / "text.midi").write_text("hello")
    d = load_dataset("midi", data_dir=root, cache=False)
    assert sum(len(v) for v in d.splits.values()) == 4
    lines = [l for l in capsys.readouterr().err.splitlines() if "warning" in l]
    assert len(lines) == 2 and "broken.mid" in lines[0] + lines[1] and "text.midi" in lines[0] + lines[1]


@pytest.mark.parametrize("setup, options, message", [
    ("empty", [], "holds no MIDI files"),
    ("corrupt", [], "none of the 1 MIDI file(s) could be read"),
    ("ok", ["--set", "step=third"], "step must be one of quarter, eighth, sixteenth"),
    ("ok", ["--set", "step=quarter", "--set", "step_seconds=0.1"], "either step= or step_seconds="),
    ("ok", ["--set", "low=90", "--set", "high=80"], "pitch range"),
    ("ok", ["--set", "drums=maybe"], "drums must be true or false"),
    ("ok", ["--set", "valid_fraction=0.6", "--set", "test_fraction=0.5"], "must be below 1"),
])
def test_bad_input_is_one_sentence(tmp_path, capsys, setup, options, message):
    root = tmp_path / "d"
    root.mkdir()
    if setup == "corrupt":
        (root / "x.mid").write_bytes(b"\x00\x01")
    elif setup == "ok":
        make_folder(root, 2)
    code = main(["fit", "independent", "--data", "midi", "--data-dir", str(root), "--steps", "1",
                 "--out", str(tmp_path / "run"), "--quiet", *options])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and err[-1].startswith("probseq: error:")
    assert not (tmp_path / "run").exists()


def test_data_file_list(tmp_path):
    root = make_folder(tmp_path / "d", 3)
    files = sorted(root.rglob("*.mid"))
    d = load_dataset("midi", data_file=",".join(str(f) for f in files[:2]), cache=False)
    assert sum(len(v) for v in d.splits.values()) == 2


def test_fit_evaluate_sample_round_trip(tmp_path, capsys):
    root = make_folder(tmp_path / "d", 8)
    run = tmp_path / "run"
    assert main(["fit", "rnn-nade", "--data", "midi", "--data-dir", str(root), "--steps", "2",
                 "--set", "hidden=8", "--set", "step=quarter", "--set", "low=48", "--set", "high=83",
                 "--out", str(run), "--quiet", "--threads", "1"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["dataset"]["options"] == {"step": "quarter", "low": 48, "high": 83}
    assert info["meta"]["lowest_note"] == 48 and info["meta"]["n_keys"] == 36
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "midi" and np.isfinite(result["nll_per_frame"])
    # another folder, scored whole with the run's own step and range
    other = make_folder(tmp_path / "other", 3)
    assert main(["evaluate", str(run), "--data-dir", str(other), "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_sequences"] == 3
    out = tmp_path / "s.mid"
    assert main(["sample", str(run), "-n", "2", "--length", "16", "--out", str(out)]) == 0
    midi = mido.MidiFile(str(out))
    assert midi.ticks_per_beat == 120                       # one step per beat (step=quarter)
    tempo = next(m.tempo for m in midi.tracks[0] if m.type == "set_tempo")
    assert round(mido.tempo2bpm(tempo)) == 120
    notes = [m.note for t in midi.tracks for m in t if m.type == "note_on" and m.velocity > 0]
    assert all(48 <= n <= 83 for n in notes)
    # the written file read back with the run's settings is the sampled roll's resolution
    prime = write_song(tmp_path / "prime.mid", [60, 62, 64])
    assert main(["sample", str(run), "--prime", str(prime), "--length", "6", "--out",
                 str(tmp_path / "p.mid")]) == 0
    capsys.readouterr()


def test_compare_refuses_different_preprocessing(tmp_path, capsys):
    root = make_folder(tmp_path / "d", 4)
    runs = []
    for step in ("quarter", "eighth"):
        runs.append(tmp_path / step)
        assert main(["fit", "independent", "--data", "midi", "--data-dir", str(root), "--steps", "1",
                     "--set", f"step={step}", "--out", str(runs[-1]), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", *map(str, runs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "different preprocessing" in err[0] and "step" in err[0]


def test_repeated_data_file_is_a_list(tmp_path, capsys):
    root = make_folder(tmp_path / "d", 3)
    files = sorted(root.rglob("*.mid"))
    assert main(["fit", "independent", "--data", "midi", "--data-file", str(files[0]), "--data-file",
                 str(files[1]), "--steps", "1", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["dataset"]["data_file"] == f"{files[0].resolve()},{files[1].resolve()}"
    assert sum(info["meta"]["files"].values()) == 2
