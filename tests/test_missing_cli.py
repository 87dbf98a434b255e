"""``probseq infill`` and ``probseq evaluate --metric infill`` (issue 21), in-process: what they write,
and one clear sentence (exit 2) for every input a user can get wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probseq.cli import main
from probseq.evaluate.infill import copy_nearest, hide_values, interpolate

NAN = float("nan")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gru"
    assert main(["fit", "gru", "--data", "jsb", "--steps", "2", "--set", "hidden=4", "--out", str(out),
                 "--quiet", "--threads", "1"]) == 0
    return out


@pytest.fixture(scope="module")
def rbm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "rnn-rbm"
    # pretrain_steps=0: the default static pre-training (2,000 CD-5 minibatches on JSB) is not under test
    assert main(["fit", "rnn-rbm", "--data", "jsb", "--steps", "1", "--set", "hidden=4", "--set", "rbm_hidden=4",
                 "--set", "cd_steps=1", "--set", "sample_steps=2", "--set", "pretrain_steps=0", "--out", str(out),
                 "--quiet", "--threads", "1"]) == 0
    return out


def _partial(tmp_path, T=12, D=88, holes=slice(3, 6), name="partial.npz"):
    x = (np.random.default_rng(0).random((T, D)) < 0.05).astype(np.float32)
    x[holes, :] = np.nan
    path = tmp_path / name
    np.savez(path, values=x)
    return path, x


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("probseq: error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_infill_keeps_the_observed_values_and_fills_the_rest(run, tmp_path, capsys):
    path, x = _partial(tmp_path)
    out = tmp_path / "filled.npz"
    assert main(["infill", str(run), "--input", str(path), "--out", str(out), "--samples", "3",
                 "--particles", "4", "--threads", "1"]) == 0
    said = capsys.readouterr().out
    assert "approximate" in said and "particle filter" in said
    with np.load(out) as f:
        values, lengths = f["values"], f["lengths"]
    assert values.shape == (3, 12, 88) and lengths.tolist() == [12, 12, 12]
    seen = ~np.isnan(x)
    assert np.array_equal(values[:, seen], np.broadcast_to(x[seen], (3, int(seen.sum()))))
    assert set(np.unique(values[:, ~seen]).tolist()) <= {0.0, 1.0}


def test_infill_a_midi_file_with_a_time_range_marked_missing(run, tmp_path, capsys):
    path, _ = _partial(tmp_path, holes=slice(0, 0))
    full = tmp_path / "full.mid"
    assert main(["sample", str(run), "--prime", str(path), "--length", "13", "--out", str(full)]) == 0
    capsys.readouterr()
    assert main(["infill", str(run), "--input", str(full), "--missing-seconds", "1:3", "--mode",
                 "--out", str(tmp_path / "filled.mid"), "--particles", "4"]) == 0
    assert "highest-weight" in capsys.readouterr().out
    assert (tmp_path / "filled.mid").stat().st_size > 0


def test_infill_bad_inputs_are_one_sentence(run, tmp_path, capsys):
    nothing, _ = _partial(tmp_path, holes=slice(0, 0), name="complete.npz")
    assert "no missing values" in _error(capsys, ["infill", str(run), "--input", str(nothing), "--out",
                                                   str(tmp_path / "o.npz")])
    everything, _ = _partial(tmp_path, holes=slice(0, 12), name="empty.npz")
    assert "every value" in _error(capsys, ["infill", str(run), "--input", str(everything), "--out",
                                             str(tmp_path / "o.npz")])
    narrow, _ = _partial(tmp_path, D=3, name="narrow.npz")
    assert "dimension 3" in _error(capsys, ["infill", str(run), "--input", str(narrow), "--out",
                                             str(tmp_path / "o.npz")])
    cube = tmp_path / "cube.npz"
    np.savez(cube, values=np.zeros((2, 3, 88, 1), dtype=np.float32))
    assert "shape" in _error(capsys, ["infill", str(run), "--input", str(cube), "--out", str(tmp_path / "o.npz")])
    assert "no such input" in _error(capsys, ["infill", str(run), "--input", str(tmp_path / "nope.npz"),
                                               "--out", str(tmp_path / "o.npz")])
    assert "START:STOP" in _error(capsys, ["infill", str(run), "--input", str(nothing), "--missing-seconds",
                                            "two", "--out", str(tmp_path / "o.npz")])
    assert "starts at frame" in _error(capsys, ["infill", str(run), "--input", str(nothing),
                                                 "--missing-frames", "40:50", "--out", str(tmp_path / "o.npz")])
    inf = tmp_path / "inf.npz"
    bad = np.zeros((4, 88), dtype=np.float32)
    bad[0, 0], bad[1, 1] = np.inf, np.nan
    np.savez(inf, values=bad)
    assert "infinite" in _error(capsys, ["infill", str(run), "--input", str(inf), "--out", str(tmp_path / "o.npz")])
    notes = tmp_path / "notes.npz"
    bad = np.full((4, 88), 0.0, dtype=np.float32)
    bad[0, 0], bad[1, 1] = 3.0, np.nan
    np.savez(notes, values=bad)
    _error(capsys, ["infill", str(run), "--input", str(notes), "--out", str(tmp_path / "o.npz")])


def test_rnn_rbm_fills_in_by_gibbs_and_refuses_a_mode(rbm_run, tmp_path, capsys):
    path, _ = _partial(tmp_path)
    assert main(["infill", str(rbm_run), "--input", str(path), "--out", str(tmp_path / "f.npz")]) == 0
    assert "Gibbs" in capsys.readouterr().out
    assert "--mode" in _error(capsys, ["infill", str(rbm_run), "--input", str(path), "--mode", "--out",
                                        str(tmp_path / "f.npz")])


def test_evaluate_infill_reports_errors_baselines_and_a_labelled_nll(run, capsys):
    for pattern in ("random", "gap"):
        assert main(["evaluate", str(run), "--metric", "infill", "--hide", "0.1", "--hide-pattern", pattern,
                     "--samples", "4", "--draws", "2", "--json", "--threads", "1"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["hide_pattern"] == pattern and result["n_hidden_values"] > 0
        for key in ("infill", "baseline_linear", "baseline_nearest", "baseline_mean"):
            assert 0 <= result[f"{key}_expected_hamming_per_value"] <= 1
            assert 0 <= result[f"{key}_note_f1"] <= 1
        assert result["nll_hidden_kind"] == "estimate" and result["nll_hidden_bias"] == "upper"
        assert result["nll_hidden_per_value"] > 0 and result["infill_exact"] is False


def test_evaluate_infill_refuses_nothing_or_everything_hidden(run, capsys):
    for hide in ("0", "1", "1.5"):
        assert "--hide" in _error(capsys, ["evaluate", str(run), "--metric", "infill", "--hide", hide])


def test_evaluate_infill_says_when_there_is_no_likelihood(rbm_run, capsys):
    assert main(["evaluate", str(rbm_run), "--metric", "infill", "--hide", "0.05", "--draws", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["nll_hidden_per_value"] is None and "no likelihood" in result["nll_hidden_unavailable"]


# ----------------------------------------------------------------------------- baselines, hiding
def test_interpolation_and_copy_nearest_on_a_known_case():
    x = np.array([[0.0], [9.0], [9.0], [3.0], [9.0]])
    seen = np.array([[True], [False], [False], [True], [False]])
    assert interpolate(x, seen, np.zeros(1))[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 3.0]
    assert copy_nearest(x, seen, np.zeros(1))[:, 0].tolist() == [0.0, 0.0, 3.0, 3.0, 3.0]
    none = np.zeros((3, 1), dtype=bool)
    assert interpolate(x[:3], none, np.array([0.5]))[:, 0].tolist() == [0.5, 0.5, 0.5]


@pytest.mark.parametrize("pattern", ["random", "frames", "gap"])
def test_hiding_takes_the_fraction_asked_and_never_everything(pattern):
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(20, 10)
    x[0, 0] = NAN
    hidden = hide_values(x, 0.3, pattern, g)
    assert not hidden[0, 0] and 0 < int(hidden.sum()) < 199
    if pattern == "random":
        assert int(hidden.sum()) == 60
    else:
        rows = hidden.any(1).nonzero().flatten()
        assert len(rows) == 6
        if pattern == "gap":
            assert (rows.diff() == 1).all()
    assert not hide_values(torch.zeros(1, 3), 0.5, "gap", g).any()


def test_fit_and_evaluate_arrays_with_nan(tmp_path, capsys):
    rng = np.random.default_rng(0)
    seqs = {}
    for i in range(20):
        x = rng.standard_normal((int(rng.integers(5, 9)), 3)).astype(np.float32)
        x[rng.random(x.shape) < 0.2] = np.nan
        x[0, 0] = 0.5
        seqs[f"s{i}"] = x
    data = tmp_path / "x.npz"
    np.savez(data, **seqs)
    out = tmp_path / "run"
    assert main(["fit", "gru", "--data", "arrays", "--data-file", str(data), "--set", "missing=allow",
                 "--set", "hidden=4", "--steps", "3", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--samples", "4", "--json", "--split", "all"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "bound" and result["estimator"] == "smc-4" and result["bias"] == "lower"
    # a model without missing-value support refuses the same data in one sentence
    assert "missing values" in _error(capsys, ["fit", "rnn-rbm", "--data", "arrays", "--data-file", str(data),
                                                "--set", "missing=allow", "--steps", "1", "--out",
                                                str(tmp_path / "rbm")])
