"""What `probseq evaluate --json` and `probseq compare` say about each number (issue 12): its kind,
which way it can err, and whether the length term is included; compare refuses mixed length
conventions unless asked."""

from __future__ import annotations

import json

import pytest

from probseq.cli import main

FAST = ["--steps", "2", "--quiet", "--set", "eval_every=2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("likelihood_runs")
    specs = {"rtrbm": ["rtrbm", "--set", "hidden=4", "--set", "ais_steps=5", "--set", "valid_chains=2",
                       "--set", "valid_ais_steps=2"],
             "halting": ["gru", "--set", "hidden=4", "--set", "length=halting"],
             "none": ["gru", "--set", "hidden=4", "--set", "length=none"]}
    for name, args in specs.items():
        assert main(["fit", *args, "--data", "jsb", *FAST, "--out", str(root / name)]) == 0
    return root


def _evaluate(capsys, run, *extra):
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "valid", "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_ais_and_raise_say_which_way_they_err(runs, capsys):
    ais = _evaluate(capsys, runs / "rtrbm", "--estimator", "ais", "--samples", "2")
    low = _evaluate(capsys, runs / "rtrbm", "--estimator", "raise", "--samples", "2")
    assert (ais["kind"], ais["bias"], ais["nll_vs_true"]) == ("estimate", "upper", "≤")
    assert (low["kind"], low["bias"], low["nll_vs_true"]) == ("estimate", "lower", "≥")
    assert ais["estimator"] == "ais-2x5" and low["estimator"] == "raise-2x5"
    assert "upward" in ais["what"] and "downward" in low["what"]
    assert ais["length_included"] is False and low["length_included"] is False
    for key in ("nll_per_frame", "nll_per_frame_seq_avg", "stderr", "n_frames", "n_sequences"):
        assert key in ais and key in low                # the keys users already read still work


def test_exact_models_say_whether_the_length_term_is_included(runs, capsys):
    halting = _evaluate(capsys, runs / "halting")
    none = _evaluate(capsys, runs / "none")
    assert (halting["kind"], halting["bias"], halting["nll_vs_true"]) == ("exact", "none", "=")
    assert halting["length_included"] is True and none["length_included"] is False


def test_compare_refuses_mixed_length_conventions_unless_asked(runs, capsys):
    capsys.readouterr()
    code = main(["compare", str(runs / "halting"), str(runs / "none"), "--split", "valid"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "different length conventions" in err and "--allow-mixed-length" in err
    assert str(runs / "halting") in err and "log p(x, T)" in err and "log p(x | T)" in err
    assert main(["compare", str(runs / "halting"), str(runs / "none"), "--split", "valid",
                 "--allow-mixed-length", "--json"]) == 0
    rows = {r["run"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[str(runs / "halting")]["length_included"] is True
    assert rows[str(runs / "none")]["length_included"] is False
    assert all(r["mixed_length"] for r in rows.values())
    assert main(["compare", str(runs / "halting"), str(runs / "none"), "--split", "valid",
                 "--allow-mixed-length"]) == 0
    table = capsys.readouterr().out
    assert "log p(x,T)" in table and "log p(x|T)" in table and "MIXED LENGTH" in table and "vs true" in table
