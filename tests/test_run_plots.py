"""``probseq plot``: learning curves from log.jsonl and per-sequence NLL comparisons."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probseq.cli import main
from probseq.errors import UserError
from probseq.evaluate.run_plots import plot_runs, read_training_log

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_log(run, records):
    run.mkdir(parents=True, exist_ok=True)
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_read_training_log_keeps_the_last_record_of_a_step_after_a_resume(tmp_path):
    _write_log(tmp_path / "run", [
        {"step": 0, "event": "start", "options": {}},
        {"step": 10, "event": "train", "loss": 3.0},
        {"step": 20, "event": "train", "loss": 2.5},
        {"step": 20, "event": "valid", "valid_loss": 2.9, "elapsed_s": 1.0},
        {"step": 30, "event": "train", "loss": 9.9},           # lost: the run was killed here
        {"step": 20, "event": "resume", "options": {}},
        {"step": 30, "event": "train", "loss": 2.2},
        {"step": 40, "event": "valid", "valid_loss": 2.7, "elapsed_s": 2.0},
        {"step": 40, "event": "stop", "reason": "done"},
    ])
    log = read_training_log(tmp_path / "run")
    assert log.train_steps == [10, 20, 30] and log.train_loss == [3.0, 2.5, 2.2]
    assert log.valid_steps == [20, 40] and log.valid_loss == [2.9, 2.7]


def test_read_training_log_errors_are_one_sentence(tmp_path):
    with pytest.raises(UserError, match="has no log.jsonl"):
        read_training_log(tmp_path)


def test_read_training_log_skips_unreadable_lines_and_says_which(tmp_path):
    """A line cut short by a kill, bytes that are not UTF-8, an array, no step, a text loss (issue 20)."""
    (tmp_path / "log.jsonl").write_bytes(
        b'{"step": 1, "event": "train", "loss": 2.0}\nnot json\n[1, 2]\n{"event": "train", "loss": 1}\n'
        b'{"step": 3, "event": "train", "loss": "low"}\n\xff\xfe\n{"step": 4, "event": "train", "loss": 1.5}\n'
        b'{"step": 4, "event": "valid", "valid_loss": 1.7}\n{"step": 5, "event": "tra')
    log = read_training_log(tmp_path)
    assert log.train_steps == [1, 4] and log.train_loss == [2.0, 1.5] and log.valid_steps == [4]
    assert log.skipped == ["line 2 is not JSON", "line 3 is not a JSON object", "line 4 has no integer step",
                           "line 6 is not UTF-8 text", "line 9 is not JSON",
                           "line 5 has a loss that is not a number"]


@pytest.mark.parametrize("suffix,magic", [(".png", b"\x89PNG"), (".svg", b"<?xml")])
def test_plot_runs_writes_the_format_the_extension_names(tmp_path, suffix, magic):
    _write_log(tmp_path / "a", [{"step": s, "event": "train", "loss": 1 / s} for s in range(1, 20)])
    out = plot_runs(tmp_path / f"curves{suffix}", [("a", read_training_log(tmp_path / "a"))],
                    per_sequence=[("a", np.array([1.0, 2.0, 3.0]), "exact exact"),
                                  ("b", np.array([1.5, 1.0, 2.0]), "bound elbo")])
    assert out.read_bytes().startswith(magic)
    if suffix == ".svg":
        text = out.read_text()
        assert "lower on 2/3" in text and "bound elbo" in text   # the legend says which kind


def test_plot_refuses_unknown_formats_and_mismatched_splits(tmp_path):
    _write_log(tmp_path / "a", [])
    logs = [("a", read_training_log(tmp_path / "a"))]
    with pytest.raises(UserError, match="ending in .png, .svg, .pdf"):
        plot_runs(tmp_path / "x.jpg", logs)
    with pytest.raises(UserError, match="on the same split"):
        plot_runs(tmp_path / "x.png", logs, per_sequence=[("a", np.zeros(3), "exact"), ("b", np.zeros(4), "exact")])


def test_cli_plot_two_runs_with_per_sequence_comparison(tmp_path, capsys):
    for model, steps in (("gru", 8), ("independent", 8)):
        assert main(["fit", model, "--data", "jsb", "--steps", str(steps), "--set", "eval_every=4",
                     "--set", "log_every=2", *(["--set", "hidden=8"] if model == "gru" else []),
                     "--out", str(tmp_path / model), "--quiet"]) == 0
    out = tmp_path / "runs.png"
    assert main(["plot", str(tmp_path / "gru"), str(tmp_path / "independent"), "--out", str(out),
                 "--per-sequence", "--split", "valid"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG") and "wrote" in capsys.readouterr().out
    assert main(["plot", str(tmp_path / "gru"), "--out", str(tmp_path / "x.gif")]) == 2
    assert "ending in .png" in capsys.readouterr().err
