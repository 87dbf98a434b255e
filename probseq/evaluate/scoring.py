"""Scoring held-out sequences: per-sequence NLL, both per-frame conventions, and their errors.

Conventions (DESIGN.md): NLL in nats, positive, lower is better.

* pooled: ``nll_per_frame = sum_i NLL_i / sum_i T_i``;
* sequence-averaged: ``nll_per_frame_seq_avg = mean_i (NLL_i / T_i)``.

``stderr`` is the *estimator's* standard error of the pooled figure (``None`` for exact values and
for bounds without one): with independent per-sequence errors ``s_i``,
``stderr = sqrt(sum_i s_i^2) / sum_i T_i``. The spread over test sequences is a different thing; it
enters the paired comparisons of :mod:`probseq.evaluate.compare`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["SplitScores", "score_split"]


@dataclass
class SplitScores:
    """Per-sequence results of scoring one split with one model."""

    nll: np.ndarray            # (N,) NLL_i in nats
    n_frames: np.ndarray       # (N,) T_i (or the frame count a conditional model reports)
    stderr: np.ndarray | None  # (N,) estimator standard errors, or None
    kind: str
    estimator: str

    def summary(self) -> dict[str, Any]:
        frames = float(self.n_frames.sum())
        out = {
            "n_sequences": int(len(self.nll)),
            "n_frames": int(frames),
            "nll_per_frame": float(self.nll.sum() / frames),
            "nll_per_frame_seq_avg": float(np.mean(self.nll / self.n_frames)),
            "kind": self.kind,
            "estimator": self.estimator,
            "stderr": None,
        }
        if self.stderr is not None:
            out["stderr"] = float(math.sqrt(float(np.sum(self.stderr ** 2))) / frames)
        return out


def score_split(model, examples: list[Any], *, estimator: str | None = None, samples: int | None = None,
                batch_size: int = 64, generator: torch.Generator | None = None,
                progress: bool = False) -> SplitScores:
    """Score every example with ``model.log_prob``; fails loudly on a NaN (never drops it).

    ``progress``: a tqdm bar over the minibatches (on stderr), for estimators that take minutes.
    """
    generator = generator or torch.Generator().manual_seed(0)
    nll, frames, errs = [], [], []
    kind = name = None
    model.eval()
    starts = range(0, len(examples), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc=f"score {model.name}", unit="batch", leave=False,
                          disable=not progress or len(starts) < 2):
            batch = model.collate(examples[start:start + batch_size])
            result = model.log_prob(batch, estimator=estimator, samples=samples, generator=generator)
            values = result.values.double()
            if not torch.isfinite(values).all():
                bad = [start + i for i in torch.nonzero(~torch.isfinite(values)).flatten().tolist()]
                raise FloatingPointError(
                    f"log-likelihood is not finite for sequence(s) {bad[:5]} of the split"
                )
            nll.append(-values.numpy())
            frames.append(_frames_per_example(batch))
            errs.append(None if result.stderr is None else result.stderr.double().numpy())
            kind, name = result.kind, result.estimator
    stderr = None if any(e is None for e in errs) else np.concatenate(errs)
    return SplitScores(np.concatenate(nll), np.concatenate(frames), stderr, kind, name)


def _frames_per_example(batch) -> np.ndarray:
    lengths = getattr(batch, "frames_per_example", None)
    if lengths is None:
        lengths = batch.lengths
    return torch.as_tensor(lengths).double().numpy()
