"""RNN-RBM and RTRBM on JSB Chorales: AIS log-likelihood per frame next to the published rows.

Trains each model with probseq's own trainer (``probseq.train.fit``: Adam, minibatches of whole
chorales, early stopping on the validation score — the mean-field next-frame cross-entropy, see
:func:`probseq.models._rbm_common.prediction_loss`), then scores the test split with AIS:
every frame's RBM gets its own ``--ais-chains`` chains through ``--ais-steps`` intermediate
distributions, all frames of a minibatch at once. Reports the pooled NLL per frame (nats), its AIS
standard error, and a check of the AIS schedule: the same test chorales scored with 4x more
intermediate distributions (a large change means the shorter schedule is biased).

AIS caveat: ``E[log Z_hat] <= log Z``, so the estimated log-likelihood is optimistic in expectation;
the standard error covers chain noise only.

    python benchmarks/jsb_rbm_models.py --models rnn-rbm rtrbm --steps 3000 --threads 1 \\
        --ais-chains 100 --ais-steps 500 --out benchmarks/results/jsb_rbm_runs.jsonl
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

#: see benchmarks/RESULTS.md for the provenance (and its caveat) of these reference rows
REFERENCE_LL = {"rnn-rbm": -7.27, "rtrbm": -6.35}


def set_ais_steps(model, steps: int) -> None:
    """Point the model's default number of AIS intermediate distributions at ``steps``."""
    model.config["ais_steps"] = steps
    frame = getattr(model, "frame", None)
    if frame is not None and hasattr(frame, "ais_steps"):
        frame.ais_steps = steps


def main(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    dataset = load_dataset("jsb", data_file=args.data_file) if args.data_file else load_dataset("jsb")
    test = dataset.split("test")
    if args.no_valid:
        # no validation split: fit() keeps the final weights instead of the best-validation ones
        dataset.splits["valid"] = []
    rows = []
    for name in args.models:
        hyper = {"rnn-rbm": {"hidden": args.rnn_hidden, "rbm_hidden": args.rbm_hidden, "cd_steps": args.cd_steps,
                             "pretrain_steps": args.pretrain_steps},
                 "rtrbm": {"hidden": args.rbm_hidden, "cd_steps": args.cd_steps,
                           "pretrain_steps": args.pretrain_steps}}[name]
        torch.manual_seed(args.seed)
        model = build_model(name, dataset.spec, hyper)
        with tempfile.TemporaryDirectory() as run_dir:
            t = time.perf_counter()
            summary = fit(model, dataset, run_dir, steps=args.steps, seed=args.seed,
                          options={"lr": args.lr, "batch_size": args.batch_size, "patience": args.patience},
                          progress=False)
            train_s = time.perf_counter() - t
        model.eval()
        set_ais_steps(model, args.ais_steps)
        t = time.perf_counter()
        scores = score_split(model, test, estimator="ais", samples=args.ais_chains, batch_size=args.eval_batch,
                             generator=torch.Generator().manual_seed(args.seed + 10)).summary()
        eval_s = time.perf_counter() - t
        # schedule check on the first chorales: 4x the intermediate distributions
        subset = test[: args.check_sequences]
        short = score_split(model, subset, estimator="ais", samples=args.ais_chains, batch_size=args.eval_batch,
                            generator=torch.Generator().manual_seed(args.seed + 11)).summary()
        set_ais_steps(model, 4 * args.ais_steps)
        long = score_split(model, subset, estimator="ais", samples=args.ais_chains, batch_size=args.eval_batch,
                           generator=torch.Generator().manual_seed(args.seed + 12)).summary()
        row = {
            "model": name, "hyper": hyper, "lr": args.lr, "batch_size": args.batch_size,
            "weights": "final" if args.no_valid else "best validation",
            "steps": summary.steps, "best_step": summary.best_step, "best_valid": summary.best_valid,
            "stopped_early": summary.stopped_early, "train_s": round(train_s, 1),
            "test_nll_per_frame": scores["nll_per_frame"], "test_nll_per_frame_seq_avg": scores["nll_per_frame_seq_avg"],
            "stderr": scores["stderr"], "estimator": scores["estimator"], "kind": scores["kind"],
            "n_frames": scores["n_frames"], "eval_s": round(eval_s, 1),
            "schedule_check": {"sequences": len(subset), f"ais_steps_{args.ais_steps}": short["nll_per_frame"],
                               f"ais_steps_{4 * args.ais_steps}": long["nll_per_frame"],
                               "stderr_short": short["stderr"], "stderr_long": long["stderr"]},
            "reference_ll_per_frame": REFERENCE_LL[name], "threads": args.threads,
        }
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["rnn-rbm", "rtrbm"])
    p.add_argument("--data-file", default=None)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--no-valid", action="store_true",
                   help="train without validation: score the final weights, not the best-validation ones")
    p.add_argument("--rnn-hidden", type=int, default=100)
    p.add_argument("--rbm-hidden", type=int, default=150)
    p.add_argument("--cd-steps", type=int, default=15)
    p.add_argument("--pretrain-steps", type=int, default=500)
    p.add_argument("--ais-chains", type=int, default=100)
    p.add_argument("--ais-steps", type=int, default=500)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--check-sequences", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
