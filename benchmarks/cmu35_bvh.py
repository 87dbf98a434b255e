"""Write CMU subject 35's 33 walking and jogging trials as a folder of BVH takes (30 fps), for ``--data bvh``.

The trials come as ASF/AMC: :mod:`benchmarks.cmu35_trials` writes them back as ``35_NN.amc`` beside
``35.asf`` from the developer data (``cmu35WalkJog.mat`` of GPmat; see
``shared/data/mocap/SOURCE.md``), each 30-fps frame written 4 times (120 fps). This script reads each
AMC file with its skeleton, keeps every 4th frame (the original 30-fps frames, exactly), and writes
it as BVH with :func:`probseq.io.amc.to_bvh` (one joint per ASF bone, the same forward kinematics)
at a frame time of 1/30 s. The result is a user's folder of BVH takes: one skeleton, 33 files.

Usage (the runs recorded in ``benchmarks/RESULTS.md``, "Your own data: a BVH folder")::

    python benchmarks/cmu35_bvh.py --out runs/cmu35-bvh
    probseq fit rtrbm --data bvh --data-dir runs/cmu35-bvh --minutes 4 --threads 1 --out runs/bvh-rtrbm
    probseq evaluate runs/bvh-rtrbm --metric mse --json
    probseq sample runs/bvh-rtrbm -n 4 --length 300 --out runs/bvh-rtrbm-samples.npz
    python benchmarks/cmu35_bvh.py --stats runs/bvh-rtrbm runs/bvh-rtrbm-samples.npz

``--stats`` says whether 10-second samples keep moving like the data: the root height of the
samples' frames against the range of the training frames (a fall to the floor leaves it), and the
mean absolute frame-to-frame change of the joint rotations (radians per frame, exponential-map
numbers, root motion excluded) over the samples' last 5 seconds against the training takes' (a
freeze takes it to 0).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

from probseq.data.home import data_home
from probseq.io.amc import read_amc, read_asf, to_bvh
from probseq.io.bvh import write_bvh

_HERE = Path(__file__).resolve().parent


def _trials_module():
    spec = importlib.util.spec_from_file_location("cmu35_trials", _HERE / "cmu35_trials.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules.setdefault("cmu35_trials", module)
    spec.loader.exec_module(module)
    return module


def write_bvh_trials(out: Path, source: Path) -> list[Path]:
    """``out/35_NN.bvh`` for every trial; returns the paths."""
    trials = _trials_module()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with tempfile.TemporaryDirectory() as amc_dir:
        amcs = trials.write_trials(Path(amc_dir), source)
        skeleton = read_asf(Path(amc_dir) / "35.asf")
        for amc in amcs:
            motion = read_amc(amc, skeleton)
            motion.values = motion.values[::trials.REPEAT]
            hierarchy, values = to_bvh(skeleton, motion)
            paths.append(write_bvh(out / f"{amc.stem}.bvh", hierarchy, values, 1.0 / 30.0))
    return paths


def sample_statistics(run: Path, samples: Path) -> dict:
    """The ``--stats`` numbers (see the module docstring) for the samples a run wrote as ``.npz``."""
    import json

    import numpy as np

    from probseq.data.registry import load_dataset
    from probseq.io.motion_features import BODY_ROOT_SIZE

    info = json.loads((run / "run.json").read_text())
    meta, d = info["meta"], info["dataset"]
    kept = np.asarray(meta["kept"])
    mean, std = np.asarray(meta["mean"])[kept], np.asarray(meta["std"])[kept]
    height_column = int(np.flatnonzero(kept == 0)[0])
    rotation_columns = kept >= BODY_ROOT_SIZE
    train = load_dataset("bvh", data_dir=d["data_dir"], **(d.get("options") or {}), run_meta=meta).splits["train"]
    train = [np.asarray(x, dtype=np.float64) * std + mean for x in train]
    with np.load(samples) as z:
        values, lengths = z["values"], z["lengths"]
    seqs = [values[i, :lengths[i]].astype(np.float64) * std + mean for i in range(len(lengths))]
    fps = float(meta["fps"])
    tail = [s[-int(5 * fps):] for s in seqs]
    height = np.concatenate([s[:, height_column] for s in train])
    sample_height = np.concatenate([s[:, height_column] for s in seqs])

    def motion(xs):
        return float(np.mean(np.concatenate([np.abs(np.diff(x[:, rotation_columns], axis=0)) for x in xs])))

    return {"train_height_min": float(height.min()), "train_height_max": float(height.max()),
            "sample_height_min": float(sample_height.min()), "sample_height_max": float(sample_height.max()),
            "sample_frames_within_train_height": float(np.mean((sample_height >= height.min())
                                                                & (sample_height <= height.max()))),
            "train_rotation_change_per_frame": motion(train),
            "sample_rotation_change_per_frame_last_5s": motion(tail)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=str(data_home() / "mocap"),
                   help="directory holding cmu35WalkJog.mat, 35.asf and 35_01.amc (default: the data home's mocap/)")
    p.add_argument("--out", default="runs/cmu35-bvh")
    p.add_argument("--stats", nargs=2, metavar=("RUN", "SAMPLES_NPZ"),
                   help="instead of writing takes: the sample statistics of a run's samples")
    args = p.parse_args(argv)
    if args.stats:
        import json

        print(json.dumps(sample_statistics(Path(args.stats[0]), Path(args.stats[1]))))
        return
    paths = write_bvh_trials(Path(args.out), Path(args.source))
    print(f"wrote {len(paths)} BVH takes to {args.out}")


if __name__ == "__main__":
    main()
