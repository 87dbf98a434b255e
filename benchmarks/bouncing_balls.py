"""Bouncing balls (Sutskever 2013, §3.10-3.11; Sutskever, Hinton & Taylor 2008): next-frame error per pixel.

A thin wrapper over ``probseq reproduce sutskever-bouncing-balls [rtrbm|trbm]``, i.e. over
``probseq fit`` with the thesis recipe written down in :mod:`probseq.reproduce` — 30x30 videos of
3 balls, 400 hidden units, 100,000 single-sequence updates on freshly generated videos
(``fresh=true``), CD-10 for the first 1,000 updates then CD-25, learning rate 0.01 decayed linearly to
0 (SGD, momentum 0.9), the gradient divided by the sequence length (the loss is per frame), ``W``
initialised by static CD-5 on 30 sequences — then ``probseq evaluate RUN --metric mse --json``,
which prints the copy-last-frame and linear-extrapolation baselines beside the model's error.
Published (thesis §3.11): RTRBM 0.007, TRBM 0.04 squared error per pixel.

The full protocol is 100,000 CD-25 updates; on a CPU ``--minutes`` bounds it (the result is then
marked partial, and the linear decay has not reached 0):

    python benchmarks/bouncing_balls.py --model rtrbm --minutes 30 --threads 1 --out result.json
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
    p.add_argument("--model", default="rtrbm", choices=("rtrbm", "trbm"))
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: the full protocol)")
    p.add_argument("--steps", type=int, default=None, help="replace the 100,000 updates (partial)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the recipe (the result is then marked partial)")
    p.add_argument("--device", default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="directory for the run (default: a temporary one)")
    p.add_argument("--out", default=None, help="JSON result file")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="bouncing_balls_"))
    result = reproduce("sutskever-bouncing-balls", [args.model],
                       run_command=run_in_process, out=work, minutes=args.minutes,
                       steps=args.steps, sets=args.set, device=args.device, seed=args.seed,
                       threads=args.threads)
    print(format_result(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main(parse_args())
