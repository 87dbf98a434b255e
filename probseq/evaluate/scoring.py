"""Scoring held-out sequences: per-sequence NLL, both per-frame conventions, and their errors.

Conventions (DESIGN.md): NLL in nats, positive, lower is better.

* pooled: ``nll_per_frame = sum_i NLL_i / sum_i T_i``;
* sequence-averaged: ``nll_per_frame_seq_avg = mean_i (NLL_i / T_i)``.

``stderr`` is the *estimator's* standard error of the pooled figure (``None`` for exact values and
for bounds without one): with independent per-sequence errors ``s_i``,
``stderr = sqrt(sum_i s_i^2) / sum_i T_i``. The spread over test sequences is a different thing; it
enters the paired comparisons of :mod:`probseq.evaluate.compare`.

``note`` (:func:`estimator_note`): when the number came from a quick default setting of an
estimator (AIS with few chains and intermediate distributions, an ELBO), one sentence saying how to
ask for the expensive, tighter setting and about how much longer it takes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from probseq.device import generator_for
from probseq.evaluate.chunking import DEFAULT_FRAME_BUDGET, score_batches
from probseq.likelihood import likelihood_labels

__all__ = ["SplitScores", "score_split", "estimator_note"]

#: the tighter annealing setting a note points to: chains x intermediate distributions per frame
_TIGHT_CHAINS, _TIGHT_STEPS = 20, 1000
#: the TRBM's trajectories in that setting
_TIGHT_TRAJECTORIES = 10
_ANNEALED = re.compile(r"^(?:is-(\d+)-)?(ais|raise)-(\d+)x(\d+)$")


def estimator_note(estimator: str) -> str | None:
    """How to ask for a tighter figure than the one labelled ``estimator``, or ``None``.

    ``ais-CxS`` / ``raise-CxS`` (RBM frames: ``C`` chains x ``S`` intermediate distributions per
    frame) and ``is-K-ais-CxS`` (TRBM: ``K`` hidden trajectories) below 20 x 1000 (and 10
    trajectories): the tighter setting by name and its cost relative to this one. ``elbo`` and
    ``iwae-K`` below 1000: the importance-weighted bound with 1000 samples.
    """
    m = _ANNEALED.match(estimator)
    if m:
        trajectories, method, chains, steps = m.groups()
        k = int(trajectories) if trajectories else None
        work = (k or 1) * int(chains) * int(steps)
        tight_k = max(k or 1, _TIGHT_TRAJECTORIES) if k else 1
        tight = tight_k * max(int(chains), _TIGHT_CHAINS) * max(int(steps), _TIGHT_STEPS)
        if tight <= work:
            return None
        option = f"--estimator {method}-{max(int(chains), _TIGHT_CHAINS)}x{max(int(steps), _TIGHT_STEPS)}"
        if k:
            option += f" --samples {tight_k}"
        other = "raise" if method == "ais" else "ais"
        return (f"a quick setting ({chains} chains x {steps} intermediate distributions per frame"
                + (f", {k} hidden trajectories" if k else "") + f"); for the tighter one pass {option} "
                f"(about {tight / work:.0f} times as long), and the same with {other} for the other "
                "side of the sandwich")
    if estimator == "elbo" or (estimator.startswith("iwae-") and estimator[5:].isdigit()
                               and int(estimator[5:]) < 1000):
        return (f"a lower bound ({estimator}); --estimator iwae --samples 1000 gives a tighter one "
                "(the cost grows with the samples)")
    return None


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
        note = estimator_note(self.estimator)
        if note is not None:
            out["note"] = note
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
