"""Train the CTC recogniser (``probseq fit ctc``) on FSDD digit strings and report the test label error rate.

The same steps as the command line::

    probseq fit ctc --data fsdd --data-dir DIR --steps N --set ... --out RUN --threads 1
    probseq evaluate RUN --metric ler --json        # and the default NLL per label

Prints one JSON line with the test label error rate (best path and beam search), the test NLL per
label (exact), the training wall time and the configuration. Goal of issue 6: test LER < 3%.

Example (the run recorded in benchmarks/RESULTS.md)::

    PROBSEQ_DATA=../shared/data python benchmarks/ctc_fsdd.py --steps 2400 \\
        --threads 1 --out runs/ctc_fsdd
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from probseq.data.home import data_home
from probseq.data.registry import load_dataset
from probseq.evaluate.scoring import score_split
from probseq.models.registry import build_model
from probseq.train.checkpoint import load_run, write_run_info
from probseq.train.fit import fit, training_options

DEFAULT_HYPER = {"stride": 3, "hidden": 96, "conv_channels": 96, "layers": 2, "dropout": 0.1}


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    dataset = load_dataset("fsdd", data_dir=args.data_dir, train_passes=args.train_passes, seed=args.seed)
    hyper = dict(DEFAULT_HYPER)
    hyper.update(dict(kv.split("=", 1) for kv in args.set))
    torch.manual_seed(args.seed)
    model = build_model("ctc", dataset.spec, hyper)
    opts = training_options(model, {"lr": args.lr, "batch_size": args.batch_size,
                                    "eval_every": args.eval_every})
    out = Path(args.out)
    if out.exists() and args.overwrite:
        shutil.rmtree(out)
    write_run_info(out, {
        "model": "ctc", "spec": dataset.spec.to_dict(), "hyperparameters": model.config,
        "training": opts, "steps": args.steps, "seed": args.seed,
        "dataset": {"name": "fsdd", "data_file": None, "data_dir": str(Path(args.data_dir).resolve()),
                    "options": {"train_passes": args.train_passes, "seed": args.seed}},
        "meta": dataset.meta, "version": "benchmark",
    })
    summary = fit(model, dataset, out, steps=args.steps, seed=args.seed, options=opts,
                  progress=not args.quiet)
    train_s = time.perf_counter() - started
    model, _ = load_run(out)          # the best validated weights, reloaded as `probseq evaluate` does
    model.eval()
    test = dataset.split("test")
    t0 = time.perf_counter()
    ler = model.evaluate_metric("ler", test, generator=torch.Generator().manual_seed(0), batch_size=64)
    nll = score_split(model, test, batch_size=64).summary()
    result = {
        "benchmark": "ctc_fsdd", "split": "test", **ler,
        "nll_per_label": nll["nll_per_frame"], "nll_kind": nll["kind"],
        "steps": summary.steps, "epochs": round(summary.epochs, 2),
        "best_valid_nll_per_label": summary.best_valid, "best_step": summary.best_step,
        "train_wall_s": round(train_s, 1), "eval_wall_s": round(time.perf_counter() - t0, 1),
        "threads": args.threads, "hyper": model.config, "training": opts,
        "n_train": len(dataset.split("train")), "n_test": len(test),
    }
    print(json.dumps(result))
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=str(data_home() / "fsdd" / "recordings"))
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--train-passes", type=int, default=6)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model hyperparameter (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/ctc_fsdd")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
