"""The dialogue models through the command line: fit, evaluate, metric, sample (prime and whole
dialogues), reload with the vocabulary. Runs on the embedded ``dialogue-sample`` (no shared data)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from probseq.cli import main
from probseq.data.registry import load_dataset
from probseq.text import Vocabulary
from probseq.train.checkpoint import load_run

TINY = ["embedding=8", "encoder_hidden=8", "context_hidden=8", "decoder_hidden=8", "vocab_size=300",
        "max_turn_length=10", "max_dialogues=24", "max_eval_dialogues=6", "batch_size=8"]


def _fit(tmp_path, name, extra=()):
    out = tmp_path / name
    sets = [a for s in TINY + list(extra) for a in ("--set", s)]
    assert main(["fit", name, "--data", "dialogue-sample", "--steps", "3", "--quiet", "--threads", "1",
                 *sets, "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dialogue_runs")
    return {"hred": _fit(tmp, "hred"), "vhred": _fit(tmp, "vhred", ["latent=3"])}


@pytest.mark.parametrize("name, kind, estimator", [("hred", "exact", "exact"), ("vhred", "bound", "elbo"),
                                                   ("vhred", "bound", "iwae-4"), ("vhred", "bound", "is-4")])
def test_evaluate_json_labels_the_kind(runs, capsys, name, kind, estimator):
    capsys.readouterr()
    args = ["evaluate", str(runs[name]), "--json"]
    if estimator not in ("exact", "elbo"):
        args += ["--estimator", estimator.split("-")[0], "--samples", "4"]
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["kind"], result["estimator"]) == (kind, estimator)
    assert result["n_sequences"] == 6 and result["nll_per_frame"] > 0
    assert (result["stderr"] is None) == (not estimator.startswith("is"))


def test_reloaded_run_keeps_the_dataset_vocabulary(runs):
    data = load_dataset("dialogue-sample", vocab_size=300, max_turn_length=10, max_dialogues=24)
    for run in runs.values():
        model, _ = load_run(run)
        assert model.vocabulary == Vocabulary(data.meta["vocab"])


def test_kl_metric(runs, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(runs["vhred"]), "--metric", "kl", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kl_per_turn"] > 0 and result["n_turns"] > 0


@pytest.mark.parametrize("name", ["hred", "vhred"])
def test_sample_answers_a_context_file(runs, tmp_path, capsys, name):
    context = tmp_path / "context.txt"
    context.write_text("Do you like the Beatles?\n\nYes, they are my favourite band.\n")
    capsys.readouterr()
    assert main(["sample", str(runs[name]), "--prime", str(context), "-n", "2", "--max-length", "6",
                 "--seed", "3"]) == 0
    text = capsys.readouterr().out
    assert "A: Do you like the Beatles?" in text and "B: Yes, they are my favourite band." in text
    assert "sampled responses" in text and "beam search" in text
    assert text.count("  1. A: ") == 2 and text.count("  2. A: ") == 2
    again = main(["sample", str(runs[name]), "--prime", str(context), "-n", "2", "--max-length", "6",
                  "--seed", "3"])
    assert again == 0 and capsys.readouterr().out == text          # seeded: reproducible


@pytest.mark.parametrize("ext", [".txt", ".jsonl"])
def test_sample_whole_dialogues_to_a_file(runs, tmp_path, ext):
    out = tmp_path / f"dialogues{ext}"
    assert main(["sample", str(runs["vhred"]), "-n", "2", "--length", "3", "--out", str(out)]) == 0
    text = out.read_text()
    if ext == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines()]
        assert len(rows) == 2 and all(len(r["turns"]) == 3 for r in rows)
    else:
        assert text.count("A: ") == 4 and text.count("B: ") == 2


def test_user_errors(runs, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["sample", str(runs["hred"]), "--prime", str(empty)]) == 2
    assert main(["sample", str(runs["hred"]), "-n", "2", "--out", str(tmp_path / "x.txt")]) == 2
    assert main(["sample", str(runs["hred"]), "--length", "2", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["evaluate", str(runs["hred"]), "--estimator", "iwae"]) == 2
    err = capsys.readouterr().err
    assert "holds no turns" in err and "--length" in err and "cannot hold dialogues" in err
    assert "does not support estimator" in err and "Traceback" not in err


def test_benchmark_script_runs_with_tiny_arguments(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vhred_dialogue.py"
    spec = importlib.util.spec_from_file_location("vhred_dialogue", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = bench.parse_args(["--data", "dialogue-sample", "--steps", "2", "--train-dialogues", "16",
                             "--eval-dialogues", "4", "--vocab", "200", "--embedding", "6", "--hidden", "6",
                             "--latent", "2", "--eval-every", "2", "--elbo-samples", "2", "--iwae-samples", "2",
                             "--contexts", "1", "--out", str(tmp_path)])
    assert bench.main(args) == 0
    table = capsys.readouterr().out
    assert "| hred | exact (exact) |" in table and "| vhred | iwae-2 (bound) |" in table
    result = json.loads((tmp_path / "results_vhred.json").read_text())
    assert result["kl"]["kl_per_turn"] > 0 and len(result["responses"][0]["sampled"]) == 3
