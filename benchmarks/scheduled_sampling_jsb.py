"""Teacher forcing vs scheduled sampling on JSB: exact test NLL and how far long samples drift.

The runs are trained with ``probseq fit`` (see ``benchmarks/RESULTS.md`` for the commands); this
script scores each on the test split (teacher-forced exact NLL per frame, the same for every
training objective) and draws ``--samples`` sequences of ``--length`` frames, comparing their
notes-per-frame and pitch-class histograms with the test data's by total variation distance
(:mod:`probseq.evaluate.sample_statistics`), at the start and at the end of the samples.

Usage::

    python benchmarks/scheduled_sampling_jsb.py RUN_DIR [RUN_DIR ...] --samples 100 --length 200
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from probseq.data.registry import load_dataset
from probseq.evaluate.sample_statistics import drift_statistics
from probseq.evaluate.scoring import score_split
from probseq.train.checkpoint import load_run


def main(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    data = load_dataset("jsb", data_file=args.data_file)
    test = data.split("test")
    lowest = int(data.meta.get("lowest_note", 21))
    windows = [(0, None), (0, args.length // 4), (args.length - args.length // 4, args.length)]
    rows = []
    floor = drift_statistics(data.split("train"), test, lowest_note=lowest)   # the sampling noise floor
    floor = {"run": "training chorales (not a model)", **floor}
    print(json.dumps(floor), flush=True)
    rows.append(floor)
    for run in args.runs:
        started = time.perf_counter()
        model, info = load_run(run)
        scores = score_split(model, test).summary()
        samples = model.sample(args.samples, length=args.length,
                               generator=torch.Generator().manual_seed(args.seed))
        stats = drift_statistics(samples.sequences(), test, windows=windows, lowest_note=lowest)
        config = info["hyperparameters"]
        row = {"run": str(run), "model": info["model"],
               "scheduled_sampling": config.get("scheduled_sampling", "none"),
               "ss_k": config.get("ss_k"), "ss_min": config.get("ss_min"),
               "test_nll_per_frame": scores["nll_per_frame"], "kind": scores["kind"],
               "samples": args.samples, "length": args.length, **stats,
               "wall_s": round(time.perf_counter() - started, 1)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run directories of `probseq fit ... --data jsb`")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--length", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-file", help="JSB_Chorales.mat (default: the embedded copy)")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
