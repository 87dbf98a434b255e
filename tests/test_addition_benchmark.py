"""benchmarks/addition_problem.py runs end to end with tiny arguments (so the script never rots)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "addition_problem.py"


def _load():
    spec = importlib.util.spec_from_file_location("addition_problem", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("optimizer", ["nag", "hf"])
def test_addition_benchmark_runs_with_tiny_arguments(tmp_path, optimizer, one_thread):
    bench = _load()
    results = tmp_path / "rows.jsonl"
    rows = bench.main(bench.parse_args([
        "--optimizer", optimizer, "--length", "8", "--seeds", "0", "--hidden", "6",
        "--steps", "2", "--eval-every", "2", "--n-valid", "8", "--n-test", "8",
        "--batch-size", "8", "--cg-iters", "5", "--quiet", "--out", str(tmp_path / "runs"),
        "--results", str(results)]))
    assert len(rows) == 1 and 0.0 <= rows[0]["test_zero_one_loss"] <= 1.0
    assert rows[0]["command"].startswith("probseq fit rnn-regression --data addition")
    assert json.loads(results.read_text().splitlines()[0])["seed"] == 0
