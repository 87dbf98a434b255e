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

from probseq.device import generator_for
from probseq.evaluate.chunking import DEFAULT_FRAME_BUDGET, score_batches
from probseq.likelihood import likelihood_labels

__all__ = ["SplitScores", "score_split"]


@dataclass
class SplitScores:
    """Per-sequence results of scoring one split with one model."""

    nll: np.ndarray            # (N,) NLL_i in nats
    n_frames: np.ndarray       # (N,) T_i (or the frame count a conditional model reports)
    stderr: np.ndarray | None  # (N,) estimator standard errors, or None
    kind: str
    estimator: str
    bias: str | None = None              # which way log p can err (probseq.likelihood.BIAS_DIRECTIONS)
    length_included: bool | None = None  # whether the values include log P(T)

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
            **likelihood_labels(self.kind, self.estimator, self.bias, self.length_included),
        }
        if self.stderr is not None:
            out["stderr"] = float(math.sqrt(float(np.sum(self.stderr ** 2))) / frames)
        return out


def score_split(model, examples: list[Any], *, estimator: str | None = None, samples: int | None = None,
                batch_size: int = 64, frame_budget: int | None = DEFAULT_FRAME_BUDGET,
                generator: torch.Generator | None = None, progress: bool = False) -> SplitScores:
    """Score every example with the model's likelihood; fails loudly on a NaN (never drops it).

    Memory is bounded by ``frame_budget`` frames per model call (sequences x time steps): models
    with time windows carry their state across windows of long sequences, the others get batches of
    whole sequences packed to the budget (:mod:`probseq.evaluate.chunking`); ``batch_size`` caps the
    sequences per call and ``frame_budget=None`` scores ``batch_size`` whole sequences at a time.
    The per-sequence results are in the order of ``examples`` whatever the batching.

    ``progress``: a tqdm bar over the minibatches (on stderr), for estimators that take minutes.
    """
    generator = generator or generator_for(model, 0)
    n = len(examples)
    nll, frames = np.full(n, np.nan), np.zeros(n)
    errs: np.ndarray | None = np.zeros(n)
    kind = name = bias = length = None
    model.eval()

    def bar(plan):
        return tqdm(plan, desc=f"score {model.name}", unit="batch", leave=False,
                    disable=not progress or len(plan) < 2)

    for scores in score_batches(model, examples, estimator=estimator, samples=samples,
                                batch_size=batch_size, frame_budget=frame_budget, generator=generator,
                                wrap=bar):
        values = scores.values
        if not torch.isfinite(values).all():
            bad = sorted(scores.indices[i] for i in torch.nonzero(~torch.isfinite(values)).flatten().tolist())
            raise FloatingPointError(
                f"log-likelihood is not finite for sequence(s) {bad[:5]} of the split"
            )
        nll[scores.indices] = -values.numpy()
        frames[scores.indices] = scores.frames
        if scores.stderr is None:
            errs = None
        elif errs is not None:
            errs[scores.indices] = scores.stderr.numpy()
        kind, name = scores.kind, scores.estimator
        bias, length = scores.bias, scores.length_included
    if length is None and getattr(model, "length_model", None) is not None:
        length = bool(model.length_model.models_length)
    return SplitScores(nll, frames, errs, kind, name, bias, length)
