"""Train recurrent baselines on JSB Chorales to convergence and report exact test NLL per frame.

Published reference (Boulanger-Lewandowski, Bengio & Vincent 2012, Table 1): a plain RNN with
factorial Bernoulli output scores 8.71 nats per frame on JSB (log-likelihood -8.71).

Convergence = early stopping on the validation split (evaluated once per epoch, patience in
epochs). The best-validation weights are scored on the test split.

Usage::

    python benchmarks/gru_jsb.py --models gru --hidden 128 --max-steps 4000 --threads 1
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from probseq.data.registry import load_dataset
from probseq.evaluate.scoring import score_split
from probseq.models.registry import build_model
from probseq import fit  # probseq.fit, the library trainer


def main(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    data = load_dataset("jsb", data_file=args.data_file)
    results = []
    for name in args.models:
        torch.manual_seed(args.seed)
        model = build_model(name, data.spec, {"hidden": args.hidden, "dropout": 0.0})
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as run_dir:
            summary = fit(model, data, run_dir, steps=args.max_steps, seed=args.seed,
                          options={"lr": args.lr, "batch_size": args.batch_size,
                                   "patience": args.patience, "checkpoint_every": 10 ** 9},
                          progress=not args.quiet)
        scores = score_split(model, data.split("test")).summary()
        row = {"model": name, "hidden": args.hidden, "lr": args.lr, "steps": summary.steps,
               "best_step": summary.best_step, "stopped_early": summary.stopped_early,
               "valid_nll_per_frame": summary.best_valid, "test_nll_per_frame": scores["nll_per_frame"],
               "test_nll_per_frame_seq_avg": scores["nll_per_frame_seq_avg"], "kind": scores["kind"],
               "wall_s": round(time.perf_counter() - started, 1), "threads": args.threads}
        print(json.dumps(row), flush=True)
        results.append(row)
    return results


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["gru"])
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-steps", type=int, default=4000)
    p.add_argument("--patience", type=int, default=15, help="epochs without validation improvement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-file", help="JSB_Chorales.mat (default: the embedded copy)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
