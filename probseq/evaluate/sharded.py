"""Scoring a split over several processes, with the same result as one process.

``probseq evaluate`` and ``probseq compare`` score through :func:`score_split_sharded`, in one
process or under ``torchrun --nproc_per_node=N``:

1. the split is cut into the batches :mod:`probseq.evaluate.chunking` plans (a frame budget, time
   windows or packing): a pure function of the examples, ``batch_size`` and ``frame_budget``;
2. batch ``j`` is scored by rank ``j mod W`` with its own generator, seeded from ``(seed, j)`` on
   the model's device (:func:`batch_seed`) — so each sequence's random stream (AIS chains, IWAE
   samples) depends on the batch it is in, never on which rank scored it or how many ranks there
   are;
3. every rank's per-sequence values are gathered to rank 0, which assembles the
   :class:`~probseq.evaluate.scoring.SplitScores` in the order of the examples.

Hence the printed figures are identical for any number of processes (for exact models as well as
for stochastic estimators), and the expensive part — AIS chains, IWAE samples — spreads over all
processes. The Python function :func:`probseq.evaluate.scoring.score_split` instead draws every
batch from one generator passed in; both are seeded and reproducible, but their stochastic
estimates use different draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from probseq.device import generator_for
from probseq.evaluate.chunking import (DEFAULT_FRAME_BUDGET, BatchScores, example_frames, plan_batches,
                                       score_batches)
from probseq.evaluate.scoring import SplitScores
from probseq.parallel import Distributed, current

__all__ = ["batch_seed", "plan_split", "score_split_sharded"]


def batch_seed(seed: int, index: int) -> int:
    """The seed of batch ``index`` of a split scored with ``seed`` (a fixed mixing of the two)."""
    return (int(seed) * 1_000_003 + int(index) * 7_919 + 12_345) % (2 ** 63 - 1)


def plan_split(model, examples: list[Any], *, batch_size: int, frame_budget: int | None) -> list[list[int]]:
    """The batches (lists of example indices) a split is scored in; the same on every rank."""
    if frame_budget is None:
        return [list(range(i, min(len(examples), i + batch_size))) for i in range(0, len(examples), batch_size)]
    windows = bool(getattr(model, "supports_time_windows", False))
    return plan_batches([example_frames(e) for e in examples], frame_budget=frame_budget,
                        batch_size=batch_size, windows=windows)


def _score_one_batch(model, examples, indices, *, estimator, samples, batch_size, frame_budget,
                     seed) -> BatchScores:
    """One planned batch through :func:`score_batches` (which plans it as the same single batch)."""
    subset = [examples[i] for i in indices]
    generator = generator_for(model, seed)
    results = list(score_batches(model, subset, estimator=estimator, samples=samples,
                                 batch_size=max(batch_size, len(subset)), frame_budget=frame_budget,
                                 generator=generator))
    local = [i for r in results for i in r.indices]
    values = torch.cat([r.values for r in results])
    stderr = None if any(r.stderr is None for r in results) else torch.cat([r.stderr for r in results])
    frames = np.concatenate([r.frames for r in results])
    first = results[0]
    return BatchScores([indices[i] for i in local], values, stderr, frames, first.kind, first.estimator,
                       first.bias, first.length_included)


def score_split_sharded(model, examples: list[Any], *, estimator: str | None = None,
                        samples: int | None = None, batch_size: int = 64,
                        frame_budget: int | None = DEFAULT_FRAME_BUDGET, seed: int = 0,
                        job: Distributed | None = None, progress: bool = False) -> SplitScores | None:
    """Score ``examples``: this rank's share of the batches, gathered on rank 0.

    Returns the :class:`SplitScores` on rank 0 (and in a single process), ``None`` on other ranks.
    Raises :class:`FloatingPointError` on every rank if any sequence's log-likelihood is not finite.
    """
    job = job or current()
    model.eval()
    plan = plan_split(model, examples, batch_size=batch_size, frame_budget=frame_budget)
    mine = list(enumerate(plan))[job.rank::job.world_size]
    rows = []
    bar = tqdm(mine, desc=f"score {model.name}", unit="batch", leave=False,
               disable=not progress or not job.is_main or len(mine) < 2)
    for j, indices in bar:
        scores = _score_one_batch(model, examples, indices, estimator=estimator, samples=samples,
                                  batch_size=batch_size, frame_budget=frame_budget,
                                  seed=batch_seed(seed, j))
        rows.append((scores.indices, scores.values.double().numpy(),
                     None if scores.stderr is None else scores.stderr.double().numpy(),
                     scores.frames, scores.kind, scores.estimator, scores.bias, scores.length_included))
    gathered = job.gather_objects(rows)
    bad_flag, bad = 0.0, []
    result = None
    if job.is_main:
        result, bad = _assemble(len(examples), [row for part in gathered for row in part])
        if result.length_included is None and getattr(model, "length_model", None) is not None:
            result.length_included = bool(model.length_model.models_length)
        if bad:
            bad_flag = 1.0
    if job.broadcast_value(bad_flag) > 0:
        raise FloatingPointError(
            f"log-likelihood is not finite for sequence(s) {bad[:5] or '(see rank 0)'} of the split")
    return result


def _assemble(n: int, rows) -> tuple[SplitScores, list[int]]:
    nll, frames = np.full(n, np.nan), np.zeros(n)
    errs: np.ndarray | None = np.zeros(n)
    kind = name = bias = length = None
    for indices, values, stderr, fr, kind, name, bias, length in rows:
        nll[indices] = -values
        frames[indices] = fr
        if stderr is None:
            errs = None
        elif errs is not None:
            errs[indices] = stderr
    bad = sorted(int(i) for i in np.nonzero(~np.isfinite(nll))[0])
    return SplitScores(nll, frames, errs, kind, name, bias, length), bad
