"""Piano-roll loaders: formats agree, splits have the published sizes, bad input is one UserError."""

from __future__ import annotations

import gzip
import json
import os
import pickle

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probseq.io.pianoroll import (
    check_roll,
    notes_to_roll,
    read_pianoroll_file,
    roll_to_notes,
    write_notes_json,
)
from probseq.data.registry import load_dataset
from probseq.io.safe_pickle import safe_load, safe_loads
from probseq.errors import UserError

# Published statistics (SOURCE.md of the developer data; Boulanger-Lewandowski et al. 2012)
JSB_COUNTS = {"train": 229, "valid": 76, "test": 77}
JSB_FRAMES = {"train": 13807, "valid": 4602, "test": 4725}
PIANO_COUNTS = {"train": 87, "valid": 12, "test": 25}
PIANO_FRAMES = {"train": 75911, "valid": 8540, "test": 19036}


def assert_same_splits(a, b):
    assert a.keys() == b.keys()
    for split in a:
        assert len(a[split]) == len(b[split]), split
        for x, y in zip(a[split], b[split]):
            assert torch.equal(x, y)


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message and message, message
    return message


# ----------------------------------------------------------------------------- conversions
@settings(max_examples=50, deadline=None)
@given(st.lists(st.lists(st.integers(21, 108), max_size=6), min_size=1, max_size=12))
def test_notes_roll_round_trip(steps):
    roll = notes_to_roll(steps)
    assert roll.shape == (len(steps), 88) and roll.dtype == torch.float32
    assert roll_to_notes(roll) == [sorted(set(s)) for s in steps]
    # oracle: the roll entry is 1 exactly when the note is listed
    for t, step in enumerate(steps):
        for j in range(88):
            assert roll[t, j].item() == float(21 + j in step)


def test_notes_to_roll_accepts_numpy_ints_and_integral_floats():
    roll = notes_to_roll([[np.int64(60), 64.0], [], (np.int32(21), 108)])
    assert roll_to_notes(roll) == [[60, 64], [], [21, 108]]


@pytest.mark.parametrize("steps, fragment", [
    ([[20]], "outside the piano range"),
    ([[109]], "outside the piano range"),
    ([[60.5]], "integer MIDI note"),
    ([["C4"]], "integer MIDI note"),
    ([[True]], "boolean"),
    ([], "no time steps"),
    (["60"], "expected a list of MIDI note numbers"),
    ([60], "expected a list of MIDI note numbers"),
    ("abc", "expected a list of time steps"),
])
def test_notes_to_roll_rejects(steps, fragment):
    with pytest.raises(UserError) as exc:
        notes_to_roll(steps, where="seq")
    assert fragment in one_sentence(exc)


@pytest.mark.parametrize("array, fragment", [
    (np.zeros((5, 87)), "87 columns"),
    (np.zeros((5, 88, 1)), "shape"),
    (np.zeros((0, 88)), "no time steps"),
    (np.full((2, 88), np.nan), "NaN"),
    (np.full((2, 88), 2, dtype=np.uint8), "only 0 and 1"),
    (np.full((2, 88), 0.5), "only 0 and 1"),
])
def test_check_roll_rejects(array, fragment):
    with pytest.raises(UserError) as exc:
        check_roll(array)
    assert fragment in one_sentence(exc)


# ----------------------------------------------------------------------------- embedded JSB
def test_embedded_jsb_has_standard_splits():
    data = load_dataset("jsb")
    assert data.spec.kind == "binary" and data.spec.dim == 88
    assert {k: len(v) for k, v in data.splits.items()} == JSB_COUNTS
    assert {k: sum(x.shape[0] for x in v) for k, v in data.splits.items()} == JSB_FRAMES
    everything = torch.cat([x for v in data.splits.values() for x in v])
    assert everything.dtype == torch.float32
    assert set(everything.unique().tolist()) == {0.0, 1.0}
    used = (everything.sum(0) > 0).nonzero().flatten() + 21
    assert (int(used.min()), int(used.max())) == (43, 96)  # pitch range stated in SOURCE.md
    assert data.meta["lowest_note"] == 21 and data.meta["steps_per_beat"] == 1
    assert data.meta["tempo_bpm"] == 120 and data.meta["media"] == "pianoroll"


def test_a_set_is_read_once_per_file_version_and_each_load_gets_its_own_copy(tmp_path):
    from probseq.data.sets.polyphonic import _read_rolls_once, load_polyphonic

    path = tmp_path / "rolls.json"
    path.write_text(json.dumps(_good_notes()))
    first = load_polyphonic("nottingham", data_file=path)
    before = _read_rolls_once.cache_info()
    second = load_polyphonic("nottingham", data_file=path)
    assert _read_rolls_once.cache_info().hits == before.hits + 1          # not read again
    assert_same_splits(first.splits, second.splits)
    first.split("train")[0].fill_(7.0)                                  # a caller that edits its data
    assert set(second.split("train")[0].unique().tolist()) <= {0.0, 1.0}
    assert set(load_polyphonic("nottingham", data_file=path).split("train")[0].unique().tolist()) <= {0.0, 1.0}
    changed = {**_good_notes(), "train": [[[60], [62, 64]], [[70]], [[71]]]}
    path.write_text(json.dumps(changed))                                # a new version of the file
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert len(load_polyphonic("nottingham", data_file=path).split("train")) == 3


def test_embedded_jsb_equals_mat(shared_data):
    mat = read_pianoroll_file(shared_data / "polyphonic" / "JSB_Chorales.mat")
    assert_same_splits(load_dataset("jsb").splits, mat)


def test_jsb_mat_pickle_json_identical(shared_data):
    folder = shared_data / "polyphonic"
    mat = read_pianoroll_file(folder / "JSB_Chorales.mat")
    assert {k: len(v) for k, v in mat.items()} == JSB_COUNTS
    assert sum(x.shape[0] for x in mat["test"]) == 4725
    assert_same_splits(mat, read_pianoroll_file(folder / "jsb-chorales-quarter.pkl"))
    assert_same_splits(mat, read_pianoroll_file(folder / "jsb-chorales-quarter.json"))


def test_jsb_user_file_and_dir_override_embedded(shared_data):
    folder = shared_data / "polyphonic"
    from_file = load_dataset("jsb", data_file=folder / "jsb-chorales-quarter.pkl")
    from_dir = load_dataset("jsb", data_dir=folder)
    assert from_file.meta["source"].endswith("jsb-chorales-quarter.pkl")
    assert from_dir.meta["source"].endswith("JSB_Chorales.mat")
    assert_same_splits(from_file.splits, from_dir.splits)


def test_piano_midi_mat(shared_data):
    data = load_dataset("piano-midi", data_file=shared_data / "polyphonic" / "Piano_midi.mat")
    assert {k: len(v) for k, v in data.splits.items()} == PIANO_COUNTS
    assert {k: sum(x.shape[0] for x in v) for k, v in data.splits.items()} == PIANO_FRAMES
    assert data.meta["steps_per_beat"] == 2


# ----------------------------------------------------------------------------- synthetic sets
def synthetic_note_lists(seed: int) -> dict[str, list[list[list[int]]]]:
    rng = np.random.default_rng(seed)
    return {split: [[sorted(rng.choice(np.arange(21, 109), size=rng.integers(0, 5), replace=False).tolist())
                     for _ in range(rng.integers(1, 30))] for _ in range(n)]
            for split, n in (("train", 5), ("valid", 2), ("test", 3))}


def write_mat(path, rolls: dict[str, list[torch.Tensor]]):
    cells = {}
    for split, key in (("train", "traindata"), ("valid", "validdata"), ("test", "testdata")):
        cell = np.empty((1, len(rolls[split])), dtype=object)
        for i, r in enumerate(rolls[split]):
            cell[0, i] = r.numpy().astype(np.uint8)
        cells[key] = cell
    scipy.io.savemat(path, cells)


def as_numpy_ints(notes):
    """The original BL pickles hold numpy int64 note numbers inside tuples."""
    return {s: [[tuple(np.int64(n) for n in step) for step in seq] for seq in seqs] for s, seqs in notes.items()}


@pytest.mark.parametrize("name, mat_name, pickle_name", [
    ("nottingham", "Nottingham.mat", "Nottingham.pickle"),
    ("musedata", "MuseData.mat", "MuseData.pickle"),
])
def test_synthetic_sets_in_every_format(tmp_path, name, mat_name, pickle_name):
    notes = synthetic_note_lists(seed=len(name))
    expected = {s: [notes_to_roll(seq) for seq in seqs] for s, seqs in notes.items()}
    (tmp_path / "mat").mkdir()
    (tmp_path / "pkl").mkdir()
    write_mat(tmp_path / "mat" / mat_name, expected)
    with open(tmp_path / "pkl" / pickle_name, "wb") as f:
        pickle.dump(as_numpy_ints(notes), f, protocol=2)
    (tmp_path / "notes.json").write_text(json.dumps(notes))
    for source in (dict(data_file=tmp_path / "mat" / mat_name), dict(data_dir=tmp_path / "mat"),
                   dict(data_file=tmp_path / "pkl" / pickle_name), dict(data_dir=tmp_path / "pkl"),
                   dict(data_file=tmp_path / "notes.json")):
        data = load_dataset(name, **source)
        assert_same_splits(data.splits, expected)
        assert data.meta["steps_per_beat"] == 2 and data.spec.dim == 88


def test_pickle_of_roll_arrays_is_accepted(tmp_path):
    rolls = {s: [np.eye(88, dtype=np.uint8)[i:i + 3] for i in range(2)] for s in ("train", "valid", "test")}
    (tmp_path / "r.pkl").write_bytes(pickle.dumps(rolls, protocol=4))
    data = read_pianoroll_file(tmp_path / "r.pkl")
    assert roll_to_notes(data["test"][1]) == [[22], [23], [24]]
    rolls["valid"][0] = np.zeros((3, 12))
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(rolls, protocol=4))
    with pytest.raises(UserError, match="12 columns"):
        read_pianoroll_file(tmp_path / "bad.pkl")


def test_write_notes_json_round_trip_and_deterministic(tmp_path):
    rolls = {s: [notes_to_roll(seq) for seq in seqs] for s, seqs in synthetic_note_lists(3).items()}
    a = write_notes_json(rolls, tmp_path / "a.json.gz")
    b = write_notes_json(rolls, tmp_path / "b.json.gz")
    assert a.read_bytes() == b.read_bytes()  # no timestamp in the gzip header
    assert_same_splits(read_pianoroll_file(a), rolls)
    assert_same_splits(read_pianoroll_file(write_notes_json(rolls, tmp_path / "c.json")), rolls)


@pytest.mark.parametrize("name", ["piano-midi", "nottingham", "musedata"])
def test_unshipped_sets_need_a_file(name, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path))   # an empty data home
    with pytest.raises(UserError) as exc:
        load_dataset(name)
    message = one_sentence(exc)
    assert "--data-file" in message and f"probseq download {name}" in message and str(tmp_path) in message


def test_empty_data_dir_names_what_it_looked_for(tmp_path):
    with pytest.raises(UserError) as exc:
        load_dataset("nottingham", data_dir=tmp_path)
    assert "Nottingham.mat" in one_sentence(exc)


def test_unknown_option_rejected():
    with pytest.raises(UserError, match="takes no options"):
        load_dataset("jsb", transpose=3)


# ----------------------------------------------------------------------------- bad files
def _good_notes():
    return {"train": [[[60]]], "valid": [[[62], []]], "test": [[[64, 67]]]}


BAD_FILES = {
    "missing_split.json": (json.dumps({"train": [[[60]]], "test": [[[60]]]}), "lacks the split(s) valid"),
    "list_top.json": (json.dumps([[[60]]]), "expected a dict"),
    "out_of_range.json": (json.dumps({**_good_notes(), "test": [[[10]]]}), "outside the piano range"),
    "empty_sequence.json": (json.dumps({**_good_notes(), "valid": [[]]}), "no time steps"),
    "string_split.json": (json.dumps({**_good_notes(), "train": "abc"}), "expected a list of sequences"),
    "broken.json": ('{"train": [[[60]]', "not a readable JSON"),
    "broken.json.gz": (b"not gzip at all", "not a readable JSON"),
    "notes.txt": ("hello", "expected a .mat"),
    "garbage.mat": (b"\x00\x01 this is not matlab" * 20, "not a readable MATLAB"),
    "garbage.pkl": (b"\x80\x02}q\x01(U\x04test", "not a readable pickle"),
    "text.pickle": (b"hello world", "not a readable pickle"),
}


@pytest.mark.parametrize("file_name", sorted(BAD_FILES))
def test_bad_files_are_one_sentence_user_errors(tmp_path, file_name):
    content, fragment = BAD_FILES[file_name]
    path = tmp_path / file_name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(UserError) as exc:
        read_pianoroll_file(path)
    assert fragment in one_sentence(exc)


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_pianoroll_file(tmp_path / "absent.mat")
    with pytest.raises(UserError, match="no such file"):
        load_dataset("jsb", data_file=tmp_path / "absent.mat")


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d.pop("validdata"), "lacks the key(s) validdata"),
    (lambda d: d.update(testdata=np.zeros((3, 88))), "expected a cell array"),
    (lambda d: d["traindata"].__setitem__((0, 0), np.zeros((4, 87), np.uint8)), "87 columns"),
    (lambda d: d["traindata"].__setitem__((0, 0), np.full((4, 88), np.nan)), "NaN"),
    (lambda d: d["traindata"].__setitem__((0, 0), np.full((4, 88), 3, np.uint8)), "only 0 and 1"),
])
def test_bad_mat_contents(tmp_path, mutate, fragment):
    contents = {}
    for key in ("traindata", "validdata", "testdata"):
        cell = np.empty((1, 2), dtype=object)
        cell[0, 0] = np.zeros((3, 88), np.uint8)
        cell[0, 1] = np.eye(88, dtype=np.uint8)[:5]
        contents[key] = cell
    mutate(contents)
    scipy.io.savemat(tmp_path / "bad.mat", contents)
    with pytest.raises(UserError) as exc:
        read_pianoroll_file(tmp_path / "bad.mat")
    assert fragment in one_sentence(exc)


def test_mat_3d_numeric_split_is_accepted(tmp_path):
    rolls = np.zeros((2, 4, 88), np.uint8)
    rolls[0, 1, 10] = rolls[1, 3, 87] = 1
    scipy.io.savemat(tmp_path / "x.mat", {"traindata": rolls, "validdata": rolls, "testdata": rolls})
    data = read_pianoroll_file(tmp_path / "x.mat")
    assert [x.shape for x in data["train"]] == [(4, 88), (4, 88)]
    assert roll_to_notes(data["test"][1]) == [[], [], [], [108]]


# ----------------------------------------------------------------------------- safe pickle
class _RunsCommand:
    """A pickle payload that runs a shell command when unpickled by plain ``pickle``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"train": [_RunsCommand(f"touch {marker}")], "valid": [], "test": []},
                           protocol=2)
    # the payload is live: plain pickle runs the command (this is what the test guards against)
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(UserError) as exc:
        read_pianoroll_file(path)
    message = one_sentence(exc)
    assert "system" in message and "refuses" in message
    assert not marker.exists()


@pytest.mark.parametrize("payload", [
    pickle.dumps(_CallsEval(), protocol=2),
    pickle.dumps(_CallsEval(), protocol=4),
    b"cos\nsystem\n(S'echo hi'\ntR.",  # hand-written protocol-0 GLOBAL + REDUCE
    b"\x80\x02cbuiltins\ngetattr\nq\x00.",
])
def test_restricted_unpickler_refuses_other_globals(payload):
    with pytest.raises(UserError, match="refuses"):
        safe_loads(payload)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_restricted_unpickler_reads_numpy_data(protocol):
    obj = {"train": [[(np.int64(60), np.int64(64)), ()]], "x": np.arange(6, dtype=np.int64).reshape(2, 3),
           "y": np.array([0.5], dtype=np.float32), "s": "text", "t": (1, 2.5, None, True)}
    back = safe_loads(pickle.dumps(obj, protocol=protocol))
    assert back["train"] == obj["train"] and back["s"] == "text" and back["t"] == obj["t"]
    assert np.array_equal(back["x"], obj["x"]) and back["y"].dtype == np.float32


def test_safe_load_reads_the_original_jsb_pickle(shared_data):
    data = safe_load(shared_data / "polyphonic" / "jsb-chorales-quarter.pkl")
    assert sorted(data) == ["test", "train", "valid"]
    assert isinstance(data["test"][0][0][0], np.integer)


def test_gzip_json_reader_matches_plain_json(tmp_path):
    notes = _good_notes()
    (tmp_path / "a.json").write_text(json.dumps(notes))
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(json.dumps(notes).encode()))
    assert_same_splits(read_pianoroll_file(tmp_path / "a.json"), read_pianoroll_file(tmp_path / "a.json.gz"))
