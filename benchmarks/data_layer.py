"""Data-layer timings: piano-roll loading, bouncing-balls generation and rendering, MIDI I/O.

    python benchmarks/data_layer.py --threads 1 [--paper-size]

Prints one line per measurement (median of ``--repeats`` runs, wall-clock seconds). The
bouncing-balls renderer is compared in the same run against the dense formula it replaces (every
pixel for every ball), as a ratio. ``--paper-size`` also times the RTRBM paper's 4000 training
sequences (about 1.4 GB of float32).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    from probseq.data.bouncing_balls import _render_dense, render_balls, simulate_bouncing_balls
    from probseq.io.midi import read_midi_pianoroll_tracks, write_pianoroll_midi
    from probseq.io.pianoroll import read_pianoroll_file
    from probseq.data.home import data_home
    from probseq.data.registry import load_dataset

    r = args.repeats
    seconds, data = timed(lambda: load_dataset("jsb"), r)
    print(f"jsb (embedded .json.gz) load                  {seconds:7.3f} s")
    poly = data_home() / "polyphonic"
    for name in ("JSB_Chorales.mat", "jsb-chorales-quarter.pkl", "jsb-chorales-quarter.json", "Piano_midi.mat"):
        if (poly / name).is_file():
            seconds, _ = timed(lambda: read_pianoroll_file(poly / name), r)
            print(f"{name:45s} {seconds:7.3f} s")

    with tempfile.TemporaryDirectory() as tmp:
        test = data.splits["test"]
        path = Path(tmp) / "t.mid"
        seconds, _ = timed(lambda: write_pianoroll_midi(test, path, layout="tracks"), r)
        print(f"MIDI write, jsb test split (77 tracks)         {seconds:7.3f} s")
        seconds, back = timed(lambda: read_midi_pianoroll_tracks(path, steps_per_beat=1), r)
        same = all(torch.equal(a, b) for a, b in zip(back, test)) and len(back) == len(test)
        print(f"MIDI read,  jsb test split (identical: {same})  {seconds:7.3f} s")

    seconds, traj = timed(lambda: simulate_bouncing_balls(700, 100), r)
    print(f"bouncing balls: simulate 700 x 100 frames      {seconds:7.3f} s")
    seconds, fast = timed(lambda: render_balls(traj.positions, radii=traj.radii), r)
    print(f"bouncing balls: render 700 x 100 (window)      {seconds:7.3f} s")
    n_dense = 100
    dense_s, dense = timed(lambda: _render_dense(traj.positions[:n_dense], radii=traj.radii), r)
    window_s, _ = timed(lambda: render_balls(traj.positions[:n_dense], radii=traj.radii), r)
    err = float((dense - fast[:n_dense]).abs().max())
    print(f"bouncing balls: render {n_dense} seqs dense {dense_s:.3f} s / window {window_s:.3f} s "
          f"= {dense_s / window_s:.1f}x (max |diff| {err:.1e})")
    seconds, _ = timed(lambda: load_dataset("bouncing-balls"), r)
    print(f"bouncing-balls dataset, defaults 400/100/200   {seconds:7.3f} s")
    if args.paper_size:
        seconds, _ = timed(lambda: load_dataset("bouncing-balls", n_train=4000, n_valid=1, n_test=200), 1)
        print(f"bouncing-balls dataset, paper 4000/1/200       {seconds:7.3f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--paper-size", action="store_true")
    main(parser.parse_args())
