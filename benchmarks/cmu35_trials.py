"""Write CMU subject 35's walking and jogging trials as AMC files, for held-out-trial motion tests.

The developer data holds one AMC trial of subject 35 (``35_01.amc``), so ``--data cmu`` on it can
only hold out the end of that trial. ``cmu35WalkJog.mat`` (GPmat; see ``shared/data/mocap/SOURCE.md``)
holds the raw AMC channels of 33 trials of the same subject (31 training trials and GPmat's test
trials 18 and 29), already at 30 fps. This script writes them back as ``35_NN.amc`` beside a copy
of ``35.asf``, each 30-fps frame written 4 times, so that the ``cmu`` loader's default 120 -> 30 fps
step keeps every original frame exactly once. With 33 files the loader holds out whole trials: the
last file in name order (``35_34``, a walk) for test and the one before (``35_33``) for validation.

Usage (the run recorded in ``benchmarks/RESULTS.md``)::

    python benchmarks/cmu35_trials.py --out runs/cmu35
    probseq fit trbm --data cmu --data-dir runs/cmu35 --minutes 10 --out runs/cmu35-trbm
    probseq evaluate runs/cmu35-trbm --metric mse --json
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from probseq.data.home import data_home

#: GPmat's trial numbers: the 31 training trials in label order, then the two test trials
TRAIN_TRIALS = [*range(1, 18), *range(19, 27), 28, *range(30, 35)]
TEST_TRIALS = [18, 29]
REPEAT = 4


def _mat_layout(asf_path: Path) -> list[tuple[str, int]]:
    """``[(bone, number of values), ...]`` in the order of the .mat columns: the root, then the
    ASF's bones in file order (GPmat's order; the AMC files list them in another order)."""
    from probseq.io.amc import read_asf

    skeleton = read_asf(asf_path)
    return [(bone, len(skeleton.dof(bone))) for bone in skeleton.bones if skeleton.dof(bone)]


def _amc_line_order(amc_path: Path) -> list[str]:
    """The bones of the first frame of an AMC file, in the order it lists them."""
    order, frames = [], 0
    for line in amc_path.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0].startswith(("#", ":")):
            continue
        if parts[0].isdigit():
            frames += 1
            if frames > 1:
                break
        elif frames == 1:
            order.append(parts[0])
    return order


def write_trials(out: Path, source: Path, only: list[int] | None = None) -> list[Path]:
    import scipy.io

    mat = scipy.io.loadmat(str(source / "cmu35WalkJog.mat"))
    layout = _mat_layout(source / "35.asf")
    if sum(n for _, n in layout) != mat["Y"].shape[1]:
        raise SystemExit("the degrees of freedom of 35.asf do not match the 62 columns of cmu35WalkJog.mat")
    starts = np.cumsum([0] + [n for _, n in layout])
    columns = {bone: (int(start), n) for (bone, n), start in zip(layout, starts)}
    line_order = _amc_line_order(source / "35_01.amc")     # write the bones as CMU's files do
    trials = {}
    for values, labels, numbers in ((mat["Y"], mat["lbls"], TRAIN_TRIALS), (mat["Ytest"], mat["lblstest"], TEST_TRIALS)):
        index = np.asarray(labels).argmax(1)
        for k, number in enumerate(numbers):
            trials[number] = np.asarray(values)[index == k]
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "35.asf", out / "35.asf")
    paths = []
    for number in sorted(trials):
        if only is not None and number not in only:
            continue
        lines = [":FULLY-SPECIFIED", ":DEGREES"]
        frame = 0
        for row in trials[number]:
            for _ in range(REPEAT):
                frame += 1
                lines.append(str(frame))
                for bone in line_order:
                    start, n = columns[bone]
                    lines.append(" ".join([bone] + [f"{v:.6g}" for v in row[start:start + n]]))
        path = out / f"35_{number:02d}.amc"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--source", default=str(data_home() / "mocap"),
                   help="directory holding cmu35WalkJog.mat, 35.asf and 35_01.amc (default: the data home's mocap/)")
    p.add_argument("--out", default="runs/cmu35")
    p.add_argument("--trials", default=None,
                   help="comma-separated trial numbers to write (default: all 33), e.g. 19,20,21: three "
                        "jogs, a small directory like a new user's (train 19, valid 20, test 21)")
    args = p.parse_args(argv)
    only = None if args.trials is None else [int(t) for t in args.trials.split(",") if t.strip()]
    unknown = sorted(set(only or []) - set(TRAIN_TRIALS + TEST_TRIALS))
    if unknown:
        raise SystemExit(f"no trial {unknown[0]} in cmu35WalkJog.mat; trials: {TRAIN_TRIALS + TEST_TRIALS}")
    paths = write_trials(Path(args.out), Path(args.source), only)
    print(f"wrote {len(paths)} trials to {args.out}")


if __name__ == "__main__":
    main()
