"""Training throughput of one process against two (torch.distributed, gloo) and against two threads.

For each model, the same training run — the same global batches in the same order, from
``probseq fit`` (the library's trainer) — is timed three ways:

* ``1x1``: one process, one thread (``probseq fit ... --threads 1``);
* ``2x1``: two processes of one thread each (``torchrun --nproc_per_node=2 -m probseq fit ...
  --set batch_size=B/2 --threads 1``: each process trains on half of every global batch and the
  gradients are summed with one all-reduce per step);
* ``1x2``: one process, two threads (what a user would otherwise run on two cores).

Throughput is frames per second of training steps: the frames of the global batches
(``B x`` the mean training-sequence length per step, the same for the three ways) between the
first and the last ``train`` event of ``log.jsonl`` (logged every 5 steps with the trainer's
elapsed time), so start-up, the first 5 steps (warm-up) and the final validation are excluded.
The end-to-end figure (``wall_s`` of the ``end`` event: every step plus the final validation,
which the processes also share) is printed as well. The ratios ``2x1 / 1x1`` and ``2x1 / 1x2`` are
printed; on a machine shared with other jobs they are pessimistic.

Usage::

    python benchmarks/scaling.py --models gru rtrbm rnn-nade vrnn --steps 60 --batch-size 32
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from probseq.data.registry import load_dataset

#: per-model settings: the default hyperparameters, the model's own batch size unless overridden
MODEL_SETS: dict[str, list[str]] = {
    "gru": [],
    "rtrbm": [],
    "rnn-nade": [],
    "vrnn": [],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command: list[str], threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")


def _timings(run_dir: Path) -> tuple[float, int, float, int]:
    """``(steps timed, seconds they took, end-to-end wall, world size)`` from ``log.jsonl``."""
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    end = [e for e in events if e.get("event") == "end"][-1]
    start = [e for e in events if e.get("event") == "start"][0]
    train = [e for e in events if e.get("event") == "train"]
    first, last = train[0], train[-1]
    return (last["step"] - first["step"], last["elapsed_s"] - first["elapsed_s"], float(end["wall_s"]),
            int(start.get("world_size", 1)))


def measure(model: str, *, steps: int, batch_size: int, data: str, workdir: Path) -> dict:
    train = load_dataset(data).split("train")
    mean_length = sum(len(x) for x in train) / len(train)
    frames = steps * batch_size * mean_length
    frames_per_step = batch_size * mean_length
    common = ["fit", model, "--data", data, "--steps", str(steps), "--quiet", "--device", "cpu",
              *sum((["--set", s] for s in MODEL_SETS.get(model, [])), []),
              "--set", "checkpoint_every=1000000", "--set", "eval_every=1000000", "--set", "log_every=5"]
    row = {"model": model, "steps": steps, "global_batch": batch_size, "frames": round(frames)}
    ways = {
        "1x1": ([sys.executable, "-m", "probseq", *common, "--set", f"batch_size={batch_size}",
                 "--threads", "1"], 1),
        "2x1": (["torchrun", "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "probseq",
                 *common, "--set", f"batch_size={batch_size // 2}", "--threads", "1"], 1),
        "1x2": ([sys.executable, "-m", "probseq", *common, "--set", f"batch_size={batch_size}",
                 "--threads", "2"], 2),
    }
    for way, (command, threads) in ways.items():
        out = workdir / f"{model}-{way}"
        _run([*command, "--out", str(out)], threads)
        timed_steps, timed_s, wall, world = _timings(out)
        row[f"wall_s_{way}"] = round(wall, 2)
        row[f"frames_per_s_{way}"] = round(timed_steps * frames_per_step / timed_s, 1)
        row[f"end_to_end_frames_per_s_{way}"] = round(frames / wall, 1)
        row[f"world_size_{way}"] = world
    row["ratio_2x1_vs_1x1"] = round(row["frames_per_s_2x1"] / row["frames_per_s_1x1"], 2)
    row["ratio_2x1_vs_1x2"] = round(row["frames_per_s_2x1"] / row["frames_per_s_1x2"], 2)
    row["end_to_end_ratio_2x1_vs_1x1"] = round(row["end_to_end_frames_per_s_2x1"]
                                               / row["end_to_end_frames_per_s_1x1"], 2)
    return row


def main(args) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            row = measure(model, steps=args.steps, batch_size=args.batch_size, data=args.data,
                          workdir=Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    print()
    print(f"{'model':10s} {'1x1 fr/s':>10s} {'2x1 fr/s':>10s} {'1x2 fr/s':>10s} {'2x1/1x1':>8s} {'2x1/1x2':>8s}"
          f" {'end-to-end 2x1/1x1':>19s}")
    for r in rows:
        print(f"{r['model']:10s} {r['frames_per_s_1x1']:10.0f} {r['frames_per_s_2x1']:10.0f} "
              f"{r['frames_per_s_1x2']:10.0f} {r['ratio_2x1_vs_1x1']:8.2f} {r['ratio_2x1_vs_1x2']:8.2f}"
              f" {r['end_to_end_ratio_2x1_vs_1x1']:19.2f}")
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(MODEL_SETS))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32, help="global batch (even: split over 2 processes)")
    p.add_argument("--data", default="jsb")
    args = p.parse_args(argv)
    if args.batch_size % 2:
        p.error("--batch-size must be even (it is split over two processes)")
    return args


if __name__ == "__main__":
    main(parse_args())
