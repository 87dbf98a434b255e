"""The CTC benchmark scripts run end to end with tiny arguments, so they never rot."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ctc_speed_smoke():
    bench = _load("ctc_speed")
    threads = torch.get_num_threads()
    try:
        row = bench.run_case(50, 4, 7, 10, threads=1, repeats=1)
    finally:
        torch.set_num_threads(threads)
    assert row["ratio_median"] > 0 and row["loss_abs_diff"] < 1e-3 and row["grad_max_abs_diff"] < 1e-4


def test_ctc_fsdd_smoke(tmp_path):
    from test_ctc_fsdd import write_fake_fsdd

    folder = write_fake_fsdd(tmp_path / "rec", speakers=("ann",), takes=range(0, 11), digits=(1, 2))
    bench = _load("ctc_fsdd")
    threads = torch.get_num_threads()
    try:
        result = bench.main(bench.parse_args([
            "--data-dir", str(folder), "--steps", "2", "--eval-every", "2", "--train-passes", "1",
            "--out", str(tmp_path / "run"), "--quiet", "--set", "hidden=8", "--set", "conv_channels=8"]))
    finally:
        torch.set_num_threads(threads)
    assert result["steps"] == 2 and result["nll_kind"] == "exact"
    assert 0 <= result["ler_best_path"] and result["n_labels"] > 0
