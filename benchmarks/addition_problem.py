"""The addition problem (Hochreiter & Schmidhuber 1997) with NAG or Hessian-free, through `probseq`.

Published references:

* Sutskever (2013), Table 7.3 / Sutskever, Martens, Dahl & Hinton (ICML 2013), Table 3: a tanh RNN
  with 100 hidden units, echo-state initialisation and Nesterov momentum reaches a zero-one loss
  of 0.011 on the addition problem with T = 80, averaged over 10 random seeds.
* Martens & Sutskever (2011) / Sutskever (2013) §4.3: Hessian-free with structural damping solves
  the addition problem at T = 100 (a run succeeds when the test error falls below the criterion;
  here the criterion is Hochreiter & Schmidhuber's: an answer is correct when its absolute error
  is below 0.04, and the zero-one loss is the fraction of test answers that are not).

Each run is `probseq fit rnn-regression --data addition ...` (new training sequences every step,
``fresh=true``; weights chosen on the validation split) followed by
`probseq evaluate RUN --metric zero-one --json` on the test split; one JSON line per seed is
printed and appended to ``--results``.

Usage::

    python benchmarks/addition_problem.py --optimizer nag --length 80 --seeds 0 --minutes 50 \\
        --lr 1e-3 --momentum 0.99 --out runs/addition
    python benchmarks/addition_problem.py --optimizer hf --length 100 --seeds 0 --minutes 50 \\
        --out runs/addition
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

from probseq.cli import main as probseq_main


def _command(args, seed: int, run: Path) -> list[str]:
    sets = {"length": args.length, "n_train": 100, "n_valid": args.n_valid,
            "n_test": args.n_test, "hidden": args.hidden, "optimizer": args.optimizer,
            "init": args.init, "fresh": "true", "batch_size": args.batch_size,
            "eval_every": args.eval_every, "patience": 0, "decay_patience": 0,
            "checkpoint_every": args.eval_every}
    if args.optimizer == "nag":
        sets.update({"lr": args.lr, "momentum": args.momentum, "momentum_schedule": args.schedule,
                     "clip": args.clip})
    else:
        sets.update({"hf_cg_iters": args.cg_iters, "hf_damping": args.damping,
                     "hf_structural_damping": args.structural_damping,
                     "hf_curvature_batch": args.curvature_batch})
    cmd = ["fit", "rnn-regression", "--data", "addition", "--seed", str(seed), "--out", str(run),
           "--threads", str(args.threads)]
    if args.steps:
        cmd += ["--steps", str(args.steps)]
    if args.minutes:
        cmd += ["--minutes", str(args.minutes)]
    for key, value in sets.items():
        cmd += ["--set", f"{key}={value}"]
    if args.quiet:
        cmd.append("--quiet")
    return cmd


def main(args) -> list[dict]:
    out = Path(args.out)
    rows = []
    for seed in args.seeds:
        run = out / f"{args.optimizer}-T{args.length}-seed{seed}"
        cmd = _command(args, seed, run)
        started = time.perf_counter()
        resume = (run / "run.json").exists()
        if probseq_main(cmd + (["--resume"] if resume else [])) != 0:
            raise SystemExit(f"probseq {' '.join(cmd)} failed")
        wall = time.perf_counter() - started
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            probseq_main(["evaluate", str(run), "--split", "test", "--metric", "zero-one", "--json"])
        result = json.loads(buffer.getvalue().strip().splitlines()[-1])
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        end = [e for e in log if e.get("event") == "end"]
        row = {"optimizer": args.optimizer, "length": args.length, "seed": seed,
               "test_zero_one_loss": result["zero_one_loss"], "test_mse": result["target_mse"],
               "steps": max(e.get("step", 0) for e in log),
               "best_step": end[-1].get("best_step") if end else None,
               "best_valid_loss": end[-1].get("best_valid") if end else None,
               "wall_s": round(wall, 1), "threads": args.threads,
               "command": "probseq " + " ".join(cmd)}
        print(json.dumps(row), flush=True)
        if args.results:
            with open(args.results, "a") as f:
                f.write(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--optimizer", choices=["nag", "hf"], default="nag")
    p.add_argument("--length", type=int, default=80, help="T, the sequence length")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--hidden", type=int, default=100)
    p.add_argument("--init", default="echo_state")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--steps", type=int, default=0, help="training steps (0: only the time budget)")
    p.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget per seed")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--n-valid", type=int, default=1000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--lr", type=float, default=1e-3, help="nag: learning rate")
    p.add_argument("--momentum", type=float, default=0.99, help="nag: mu_max")
    p.add_argument("--schedule", default="sutskever", help="nag: constant | sutskever")
    p.add_argument("--clip", type=float, default=0.0, help="nag: gradient-norm clip (0: none)")
    p.add_argument("--cg-iters", type=int, default=100, help="hf: CG iterations per step")
    p.add_argument("--damping", type=float, default=1.0, help="hf: initial lambda")
    p.add_argument("--structural-damping", type=float, default=1 / 30, help="hf: mu")
    p.add_argument("--curvature-batch", type=int, default=0, help="hf: 0 = the whole batch")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/addition")
    p.add_argument("--results", default="", help="append the JSON rows to this file")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
