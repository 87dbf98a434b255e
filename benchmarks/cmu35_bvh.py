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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=str(data_home() / "mocap"),
                   help="directory holding cmu35WalkJog.mat, 35.asf and 35_01.amc (default: the data home's mocap/)")
    p.add_argument("--out", default="runs/cmu35-bvh")
    args = p.parse_args(argv)
    paths = write_bvh_trials(Path(args.out), Path(args.source))
    print(f"wrote {len(paths)} BVH takes to {args.out}")


if __name__ == "__main__":
    main()
