"""Forward + backward speed of ``probseq.ctc_loss(impl="dp")`` against torch's native kernel.

Both run in the same process on the same inputs, interleaved repeat by repeat (so machine load
hits both alike): ``loss = ctc_loss(logits.log_softmax(-1), ...)`` then ``loss.backward()``,
float32, full-length inputs and targets of random labels. One JSON line per (case, threads) with
the median and minimum times in milliseconds and the ratio dp / native (< 1: dp is faster); the
issue's goal is ratio <= 1 on 1 thread and <= 1.5 on 2 threads.

    python benchmarks/ctc_speed.py                      # both cases, 1 and 2 threads
    python benchmarks/ctc_speed.py --repeats 3 --quick  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch

from probseq.ctc import ctc_loss

CASES = [  # (T, B, C, S)
    (400, 32, 60, 80),
    (1000, 8, 100, 200),
]


def _step(logits, targets, lengths, target_lengths, impl):
    x = logits.detach().requires_grad_(True)
    start = time.perf_counter()
    loss = ctc_loss(x.log_softmax(-1), targets, lengths, target_lengths, impl=impl)
    loss.backward()
    return time.perf_counter() - start, float(loss.detach()), x.grad


def run_case(steps, batch, classes, labels, threads, repeats, seed=0) -> dict:
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(steps, batch, classes, generator=g)
    targets = torch.randint(1, classes, (batch, labels), generator=g)
    lengths = torch.full((batch,), steps, dtype=torch.long)
    target_lengths = torch.full((batch,), labels, dtype=torch.long)
    for impl in ("native", "dp"):                      # warm-up
        _step(logits, targets, lengths, target_lengths, impl)
    times = {"native": [], "dp": []}
    for r in range(repeats):
        order = ("native", "dp") if r % 2 == 0 else ("dp", "native")
        for impl in order:
            t, value, grad = _step(logits, targets, lengths, target_lengths, impl)
            times[impl].append(t)
    _, v_native, g_native = _step(logits, targets, lengths, target_lengths, "native")
    _, v_dp, g_dp = _step(logits, targets, lengths, target_lengths, "dp")
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    low = {k: min(v) * 1000 for k, v in times.items()}
    return {
        "T": steps, "B": batch, "C": classes, "S": labels, "threads": threads, "dtype": "float32",
        "repeats": repeats,
        "native_ms_median": round(med["native"], 2), "dp_ms_median": round(med["dp"], 2),
        "native_ms_min": round(low["native"], 2), "dp_ms_min": round(low["dp"], 2),
        "ratio_median": round(med["dp"] / med["native"], 3),
        "ratio_min": round(low["dp"] / low["native"], 3),
        "loss_abs_diff": abs(v_native - v_dp),
        "grad_max_abs_diff": float((g_native - g_dp).abs().max()),
        "loadavg_1min": os.getloadavg()[0],
    }


def main(args: argparse.Namespace) -> list[dict]:
    results = []
    for threads in args.threads:
        for steps, batch, classes, labels in CASES[: 1 if args.quick else None]:
            row = run_case(steps, batch, classes, labels, threads, args.repeats)
            print(json.dumps(row), flush=True)
            results.append(row)
    return results


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--quick", action="store_true", help="first case only")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
