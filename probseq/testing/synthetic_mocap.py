"""A synthetic Acclaim subject unlike CMU's: for testing the ASF/AMC reader on a skeleton it has never seen.

The skeleton has 7 bones in a branching tree, radians instead of degrees, a root with a different
channel order and axis order, non-zero ``axis`` angles in several orders, partial ``dof`` sets
(``ry`` only, ``rz rx``), a length unit of 1 and LF line endings. :func:`write_synthetic_subject`
writes its ASF and a few AMC files of smooth random motion into a directory.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

__all__ = ["SYNTHETIC_ASF", "synthetic_motion", "write_synthetic_subject"]

SYNTHETIC_ASF = """\
# synthetic test subject
:version 1.10
:name synthbot
:units
  mass 1.0
  length 1
  angle rad
:documentation
  not a human; a branching test skeleton
:root
  order TX TY TZ RZ RX RY
  axis ZXY
  position 0 0 0
  orientation 0 0 0
:bonedata
  begin
    id 1
    name spine
    direction 0 1 0
    length 3.0
    axis 0.1 0 0.2 ZYX
    dof rx ry rz
    limits (-1 1)
           (-1 1)
           (-1 1)
  end
  begin
    id 2
    name neck
    direction 0.2 0.9 0.1
    length 1.0
    axis 0 0.5 0 XYZ
    dof ry
    limits (-1 1)
  end
  begin
    id 3
    name arm_a
    direction 1 0 0
    length 2.0
    axis 0 0 1.5708 XYZ
    dof rz rx
    limits (-2 2)
           (-2 2)
  end
  begin
    id 4
    name hand_a
    direction 1 0 0
    length 0.7
    axis 0 0 1.5708 YZX
    dof rx ry rz
    limits (-1 1)
           (-1 1)
           (-1 1)
  end
  begin
    id 5
    name arm_b
    direction -1 0.2 0
    length 2.0
    axis 0.3 -0.2 0.1 XYZ
    dof rx ry
    limits (-2 2)
           (-2 2)
  end
  begin
    id 6
    name leg
    direction 0 -1 0.1
    length 4.0
    axis 0 0 0 XYZ
  end
  begin
    id 7
    name foot
    direction 0 0 1
    length 1.2
    axis -1.5708 0 0 XYZ
    dof rx
    limits (-1 1)
  end
:hierarchy
  begin
    root spine leg
    spine neck arm_a arm_b
    arm_a hand_a
    leg foot
  end
"""

#: bone -> number of values per AMC line (in the order the AMC lists them)
_LAYOUT = [("root", 6), ("leg", 0), ("foot", 1), ("spine", 3), ("neck", 1), ("arm_b", 2),
           ("arm_a", 2), ("hand_a", 3)]


def synthetic_motion(frames: int, seed: int, gait_seed: int | None = None,
                     noise: float = 0.0) -> list[tuple[str, np.ndarray]]:
    """Smooth random motion ``[(bone, (frames, n)), ...]`` in radians (positions in length units).

    Each channel is a sinusoid. By default its frequency, amplitude and phase all come from
    ``seed``; with ``gait_seed`` the frequencies and amplitudes come from ``gait_seed`` (the same
    "gait" in every trial written with it) and only the phases from ``seed``. ``noise``: the
    standard deviation of Gaussian noise added to every value (a marker jitter).
    """
    rng = np.random.default_rng(seed)
    gait = rng if gait_seed is None else np.random.default_rng(gait_seed)
    t = np.arange(frames)[:, None]
    out = []
    for bone, n in _LAYOUT:
        if n == 0:
            continue
        freq = gait.uniform(0.02, 0.1, n)
        phase = rng.uniform(0, 2 * math.pi, n)
        amp = gait.uniform(0.2, 1.2, n)
        values = amp * np.sin(freq * t + phase) + noise * rng.standard_normal((frames, n))
        if bone == "root":
            values[:, :3] = np.array([0.05, 0.0, 0.02]) * t + np.array([0.0, 5.0, 0.0]) + values[:, :3] * 0.1
            values[:, 3] = values[:, 3] + 0.01 * t[:, 0]          # a slow turn
        out.append((bone, values))
    return out


def write_synthetic_subject(directory: str | Path, *, n_files: int = 3, frames: int = 48,
                            seed: int = 0, name: str = "synth", gait_seed: int | None = None,
                            noise: float = 0.0) -> list[Path]:
    """Write ``{name}.asf`` and ``n_files`` AMC files ``{name}_01.amc ...``; returns the AMC paths.

    ``gait_seed`` / ``noise``: see :func:`synthetic_motion` (one gait in every file: held-out
    trials that a motion model can learn from the others).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.asf").write_text(SYNTHETIC_ASF)
    paths = []
    for k in range(n_files):
        motion = synthetic_motion(frames, seed + k, gait_seed, noise)
        lines = [":FULLY-SPECIFIED", ":RADIANS"]
        for f in range(frames):
            lines.append(str(f + 1))
            for bone, values in motion:
                lines.append(bone + " " + " ".join(f"{v:.9g}" for v in values[f]))
            lines.append("leg")                                  # a bone without dof: a bare name line
        path = directory / f"{name}_{k + 1:02d}.amc"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths
