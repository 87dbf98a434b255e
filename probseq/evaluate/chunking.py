"""Likelihood computation whose memory is bounded by a frame budget, not by batch x longest sequence.

Scoring a split used to pad ``batch_size`` whole sequences and run the model on all of them at
once, so memory grew with ``batch_size x T_max``: an RNN-NADE on the MuseData test split (pieces
of up to 4,273 frames) materialised every NADE hidden activation of 64 pieces, ``64 x 4273 x 88 x
150`` floats, and peaked at 16 GB. Here memory is bounded by a **frame budget**: the number of
frames (``sequences x time steps``) the model sees in one call.

* **Time windows** (models with ``supports_time_windows``: the recurrent backbones ``rnn``, ``gru``,
  ``lstm``, ``mrnn`` and the models built on them, ``rnn-nade``, ``rnn-rbm``; ``rtrbm``;
  ``independent``, ``nade``):
  sequences are sorted by length and grouped ``batch_size`` at a time; each group is
  cut into windows of ``n x W <= frame_budget`` frames (:func:`probseq.data.window.iterate_windows`)
  and the model's state is carried from one window to the next
  (:meth:`~probseq.models.base.SequenceModel.log_prob_window`), so the log-likelihoods are those of
  the whole sequences (equal up to floating-point summation order; tested for every such family,
  with length models). Length terms enter exactly once per sequence: per-step halting / end-symbol
  terms in the window of their step, an explicit ``log P(T)`` in the first window.
* **Packing** (every other model): sequences sorted by length are packed into batches with
  ``n x T_max <= frame_budget`` (a sequence longer than the budget forms a batch of its own). Used
  by models whose estimator is not a sum over time of terms given a carried deterministic state:
  ``trbm`` (importance sampling over its stochastic hidden sequences), ``vrnn`` and ``vhred``
  (IWAE-k is a log-mean-exp over *whole-sequence* weights, and windowing it would change the
  estimator; the ELBO would need the posterior's state as well). Models whose examples are not
  frame tensors (``ctc``: audio with labels; ``hred``, ``vhred``: dialogues) are batched as before,
  ``batch_size`` at a time, in their order.

AIS in the RBM family is unaffected by windowing in distribution: every frame's ``log Z_t`` is
estimated by its own independent chains (:func:`probseq.estimators.ais.ais_log_partition`), so
scoring a frame in one window or another draws from the same estimator.

The default budget, :data:`DEFAULT_FRAME_BUDGET`, keeps an RNN-NADE with 150 NADE units (the
largest per-frame footprint among the default models: the NADE keeps ``D x H`` activations per
frame, ~60 KB) at 1.2 GB resident on the MuseData test split, against ~16 GB for 64 whole pieces
per call (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np
import torch

from probseq.data.window import iterate_windows, sort_by_length
from probseq.device import generator_for
from probseq.errors import UserError

__all__ = ["DEFAULT_FRAME_BUDGET", "resolve_frame_budget", "example_frames", "plan_batches", "BatchScores", "score_batches",
           "bounded_validation_loss", "validation_totals"]

#: frames (sequences x time steps) one model call may hold; see the module docstring
DEFAULT_FRAME_BUDGET = 8192


def resolve_frame_budget(value: int | None) -> int | None:
    """The ``--frame-budget`` option: ``None`` -> :data:`DEFAULT_FRAME_BUDGET`, ``0`` -> unbounded
    (``None``: whole sequences, ``batch_size`` at a time), a positive number as it is."""
    if value is None:
        return DEFAULT_FRAME_BUDGET
    if int(value) < 0:
        raise UserError(f"the frame budget must be a positive number of frames (0: unbounded), got {value}")
    return int(value) or None


def example_frames(example: Any) -> int | None:
    """The number of frames of a dataset example: ``T`` of a ``(T, ...)`` tensor or array; ``None``
    for examples that are not frame tensors (CTC audio with labels, dialogues)."""
    if isinstance(example, (torch.Tensor, np.ndarray)) and example.ndim >= 1:
        return int(example.shape[0])
    return None


def plan_batches(sizes: list[int | None], *, frame_budget: int, batch_size: int,
                 windows: bool) -> list[list[int]]:
    """Group example indices into batches, longest first.

    Args:
        sizes: frames per example (:func:`example_frames`); if any is ``None`` the examples are
            grouped ``batch_size`` at a time in their own order (no packing is possible).
        frame_budget: frames per model call.
        batch_size: at most this many sequences per batch.
        windows: the model scores time windows, so a batch need not fit the budget in time: groups
            of ``batch_size`` sequences of similar length (also at most ``frame_budget`` of them,
            so that every window holds at least one step). Otherwise batches are packed so that
            ``n x T_max <= frame_budget`` (a longer sequence alone).
    """
    if frame_budget < 1:
        raise UserError(f"the frame budget must be a positive number of frames, got {frame_budget}")
    if batch_size < 1:
        raise UserError(f"the batch size must be positive, got {batch_size}")
    n = len(sizes)
    if any(s is None for s in sizes):
        return [list(range(i, min(n, i + batch_size))) for i in range(0, n, batch_size)]
    order = sorted(range(n), key=lambda i: -sizes[i])
    if windows:
        step = min(batch_size, frame_budget)
        return [order[i:i + step] for i in range(0, n, step)]
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= batch_size or (len(current) + 1) * sizes[current[0]] > frame_budget):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


@dataclass
class BatchScores:
    """The log-likelihoods of one planned batch, in the order of its ``indices``."""

    indices: list[int]
    values: torch.Tensor              # (n,) log p of each sequence
    stderr: torch.Tensor | None       # (n,) or None
    frames: np.ndarray                # (n,) frames of each example (for conditional models, theirs)
    kind: str
    estimator: str
    bias: str | None = None
    length_included: bool | None = None


def _frames_per_example(batch) -> np.ndarray:
    lengths = getattr(batch, "frames_per_example", None)
    if lengths is None:
        lengths = batch.lengths
    return torch.as_tensor(lengths).double().cpu().numpy()


def _windowed_log_prob(model, batch, frame_budget: int, **kwargs):
    """``model.log_prob(batch)`` computed window by window; ``batch`` sorted by decreasing length."""
    state = model.window_state(batch)
    total = torch.zeros(batch.batch_size, dtype=torch.float64, device=batch.lengths.device)
    variance = None
    result = None
    for window in iterate_windows(batch, frame_budget):
        result, state = model.log_prob_window(window, state, **kwargs)
        n = window.batch_size
        total[:n] += result.values.double()
        if result.stderr is not None:
            if variance is None:
                variance = torch.zeros_like(total)
            variance[:n] += result.stderr.double() ** 2
    stderr = None if variance is None else variance.sqrt()
    return total, stderr, result


def _share_of_plan(examples: list[Any], *, batch_size: int, frame_budget: int | None, windows: bool,
                   part: tuple[int, int]) -> list[list[int]]:
    """Batches of example indices under the frame budget (:func:`plan_batches`; ``None``:
    ``batch_size`` examples at a time, in order), and of those the share ``r, r + W, ...`` of
    rank ``r`` for ``part = (r, W)``. The plan is the same on every rank."""
    if frame_budget is None:
        plan = [list(range(i, min(len(examples), i + batch_size))) for i in range(0, len(examples), batch_size)]
    else:
        plan = plan_batches([example_frames(e) for e in examples], frame_budget=frame_budget,
                            batch_size=batch_size, windows=windows)
    rank, world_size = part
    return plan[rank::world_size]


def score_batches(model, examples: list[Any], *, estimator: str | None = None, samples: int | None = None,
                  batch_size: int = 64, frame_budget: int | None = DEFAULT_FRAME_BUDGET,
                  generator: torch.Generator | None = None,
                  wrap: Callable[[list], Any] | None = None,
                  part: tuple[int, int] = (0, 1)) -> Iterator[BatchScores]:
    """Score ``examples`` with ``model`` under a frame budget; yields one :class:`BatchScores` per batch.

    ``frame_budget=None`` restores the unbounded behaviour (``batch_size`` whole sequences per call,
    in the examples' order). ``wrap`` wraps the list of planned batches (a progress bar).
    ``part=(r, W)`` scores only the planned batches ``r, r + W, r + 2W, ...`` (rank ``r`` of a
    ``W``-process job; the plan is the same on every rank). Runs without gradients; the caller puts
    the model in evaluation mode.
    """
    kwargs = {"estimator": estimator, "samples": samples, "generator": generator}
    windows = bool(getattr(model, "supports_time_windows", False)) and frame_budget is not None
    plan = _share_of_plan(examples, batch_size=batch_size, frame_budget=frame_budget, windows=windows,
                          part=part)
    with torch.no_grad():
        for indices in (wrap(plan) if wrap is not None else plan):
            batch = model.collate([examples[i] for i in indices])
            # missing values: the particle filter runs over whole sequences (its particles are
            # not carried between windows), so a batch with holes is scored in one call
            if windows and not getattr(batch, "has_missing", False):
                sorted_batch, order = sort_by_length(batch)
                values, stderr, result = _windowed_log_prob(model, sorted_batch, frame_budget, **kwargs)
                indices = [indices[i] for i in order.tolist()]
                batch = sorted_batch
            else:
                result = model.log_prob(batch, **kwargs)
                values = result.values.double()
                stderr = None if result.stderr is None else result.stderr.double()
            yield BatchScores(indices, values.cpu(), None if stderr is None else stderr.cpu(),
                              _frames_per_example(batch), result.kind, result.estimator,
                              getattr(result, "bias", None), getattr(result, "length_included", None))


def bounded_validation_loss(model, examples: list[Any], *, batch_size: int,
                            frame_budget: int | None = DEFAULT_FRAME_BUDGET) -> float:
    """The trainer's validation score, pooled per frame, under a frame budget.

    Models whose validation score is their exact NLL (``validation_is_nll``) are scored by
    :func:`score_batches` (time windows where supported); the others' ``validation_loss`` is
    averaged over batches packed to the budget, weighted by frames (so is an instance whose
    ``validation_loss`` was replaced, e.g. by a test). Restores the training mode.
    """
    total, frames = validation_totals(model, examples, batch_size=batch_size, frame_budget=frame_budget)
    return total / max(frames, 1.0)


def validation_totals(model, examples: list[Any], *, batch_size: int,
                      frame_budget: int | None = DEFAULT_FRAME_BUDGET,
                      part: tuple[int, int] = (0, 1)) -> tuple[float, float]:
    """``(sum of the validation loss over frames, frames)`` for rank ``part[0]`` of ``part[1]``.

    The batches are planned once, identically on every rank, and rank ``r`` scores batches
    ``r, r + W, ...`` of the plan; summing the pairs over ranks (one all-reduce) and dividing gives
    :func:`bounded_validation_loss` of one process exactly, up to the order of the sums, also for
    validation losses that draw random numbers from a generator seeded on every call (AIS in the
    RBM family: every batch is scored with the same composition and seed as in one process).
    """
    was_training = model.training
    model.eval()
    try:
        if getattr(model, "validation_is_nll", False) and "validation_loss" not in vars(model):
            nll = frames = 0.0
            for scores in score_batches(model, examples, batch_size=batch_size, frame_budget=frame_budget,
                                        generator=generator_for(model, 0), part=part):
                nll -= float(scores.values.sum())
                frames += float(scores.frames.sum())
            return nll, frames
        total, frames = 0.0, 0.0
        for indices in _share_of_plan(examples, batch_size=batch_size, frame_budget=frame_budget,
                                      windows=False, part=part):
            batch = model.collate([examples[i] for i in indices])
            total += model.validation_loss(batch) * batch.n_frames
            frames += batch.n_frames
        return total, frames
    finally:
        model.train(was_training)
