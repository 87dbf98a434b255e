"""Do sampled motions keep moving like the data?  Motion statistics of a run's samples (issue 19).

For a fitted motion run (``cmu`` or ``mocap-mit``), draws ``-n`` samples of ``--frames`` new frames
(default 300: 10 seconds at 30 fps), each continuing the first ``--prime`` frames of the first
test sequence, and prints :func:`probseq.evaluate.sample_statistics.motion_statistics` of the new
frames against the training split: root height and joint angles within the training range, the
joint angles' spread over time and the frame-to-frame change relative to the training trials',
over the whole sample and its first and second halves. The test sequences' own statistics are
printed beside them (``data_*``), since held-out motion need not lie within the training range
either. One JSON object goes to stdout.

Usage (the runs recorded in ``benchmarks/RESULTS.md``)::

    python benchmarks/motion_samples.py RUN --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("-n", type=int, default=3, help="samples")
    p.add_argument("--frames", type=int, default=300, help="new frames per sample (default 300 = 10 s at 30 fps)")
    p.add_argument("--prime", type=int, default=10, help="frames of the first test sequence to continue")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def main(args) -> dict:
    from probseq.cli import _dataset_for_run
    from probseq.evaluate.sample_statistics import motion_statistics
    from probseq.train.checkpoint import load_run

    torch.set_num_threads(args.threads)
    model, info = load_run(args.run)
    dataset, _ = _dataset_for_run(info, argparse.Namespace(data=None, data_file=None, data_dir=None,
                                                            split="test"))
    model.eval()
    test = dataset.split("test")
    prime = torch.as_tensor(test[0][: args.prime], dtype=torch.float32)[None]
    half = args.frames // 2
    windows = ((0, None), (0, half), (half, None))
    started = time.perf_counter()
    with torch.no_grad():
        drawn = model.sample(args.n, length=args.prime + args.frames, prefix=prime,
                             generator=torch.Generator().manual_seed(args.seed))
    new = [s[args.prime:] for s in drawn.sequences()]
    train = dataset.split("train")
    out = {"run": args.run, "model": info["model"], "samples": args.n, "frames": args.frames,
           "prime": args.prime, "sample_s": round(time.perf_counter() - started, 1),
           **motion_statistics(new, train, dataset.meta, windows=windows)}
    reference = motion_statistics(test, train, dataset.meta)
    out.update({f"data_{k}": v for k, v in reference.items()})
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main(parse_args())
