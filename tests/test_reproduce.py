"""probseq reproduce: the protocol table, and tiny runs of protocols end to end through the CLI."""

from __future__ import annotations

import json

import pytest

from probseq.cli import main
from probseq.errors import UserError
from probseq.reproduce import PROTOCOLS, protocol

_DEFAULT_ARGS = {"bl2012-polyphonic": ["jsb", "rnn-nade"]}


@pytest.mark.parametrize("name", sorted(PROTOCOLS))
def test_every_protocol_names_a_model_data_a_convention_and_a_sourced_figure(name):
    proto = protocol(name, _DEFAULT_ARGS.get(name, []))
    assert proto.model and proto.data and len(proto.convention) > 40
    for ev in proto.evaluations:
        assert (ev.published is not None and ev.published.source) or ev.goal is not None


def test_the_thesis_bouncing_balls_recipe_is_written_down_exactly():
    proto = protocol("sutskever-bouncing-balls")
    s = proto.settings
    assert proto.steps == 100_000 and s["hidden"] == 400 and s["batch_size"] == 1 and s["fresh"]
    assert s["cd_steps"] == 10 and s["cd_steps_late"] == 25 and s["cd_switch"] * proto.steps == 1000
    assert s["lr"] == 0.01 and s["lr_schedule"] == "linear" and s["pretrain_cd"] == 5 and s["n_train"] == 30


def test_bad_protocol_arguments_are_user_errors(capsys):
    with pytest.raises(UserError, match="two arguments"):
        protocol("bl2012-polyphonic", ["jsb"])
    with pytest.raises(UserError, match="unknown model"):
        protocol("bl2012-polyphonic", ["jsb", "gru"])
    assert main(["reproduce", "no-such-protocol", "--out", "x"]) == 2
    assert "unknown protocol" in capsys.readouterr().err


def test_a_tiny_bl2012_run_trains_scores_and_writes_its_result(tmp_path, capsys, one_thread):
    out = tmp_path / "rep"
    assert main(["reproduce", "bl2012-polyphonic", "jsb", "rnn-nade", "--steps", "2", "--quiet",
                 "--set", "hidden=6", "--set", "nade_hidden=3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "published 5.19" in printed and "PARTIAL" in printed
    result = json.loads((out / "result.json").read_text())
    row = result["results"][0]
    assert row["kind"] == "exact" and row["ours"] == pytest.approx(row["evaluate"]["nll_per_frame"])
    assert row["gap"] == pytest.approx(row["ours"] - 5.19) and result["partial"]
    assert result["commands"][0].startswith("probseq fit rnn-nade --data jsb")
    # --run scores an existing run without training again
    again = tmp_path / "again"
    assert main(["reproduce", "bl2012-polyphonic", "jsb", "rnn-nade", "--run", str(out / "run"),
                 "--out", str(again)]) == 0
    rescored = json.loads((again / "result.json").read_text())
    assert rescored["results"][0]["ours"] == pytest.approx(row["ours"]) and rescored["train_wall_s"] is None


def test_a_tiny_thesis_bouncing_balls_run_uses_fresh_sequences(tmp_path, capsys, one_thread):
    out = tmp_path / "bb"
    assert main(["reproduce", "sutskever-bouncing-balls", "--steps", "3", "--quiet", "--out", str(out),
                 "--set", "hidden=5", "--set", "size=6", "--set", "n_frames=6", "--set", "n_valid=2",
                 "--set", "n_test=2", "--set", "pretrain_steps=2", "--set", "predict_chains=2",
                 "--set", "predict_steps=2"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["results"][0]["published"]["value"] == 0.007
    run = json.loads((out / "run" / "run.json").read_text())
    assert run["training"]["fresh"] is True and run["training"]["lr_schedule"] == "linear"
    assert run["dataset"]["options"]["n_train"] == 30


def test_the_bouncing_balls_benchmark_script_runs_through_probseq_reproduce(tmp_path, one_thread):
    """``benchmarks/bouncing_balls.py`` stays runnable (tiny sizes; the numbers are meaningless)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bouncing_balls.py"
    spec = importlib.util.spec_from_file_location("bouncing_balls_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny = ["hidden=4", "size=5", "n_frames=5", "n_valid=2", "n_test=2", "pretrain_steps=1",
            "predict_chains=2", "predict_steps=2"]
    args = module.parse_args(["--model", "rtrbm", "--steps", "2", "--work", str(tmp_path / "w"),
                              "--out", str(tmp_path / "r.json")] + sum((["--set", s] for s in tiny), []))
    result = module.main(args)
    assert result["model"] == "rtrbm" and result["results"][0]["published"]["value"] == 0.007
    assert json.loads((tmp_path / "r.json").read_text())["partial"] is True
