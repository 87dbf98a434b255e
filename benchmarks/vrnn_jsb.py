"""VRNN on JSB Chorales: test ELBO and IWAE-K per frame against the Deep Markov Model, with probseq's trainer.

A thin wrapper over ``probseq reproduce dmm-jsb``, i.e. over

    probseq fit vrnn --data jsb [--minutes M] --out RUN
    probseq evaluate RUN --split test --json --estimator elbo
    probseq evaluate RUN --split test --json --estimator iwae --samples K

with the VRNN's default recipe (``VRNN.training_defaults``; ``docs/training.md``). Published
(NLL per frame, nats, lower is better): Deep Markov Model (Krishnan, Shalit & Sontag 2017, Table 2)
ELBO 6.926, importance-sampled 6.388; STORN (Bayer & Osendorfer 2014) 6.91.

    python benchmarks/vrnn_jsb.py --minutes 30 --samples 500 --threads 1 --out result.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from probseq.cli import run_in_process
from probseq.reproduce import format_result, reproduce


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: until "
                                                               "validation stops improving)")
    p.add_argument("--steps", type=int, default=None, help="training steps instead (tests)")
    p.add_argument("--samples", type=int, default=100, help="draws per test sequence for IWAE-K")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the recipe (the result is then marked partial)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="directory for the run (default: a temporary one)")
    p.add_argument("--out", default=None, help="JSON result file")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="vrnn_jsb_"))
    result = reproduce("dmm-jsb",
                       run_command=run_in_process, out=work, minutes=args.minutes, steps=args.steps,
                       sets=args.set, seed=args.seed, threads=args.threads, samples=args.samples)
    print(format_result(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main(parse_args())
