"""Motion capture datasets: ``mocap-mit`` (Taylor et al.'s 49-dimensional MIT data) and ``cmu`` (ASF/AMC).

``mocap-mit`` (``--data-file motion.mat``)
    The MIT motion capture sequences (E. Hsu) as distributed with G. Taylor's CRBM code: three
    sequences of 438, 260 and 3128 frames x 108 channels (18 joints x [exponential-map rotation (3),
    offset (3)]), root already in Taylor's body-centred form. We keep Taylor's 49 columns
    (:data:`MIT_COLUMNS`, listed in ``shared/data/mocap/SOURCE.md``); the other 59 are constant over
    every frame of the file and are restored from :data:`meta["template"]` by the inverse transform.
``cmu`` (``--data-dir DIR``)
    Every ``*.amc`` file of a directory with its ``.asf`` skeleton (the only one, or the one named
    by the AMC's prefix: ``35_01.amc`` -> ``35.asf``), any subject. Features are the AMC channels
    in the first frame's bone order, downsampled from ``source_fps`` (120) to ``fps`` (30) by
    keeping every 4th frame; rotation channels (degrees) are unwrapped over time, and the root's
    ground-plane translations (``tx``, ``tz``; ``y`` is up in CMU data) are replaced by their
    per-frame differences, so the features do not drift with where the subject walks. The first
    frame's difference copies the second's; the inverse transform integrates from the origin.
    With ``features=body`` the frames are instead those of the ``bvh`` dataset
    (:func:`probseq.io.motion_features.bvh_features` of the take converted by
    :func:`~probseq.io.amc.to_bvh`): root height, ground velocity and heading change in the body's
    own frame, and every bone's rotation as a continuous exponential map. The default stays
    ``features=channels``, so runs and recorded results on ``cmu`` keep their meaning.

Both are z-scored with the mean and standard deviation of the **training frames** (``meta["mean"]``,
``meta["std"]``; a constant channel gets std 1) and come with their inverse transform
(:func:`mit_frames_from_features`, :func:`cmu_motion_from_features`).

Splits (our choice, documented because the papers do not fix one for these files): with at least
three sequences (``cmu`` with >= 3 AMC files) whole files go to the splits, the last file in name
order to ``test`` and the one before to ``valid``; otherwise (``mocap-mit``'s 3 very unequal
sequences, a single CMU trial) every sequence is cut into contiguous chunks, the first 80% of its
frames for ``train``, the next 10% for ``valid`` and the last 10% for ``test``, so every kind of
motion is in every split and no frame is shared. Training sequences are then cut into windows of
``train_chunk`` frames (default 100; 0 keeps them whole), which the trainer shuffles into
minibatches; validation and test sequences stay whole.

Media (registered with :mod:`probseq.io.media` for motion data only): ``.bvh`` for both (the
MIT data converted from its z-up frame to BVH's y-up), ``.gif`` stick-figure animations
(:mod:`probseq.io.stick_figure`), and ``.bvh`` / ``.amc`` primes for ``cmu`` (read back into
normalised features, so ``probseq sample RUN --prime walk.bvh`` continues a motion).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from probseq.io.amc import (AmcMotion, amc_from_bvh, forward_kinematics, parse_asf, read_amc, read_asf,
                              to_bvh)
from probseq.io.bvh import BvhJoint, BvhSkeleton, matrix_to_euler, read_bvh, write_bvh
from probseq.io.motion_features import bvh_features, bvh_motion_from_features
from probseq.data.home import data_home
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["MIT_COLUMNS", "load_mocap_mit", "load_cmu", "mit_frames_from_features",
           "mit_positions", "mit_to_bvh", "cmu_motion_from_features", "cmu_features_from_motion",
           "motion_positions", "write_motion_bvh", "write_motion_gif", "read_motion_prime", "is_motion",
           "CMU_FEATURES"]

#: Taylor's 49 columns of the 108 MIT channels (0-based)
MIT_COLUMNS = np.r_[0:9, 13, 18:21, 25, 30:33, 37, 42:45, 49, 54:57, 60:63, 66:69, 72:75, 78:81,
                    84:87, 90:93, 96:99, 102:105]
_MIT_JOINTS = 18
#: frame rate of the MIT data when writing media. The file does not state it; the gait period in the
#: data (about 32 frames per stride) says 30 fps, i.e. already Taylor's 120 fps capture with every
#: 4th frame kept.
MIT_FPS = 30


# ---------------------------------------------------------------------------- shared helpers
def _split_sequences(seqs: list[np.ndarray], *, whole_files: bool) -> dict[str, list[np.ndarray]]:
    """The split rule of the module docstring."""
    if whole_files:
        return {"train": seqs[:-2], "valid": [seqs[-2]], "test": [seqs[-1]]}
    out: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    for s in seqs:
        n = s.shape[0]
        if n < 10:
            raise UserError(f"a sequence of {n} frames is too short to split into train/valid/test")
        a, b = int(round(0.8 * n)), int(round(0.9 * n))
        out["train"].append(s[:a])
        out["valid"].append(s[a:b])
        out["test"].append(s[b:])
    return out


def _normalise(splits: dict[str, list[np.ndarray]], train_chunk: int
               ) -> tuple[dict[str, list[torch.Tensor]], np.ndarray, np.ndarray]:
    train = np.concatenate(splits["train"], 0)
    mean = train.mean(0)
    std = train.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    out: dict[str, list[torch.Tensor]] = {}
    for name, seqs in splits.items():
        z = [torch.tensor((s - mean) / std, dtype=torch.float32) for s in seqs]
        if name == "train" and train_chunk:
            z = [c for s in z for c in s.split(int(train_chunk)) if c.shape[0] >= 2]
        out[name] = z
    return out, mean, std


def _denormalise(features: np.ndarray | torch.Tensor, meta: dict[str, Any]) -> np.ndarray:
    x = np.asarray(features.detach().cpu() if isinstance(features, torch.Tensor) else features,
                   dtype=np.float64)
    mean, std = np.asarray(meta["mean"]), np.asarray(meta["std"])
    if x.shape[-1] != mean.shape[0]:
        raise UserError(f"motion frames have {x.shape[-1]} values; this dataset's frames have {mean.shape[0]}")
    return x * std + mean


def _check_train_chunk(train_chunk: int) -> int:
    if int(train_chunk) < 0 or int(train_chunk) == 1:
        raise UserError(f"train_chunk must be 0 (whole sequences) or at least 2, got {train_chunk}")
    return int(train_chunk)


def _default_path(given: str | Path | None, fallback: Path, missing_message: str) -> Path:
    """The user's path, else the copy in the data home (``$PROBSEQ_DATA``), else a clear error."""
    if given is not None:
        return Path(given)
    if fallback.exists():
        return fallback
    raise UserError(missing_message)


# ---------------------------------------------------------------------------- MIT
@register_dataset(
    "mocap-mit",
    description="MIT motion capture (E. Hsu), Taylor et al.'s 49-dim representation (3 sequences, z-scored)",
    source="motion.mat from G. Taylor's CRBM code (data: E. Hsu, MIT); pass --data-file motion.mat",
    needs="file",
    home="mocap/motion.mat",
)
def load_mocap_mit(data_file: str | Path | None = None, data_dir: str | Path | None = None,
                   train_chunk: int = 100) -> Dataset:
    """Load ``motion.mat`` (see the module docstring for the representation and split)."""
    import scipy.io

    path = _default_path(data_file, data_home() / "mocap" / "motion.mat",
                         "dataset 'mocap-mit' needs --data-file pointing at motion.mat")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a file that is not a .mat
        raise UserError(f"{path} is not a readable MATLAB file ({exc.__class__.__name__})") from None
    if "Motion" not in mat:
        raise UserError(f"{path} has no 'Motion' variable; is it the motion.mat of Taylor's CRBM code?")
    seqs = [np.asarray(s, dtype=np.float64) for s in np.asarray(mat["Motion"]).flat]
    for i, s in enumerate(seqs):
        if s.ndim != 2 or s.shape[1] != 6 * _MIT_JOINTS:
            raise UserError(f"sequence {i} of {path} has shape {s.shape}; expected (frames, 108)")
        if not np.isfinite(s).all():
            raise UserError(f"sequence {i} of {path} contains NaN or infinite values")
    template = seqs[0][0].copy()
    splits, mean, std = _normalise(
        _split_sequences([s[:, MIT_COLUMNS] for s in seqs], whole_files=False),
        _check_train_chunk(train_chunk))
    meta = {"motion_format": "mit", "fps": MIT_FPS, "mean": mean.tolist(), "std": std.tolist(),
            "columns": MIT_COLUMNS.tolist(), "template": template.tolist(),
            "parents": _mit_parents(mat), "split_rule": "contiguous 80/10/10 of each sequence",
            "train_chunk": int(train_chunk)}
    return Dataset("mocap-mit", DataSpec("real", len(MIT_COLUMNS)), splits, meta)


def _mit_parents(mat: dict) -> list[int]:
    """0-based parent of each of the 18 joints from ``skel.tree`` (the root's is -1)."""
    default = [-1, 0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 12, 9, 14, 15, 16]
    try:
        tree = mat["skel"]["tree"][0, 0]
        parents = [int(tree[0, j]["parent"][0, 0]) - 1 if tree[0, j]["parent"].size else -1
                   for j in range(tree.shape[1])]
    except (KeyError, IndexError, ValueError, TypeError):
        return default
    return parents if len(parents) == _MIT_JOINTS else default


def mit_frames_from_features(features, meta: dict[str, Any]) -> np.ndarray:
    """Inverse transform: ``(T, 49)`` normalised features -> ``(T, 108)`` MIT channels."""
    x = _denormalise(features, meta)
    out = np.broadcast_to(np.asarray(meta["template"]), x.shape[:-1] + (6 * _MIT_JOINTS,)).copy()
    out[..., np.asarray(meta["columns"])] = x
    return out


def _rotvec_to_matrix(v: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, ``(..., 3)`` exponential maps -> ``(..., 3, 3)``."""
    theta = np.linalg.norm(v, axis=-1, keepdims=True)
    k = v / np.where(theta > 1e-12, theta, 1.0)
    kx = np.zeros(v.shape[:-1] + (3, 3))
    kx[..., 0, 1], kx[..., 0, 2] = -k[..., 2], k[..., 1]
    kx[..., 1, 0], kx[..., 1, 2] = k[..., 2], -k[..., 0]
    kx[..., 2, 0], kx[..., 2, 1] = -k[..., 1], k[..., 0]
    s, c = np.sin(theta)[..., None], np.cos(theta)[..., None]
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def _mit_local(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations ``(T, 18, 3, 3)`` and offsets ``(T, 18, 3)``; the root's rotation is identity.

    Taylor's preprocessing made the root body-centred (heading and ground-plane position removed;
    channels 3-4 are ground-plane velocities, 5 the height), so the body is drawn upright at the
    origin, walking in place, at its recorded height.
    """
    j = frames.reshape(frames.shape[0], _MIT_JOINTS, 6)
    rot = _rotvec_to_matrix(j[..., :3])
    rot[:, 0] = np.eye(3)
    offsets = j[..., 3:].copy()
    offsets[:, 0, :2] = 0.0          # root: keep the height, drop the ground-plane velocities
    return rot, offsets


def mit_positions(frames: np.ndarray, parents: list[int]) -> np.ndarray:
    """Joint positions ``(T, 18, 3)`` (z up, millimetres): ``x_j = x_p + G_p o_j``, ``G_j = G_p E(r_j)``."""
    rot, offsets = _mit_local(frames)
    glob = np.zeros_like(rot)
    pos = np.zeros(offsets.shape)
    for j, p in enumerate(parents):
        if p < 0:
            glob[:, j], pos[:, j] = rot[:, j], offsets[:, j]
        else:
            glob[:, j] = glob[:, p] @ rot[:, j]
            pos[:, j] = pos[:, p] + np.einsum("tab,tb->ta", glob[:, p], offsets[:, j])
    return pos


#: change of basis from the MIT data's z-up frame to BVH's y-up frame: (x, y, z) -> (y, z, x)
_Z_UP_TO_Y_UP = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])


def mit_to_bvh(frames: np.ndarray, parents: list[int]) -> tuple[BvhSkeleton, np.ndarray]:
    """BVH (y up, ``Zrotation Xrotation Yrotation``) for ``(T, 108)`` MIT frames.

    Every rotation is conjugated by the change of basis ``Q`` (``L' = Q L Q^T``, ``o' = Q o``), so
    the BVH's forward kinematics are ``Q`` times :func:`mit_positions`. Leaf joints get an End Site
    at half their own offset, so the last bone of each chain has a length in viewers.
    """
    q = _Z_UP_TO_Y_UP
    rot, offsets = _mit_local(frames)
    rot = q @ rot @ q.T
    offsets = offsets @ q.T
    order = "ZXY"
    skel = BvhSkeleton()
    columns = []
    children = {j: [c for c, p in enumerate(parents) if p == j] for j in range(len(parents))}
    for j, p in enumerate(parents):
        angles = np.unwrap(matrix_to_euler(rot[:, j], order), period=360.0, axis=0)
        if p < 0:
            skel.joints.append(BvhJoint(f"joint{j}", -1, np.zeros(3),
                                        ("Xposition", "Yposition", "Zposition", "Zrotation",
                                         "Xrotation", "Yrotation")))
            columns += [offsets[:, 0], angles]
        else:
            skel.joints.append(BvhJoint(f"joint{j}", p, offsets[0, j],
                                        ("Zrotation", "Xrotation", "Yrotation")))
            columns.append(angles)
        if not children[j]:
            skel.joints[-1].end_site = 0.5 * offsets[0, j]
    # BVH needs each parent before its children: the MIT tree is already in that order
    return skel, np.concatenate(columns, 1)


# ---------------------------------------------------------------------------- CMU
@register_dataset(
    "cmu",
    description="CMU motion capture: every AMC file of a directory with its ASF skeleton, joint angles, 30 fps",
    source="mocap.cs.cmu.edu (CMU Graphics Lab; NSF EIA-0196217); pass --data-dir DIR of .asf/.amc files",
    needs="dir",
    home="mocap/*.amc",
)
def load_cmu(data_file: str | Path | None = None, data_dir: str | Path | None = None,
             fps: int = 30, source_fps: int = 120, train_chunk: int = 100,
             features: str = "channels") -> Dataset:
    """Load every AMC file of ``data_dir`` (see the module docstring)."""
    if features not in CMU_FEATURES:
        raise UserError(f"cmu option features must be {' or '.join(CMU_FEATURES)}, got {features!r}")
    directory = _default_path(data_dir, data_home() / "mocap",
                              "dataset 'cmu' needs --data-dir pointing at a directory of .asf/.amc files")
    if data_file is not None:
        raise UserError("dataset 'cmu' reads a directory; pass --data-dir DIR instead of --data-file")
    if not directory.is_dir():
        raise UserError(f"{directory} is not a directory")
    step = _frame_step(fps, source_fps)
    amcs = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".amc")
    if not amcs:
        raise UserError(f"{directory} holds no .amc files")
    asfs = {p.stem.lower(): p for p in directory.iterdir() if p.suffix.lower() == ".asf"}
    if not asfs:
        raise UserError(f"{directory} holds .amc files but no .asf skeleton")
    skeletons: dict[Path, Any] = {}
    seqs, layout, first_skeleton = [], None, None
    for amc in amcs:
        asf = _skeleton_file(amc, asfs)
        if asf not in skeletons:
            skeletons[asf] = read_asf(asf)
        motion = read_amc(amc, skeletons[asf])
        if layout is None:
            layout, first_skeleton = motion.channels, skeletons[asf]
        elif motion.channels != layout:
            raise UserError(f"{amc} has a different channel layout from {amcs[0].name}; put one "
                            "skeleton layout per directory")
        feats = cmu_features_from_motion(motion, step, features=features, skeleton=skeletons[asf])
        if feats.shape[0] < 2:
            raise UserError(f"{amc} has fewer than 2 frames at {fps} fps")
        seqs.append(feats)
    assert layout is not None and first_skeleton is not None
    splits, mean, std = _normalise(_split_sequences(seqs, whole_files=len(seqs) >= 3),
                                   _check_train_chunk(train_chunk))
    meta = {"motion_format": "asf", "fps": fps, "mean": mean.tolist(), "std": std.tolist(),
            "channels": [list(c) for c in layout], "asf": first_skeleton.text,
            "velocity_channels": _velocity_channels(layout),
            "source_fps": source_fps, "files": [p.name for p in amcs], "train_chunk": int(train_chunk),
            "features": features,
            "split_rule": ("last file test, second-to-last valid" if len(seqs) >= 3
                           else "contiguous 80/10/10 of each file")}
    return Dataset("cmu", DataSpec("real", int(mean.shape[0])), splits, meta)


def _frame_step(fps: int, source_fps: int) -> int:
    if fps <= 0 or source_fps <= 0 or source_fps % fps:
        raise UserError(f"fps={fps} must divide source_fps={source_fps}")
    return source_fps // fps


def _skeleton_file(amc: Path, asfs: dict[str, Path]) -> Path:
    if len(asfs) == 1:
        return next(iter(asfs.values()))
    prefix = amc.stem.split("_")[0].lower()
    if prefix not in asfs:
        raise UserError(f"no skeleton for {amc.name}: expected {prefix}.asf among {', '.join(sorted(asfs))}")
    return asfs[prefix]


def _velocity_channels(channels) -> list[int]:
    return [i for i, (b, d) in enumerate(channels) if b == "root" and d in ("tx", "tz")]


def _is_rotation(dof: str) -> bool:
    return dof in ("rx", "ry", "rz")


#: the two feature forms of the cmu dataset
CMU_FEATURES = ("channels", "body")


def _bvh_hierarchy(skeleton, channels) -> BvhSkeleton:
    """The BVH hierarchy :func:`to_bvh` gives ``skeleton`` (it depends on the skeleton only)."""
    return to_bvh(skeleton, AmcMotion(list(channels), np.zeros((1, len(channels)))))[0]


def cmu_features_from_motion(motion: AmcMotion, step: int = 1, *, features: str = "channels",
                             skeleton=None) -> np.ndarray:
    """AMC values -> un-normalised features of every ``step``-th frame.

    ``features="channels"``: the AMC channels, angles unwrapped, root x/z as per-frame differences.
    ``features="body"``: :func:`~probseq.io.motion_features.bvh_features` (exponential maps, y up)
    of the take as :func:`to_bvh` writes it; needs the take's ``skeleton``.
    """
    if features == "body":
        if skeleton is None:
            raise ValueError("features='body' needs the ASF skeleton")
        hierarchy, values = to_bvh(skeleton, AmcMotion(motion.channels, motion.values[::step]))
        return bvh_features(hierarchy, values, rotation="expmap", up_axis=1)
    x = motion.values[::step].copy()
    rot = np.array([_is_rotation(d) for _, d in motion.channels])
    x[:, rot] = np.unwrap(x[:, rot], period=360.0, axis=0)
    vel = _velocity_channels(motion.channels)
    if x.shape[0] >= 2:
        x[1:, vel] = np.diff(x[:, vel], axis=0)
        x[0, vel] = x[1, vel]
    else:
        x[:, vel] = 0.0
    return x


def cmu_motion_from_features(features, meta: dict[str, Any]) -> AmcMotion:
    """Inverse transform: normalised ``(T, D)`` features -> AMC channel values (root x/z from the origin;
    with ``features=body`` also heading 0)."""
    x = _denormalise(features, meta)
    if meta.get("features", "channels") == "body":
        skeleton = _skeleton(meta)
        channels = [tuple(c) for c in meta["channels"]]
        hierarchy = _bvh_hierarchy(skeleton, channels)
        values = bvh_motion_from_features(hierarchy, x, rotation="expmap", up_axis=1)
        return amc_from_bvh(skeleton, channels, hierarchy, values)
    vel = list(meta["velocity_channels"])
    if vel:
        x[:, vel] = np.concatenate([np.zeros((1, len(vel))), np.cumsum(x[1:, vel], 0)], 0)
    return AmcMotion([tuple(c) for c in meta["channels"]], x)


# ---------------------------------------------------------------------------- media
def _skeleton(meta: dict[str, Any]):
    return parse_asf(meta["asf"], source="the run's skeleton")


_META_KEYS = {"mit": ("mean", "std", "columns", "template", "parents"),
              "asf": ("mean", "std", "channels", "asf", "velocity_channels")}


def _check_meta(meta: dict[str, Any]) -> str:
    """The motion format of ``meta``, after checking it holds what the inverse transform needs."""
    fmt = meta.get("motion_format")
    if fmt not in _META_KEYS:
        raise UserError("these samples are not motion capture (the dataset has no skeleton)")
    missing = [k for k in _META_KEYS[fmt] if k not in meta]
    if missing:
        raise UserError(f"the run's dataset metadata lacks {missing[0]!r}, which motion output needs; "
                        "refit the model with this version of probseq")
    return fmt


def motion_positions(features, meta: dict[str, Any]) -> tuple[np.ndarray, list[int], int]:
    """Joint positions ``(T, J, 3)``, parents and the up axis (1 for CMU, 2 for MIT) of one sequence."""
    if _check_meta(meta) == "mit":
        return mit_positions(mit_frames_from_features(features, meta), list(meta["parents"])), \
            list(meta["parents"]), 2
    skeleton = _skeleton(meta)
    positions, _, parents = forward_kinematics(skeleton, cmu_motion_from_features(features, meta))
    return positions, parents, 1


def write_motion_bvh(samples, path: str | Path, meta: dict[str, Any]) -> list[Path]:
    """Write each sampled sequence as BVH (``path``, or ``stem_1.bvh, stem_2.bvh, ...`` for several)."""
    fmt = _check_meta(meta)
    path = Path(path)
    seqs = samples.sequences()
    paths = [path] if len(seqs) == 1 else [path.with_name(f"{path.stem}_{i + 1}{path.suffix}")
                                           for i in range(len(seqs))]
    frame_time = 1.0 / float(meta.get("fps", 30))
    for seq, out in zip(seqs, paths):
        if fmt == "mit":
            skel, values = mit_to_bvh(mit_frames_from_features(seq, meta), list(meta["parents"]))
        else:
            skel, values = to_bvh(_skeleton(meta), cmu_motion_from_features(seq, meta))
        write_bvh(out, skel, values, frame_time)
    return paths


def _normalise_with(x: np.ndarray, meta: dict[str, Any]) -> torch.Tensor:
    return torch.tensor((x - np.asarray(meta["mean"])) / np.asarray(meta["std"]), dtype=torch.float32)


def read_motion_prime(path: str | Path, meta: dict[str, Any]) -> torch.Tensor:
    """A ``.bvh`` (written for this skeleton) or ``.amc`` prime -> normalised ``(T, D)`` features."""
    if _check_meta(meta) != "asf":
        raise UserError("motion primes (.bvh, .amc) are supported for the cmu dataset only")
    path = Path(path)
    skeleton = _skeleton(meta)
    channels = [tuple(c) for c in meta["channels"]]
    if path.suffix.lower() == ".amc":
        motion = read_amc(path, skeleton)
        if motion.channels != channels:
            raise UserError(f"{path} does not have the channel layout of the run's skeleton")
        step = _frame_step(int(meta.get("fps", 30)), int(meta.get("source_fps", 120)))
    else:
        bvh, values, frame_time = read_bvh(path)
        motion = amc_from_bvh(skeleton, channels, bvh, values)
        step = max(1, int(round(1.0 / (frame_time * float(meta.get("fps", 30))))))
    return _normalise_with(cmu_features_from_motion(motion, step, features=meta.get("features", "channels"),
                                                    skeleton=skeleton), meta)


def write_motion_gif(samples, path: str | Path, meta: dict[str, Any]) -> list[Path]:
    """The ``.gif`` writer for motion: stick figures (:mod:`probseq.io.stick_figure`), one panel per sample."""
    from probseq.io.stick_figure import animate_stick_figures

    positions, parents, up = [], None, 2
    for seq in samples.sequences():
        pos, parents, up = motion_positions(seq, meta)
        positions.append(pos)
    titles = [f"sample {i + 1}" for i in range(len(positions))]
    return [animate_stick_figures(positions, parents, path, up_axis=up,
                                  fps=float(meta.get("fps", 30)), titles=titles)]


def is_motion(meta) -> bool:
    """Whether a dataset's ``meta`` describes motion capture (``mocap-mit`` or ``cmu``)."""
    return meta.get("motion_format") in ("mit", "asf")


def _is_cmu(meta) -> bool:
    return meta.get("motion_format") == "asf"


def _register_media() -> None:
    from probseq.io import media

    media.register_writer(".bvh", write_motion_bvh, when=is_motion)
    media.register_writer(".gif", write_motion_gif, when=is_motion)
    for ext in (".bvh", ".amc"):
        media.register_prime_reader(ext, read_motion_prime, when=_is_cmu)


_register_media()
