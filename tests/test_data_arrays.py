"""The ``arrays`` dataset: .npz / .npy / CSV sequences in, the same formats back out (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from probseq.cli import main
from probseq.data.registry import load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path / "home"))


def real_npz(path: Path, n=20, d=3, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    np.savez(path, *[rng.normal([10.0, -5.0, 0.0][:d], [2.0, 0.5, 1.0][:d], (int(rng.integers(5, 12)), d))
                     for _ in range(n)])
    return path


def write_csv(path: Path, rows, header="a,b") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ([header] if header else []) + [",".join(str(v) for v in r) for r in rows]
    path.write_text("\n".join(text) + "\n")
    return path


def test_npz_real_is_normalised_on_training_frames(tmp_path):
    d = load_dataset("arrays", data_file=real_npz(tmp_path / "x.npz"))
    assert d.spec.kind == "real" and d.spec.dim == 3
    train = torch.cat(d.splits["train"]).double()
    assert torch.allclose(train.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(train.std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-5)
    raw = np.load(tmp_path / "x.npz")
    assert np.allclose(d.meta["mean"], np.concatenate([raw[k] for k in raw.files]).mean(0), atol=0.5)
    assert sum(len(v) for v in d.splits.values()) == 20 and d.splits["valid"] and d.splits["test"]


def test_binary_detection_override_and_npy_shapes(tmp_path):
    rng = np.random.default_rng(1)
    np.save(tmp_path / "b.npy", (rng.random((6, 7, 4)) < 0.3).astype(np.float32))
    d = load_dataset("arrays", data_file=tmp_path / "b.npy")
    assert d.spec.kind == "binary" and d.meta["mean"] is None and sum(len(v) for v in d.splits.values()) == 6
    forced = load_dataset("arrays", data_file=tmp_path / "b.npy", values="real")
    assert forced.spec.kind == "real" and forced.meta["mean"] is not None
    np.save(tmp_path / "one.npy", rng.normal(size=(9, 2)))
    assert load_dataset("arrays", data_file=tmp_path / "one.npy").splits["train"][0].shape == (9, 2)


def test_csv_folder_with_and_without_header(tmp_path):
    write_csv(tmp_path / "d" / "a.csv", [[1, 2], [3, 4], [5, 6]])
    write_csv(tmp_path / "d" / "sub" / "b.csv", [[1.5, 2], [0, 1]], header=None)
    write_csv(tmp_path / "d" / "c.csv", [[7, 8]], header="a,b")
    d = load_dataset("arrays", data_dir=tmp_path / "d")
    lengths = sorted(len(x) for v in d.splits.values() for x in v)
    assert lengths == [1, 2, 3] and d.meta["columns"] == ["a", "b"]


def test_split_stable_when_a_file_is_added(tmp_path):
    for i in range(30):
        write_csv(tmp_path / "d" / f"s{i}.csv", [[i, 0.5], [i + 1, 0.25]])
    names = lambda d: {k: sorted(float(x[0, 0] * 1) for x in v) for k, v in d.splits.items()}
    before = names(load_dataset("arrays", data_dir=tmp_path / "d", normalise=False))
    write_csv(tmp_path / "d" / "zz_new.csv", [[100, 1.5]])
    after = names(load_dataset("arrays", data_dir=tmp_path / "d", normalise=False))
    for k in before:
        assert set(before[k]) <= set(after[k])


@pytest.mark.parametrize("name, content, message", [
    ("ragged.csv", "a,b\n1,2\n3\n", "ragged.csv row 3 has 1 values, but the header has 2"),
    ("word.csv", "1,2\n3,x\n", "column 2 holds 'x', which is not a number"),
    ("empty.csv", "a,b\n", "holds no frames"),
    ("hole.csv", "1,2\n,4\n", "missing value"),
    ("nan.csv", "1,2\nnan,4\n", "missing value"),
    ("inf.csv", "1,2\ninf,4\n", "infinite value"),
])
def test_bad_csv_is_one_sentence_naming_the_file(tmp_path, capsys, name, content, message):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / name).write_text(content)
    code = main(["fit", "gru", "--data", "arrays", "--data-dir", str(tmp_path / "d"), "--steps", "1",
                 "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0] and name in err[0]
    assert not (tmp_path / "run").exists()


def test_other_bad_inputs(tmp_path, capsys):
    np.savez(tmp_path / "mixed.npz", a=np.zeros((3, 2)), b=np.zeros((4, 3)))
    np.savez(tmp_path / "zero.npz", a=np.zeros((0, 2)))
    np.save(tmp_path / "obj.npy", np.array([np.zeros((2, 2)), np.zeros((3, 2))], dtype=object),
            allow_pickle=True)
    np.savez(tmp_path / "binfail.npz", a=np.array([[0.0, 0.5]]))
    cases = [(["--data-file", str(tmp_path / "mixed.npz")], "has frames of 3 values, but"),
             (["--data-file", str(tmp_path / "zero.npz")], "no frames"),
             (["--data-file", str(tmp_path / "obj.npy")], "holds Python objects"),
             (["--data-file", str(tmp_path / "binfail.npz"), "--set", "values=binary"], "other than 0 and 1"),
             (["--data-file", str(tmp_path / "x.txt")], "no such file"),
             (["--data-file", str(real_npz(tmp_path / "r.npz")), "--set", "values=maybe"], "values must be")]
    for extra, message in cases:
        code = main(["fit", "gru", "--data", "arrays", "--steps", "1", "--out", str(tmp_path / "run"),
                     "--quiet", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and message in err[-1], (extra, err)


def test_unreadable_files_are_skipped_and_missing_allow_keeps_nan(tmp_path, capsys):
    write_csv(tmp_path / "d" / "a.csv", [[1, 2], ["", 4], [5, 6]])
    write_csv(tmp_path / "d" / "b.csv", [[1, 2], [2, 4]])
    (tmp_path / "d" / "junk.npz").write_bytes(b"PK not really")
    (tmp_path / "d" / "bin.csv").write_bytes(b"\xff\xfe\x00\x01")
    d = load_dataset("arrays", data_dir=tmp_path / "d", missing="allow", valid_fraction=0, test_fraction=0)
    err = [l for l in capsys.readouterr().err.splitlines() if "warning" in l]
    assert len(err) == 2
    held = [x for x in d.splits["train"] if torch.isnan(x).any()]
    assert len(held) == 1 and torch.isnan(held[0][1, 0]) and not torch.isnan(held[0][1, 1])
    assert np.isfinite(d.meta["mean"]).all()            # the normalisation ignores the hole


def test_fit_evaluate_sample_in_original_units(tmp_path, capsys):
    data = real_npz(tmp_path / "x.npz", n=16)
    run = tmp_path / "run"
    assert main(["fit", "gru", "--data", "arrays", "--data-file", str(data), "--steps", "2",
                 "--set", "hidden=8", "--out", str(run), "--quiet", "--threads", "1"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["meta"]["values"] == "real" and len(info["meta"]["mean"]) == 3
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    assert np.isfinite(json.loads(capsys.readouterr().out)["nll_per_frame"])
    # another file, scored in the run's units (its own mean is not learnt again)
    other = tmp_path / "other.npz"
    np.savez(other, np.full((5, 3), 7.0))
    assert main(["evaluate", str(run), "--data-file", str(other), "--split", "all", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_sequences"] == 1
    from probseq.data.sets.arrays import load_arrays

    again = load_arrays(data_file=other, run_meta=info["meta"])
    expected = (7.0 - np.array(info["meta"]["mean"])) / np.array(info["meta"]["std"])
    assert np.allclose(again.split("all")[0][0].numpy(), expected, atol=1e-5)
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "-n", "3", "--length", "200", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        values = z["values"]
    assert values.shape == (3, 200, 3)
    assert abs(values[..., 0].mean() - 10.0) < 3.0 and abs(values[..., 1].mean() + 5.0) < 3.0
    assert main(["sample", str(run), "-n", "2", "--length", "4", "--out", str(tmp_path / "s.csv")]) == 0
    back = load_dataset("arrays", data_file=f"{tmp_path / 's_0.csv'},{tmp_path / 's_1.csv'}", normalise=False)
    assert sorted(len(x) for v in back.splits.values() for x in v) == [4, 4]
    # a prime in original units
    np.savetxt(tmp_path / "p.csv", np.tile([10.0, -5.0, 0.0], (3, 1)), delimiter=",")
    assert main(["sample", str(run), "--prime", str(tmp_path / "p.csv"), "--length", "5",
                 "--out", str(tmp_path / "p.npz")]) == 0
    with np.load(tmp_path / "p.npz", allow_pickle=False) as z:
        assert np.allclose(z["values"][0, :3], np.tile([10.0, -5.0, 0.0], (3, 1)), atol=1e-4)


def test_fit_binary_arrays(tmp_path, capsys):
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "b.npz", *[(rng.random((8, 5)) < 0.4).astype(np.int8) for _ in range(10)])
    run = tmp_path / "run"
    assert main(["fit", "gru", "--data", "arrays", "--data-file", str(tmp_path / "b.npz"), "--steps", "2",
                 "--set", "hidden=8", "--out", str(run), "--quiet", "--threads", "1"]) == 0
    assert json.loads((run / "run.json").read_text())["spec"] == {"kind": "binary", "dim": 5}
    assert main(["sample", str(run), "-n", "1", "--length", "6", "--out", str(tmp_path / "s.csv")]) == 0
    rows = (tmp_path / "s.csv").read_text().splitlines()
    assert rows[0] == "x0,x1,x2,x3,x4" and set(",".join(rows[1:]).split(",")) <= {"0", "1"}
