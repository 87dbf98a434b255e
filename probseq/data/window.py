"""Time windows of a batch: the unit of chunked likelihood computation.

A recurrent model's log-likelihood is a sum over time, and what one step needs from the past is a
fixed-size state (an RNN's hidden vector, an RTRBM's mean-field ``r_{t-1}``). So
``log p(x_{1:T})`` can be computed window by window,

.. math::

    \\log p(x_{1:T}) = \\sum_{k} \\log p(x_{a_k+1 : a_{k+1}} \\mid s_{a_k}),
    \\qquad 0 = a_0 < a_1 < \\dots = T,

carrying the state ``s_{a_k}`` (the state after ``a_k`` frames) from one window to the next; the
memory is then that of ``batch x width`` frames instead of ``batch x T``, and the numbers are the
same (up to floating-point summation order). Models implement the per-window term as
:meth:`~probseq.models.base.SequenceModel.log_prob_window`; :func:`iterate_windows` cuts a batch into
:class:`TimeWindow` s whose ``batch x width`` stays within a frame budget.

The sequences of a windowed batch are sorted by decreasing length, so the sequences still running
at frame ``start`` are always the *first* ``n`` of the batch: a window holds only those, and a
state carried from the previous window is narrowed to its first ``n`` rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.errors import UserError

__all__ = ["TimeWindow", "iterate_windows", "sort_by_length"]


@dataclass(frozen=True)
class TimeWindow:
    """Frames ``start + 1 .. start + width`` (1-based) of the sequences still running at ``start``.

    Attributes:
        frames: a :class:`Batch` of the ``n`` running sequences: ``values`` ``(n, width, ...)`` are
            frames ``start + 1 .. start + width``, ``lengths`` ``(n,)`` the number of those frames
            that are real, ``min(T_i - start, width)`` (at least 1).
        start: how many frames of every sequence came before this window.
        lengths: ``(n,)`` the full lengths ``T_i`` of the running sequences (length models and the
            explicit model's remaining-steps input need them).
    """

    frames: Batch
    start: int
    lengths: Tensor

    @property
    def first(self) -> bool:
        """Whether this is the first window (``start == 0``)."""
        return self.start == 0

    @property
    def batch_size(self) -> int:
        return self.frames.batch_size

    @property
    def width(self) -> int:
        return self.frames.max_length

    def steps(self) -> Tensor:
        """``(width,)`` the 1-based time steps ``start + 1 .. start + width`` of the window's frames."""
        return torch.arange(self.start + 1, self.start + self.width + 1, device=self.lengths.device)

    def length_log_prob(self, length_model, stop_logits: Tensor | None) -> Tensor:
        """This window's share of ``log P(T)`` under ``length_model`` (``(n,)``).

        ``stop_logits[b, j]`` is the stop logit ``a_t`` after frame ``t = start + 1 + j`` (``None``
        for length models without one). Summed over the windows of a batch this equals
        ``length_model.log_prob(lengths, all stop logits)``; see
        :meth:`~probseq.lengths.LengthModel.log_prob_window`.
        """
        return length_model.log_prob_window(self.lengths, stop_logits, self.start)


def sort_by_length(batch: Batch) -> tuple[Batch, Tensor]:
    """The batch with its sequences in decreasing order of length, and the permutation used.

    ``sorted.values[i]`` is ``batch.values[order[i]]`` (a stable sort, so ties keep their order).
    """
    order = torch.sort(batch.lengths, descending=True, stable=True).indices
    return Batch(batch.values[order], batch.lengths[order]), order


def iterate_windows(batch: Batch, frame_budget: int) -> Iterator[TimeWindow]:
    """Cut ``batch`` (sorted by decreasing length) into consecutive :class:`TimeWindow` s.

    Each window holds the ``n`` sequences still running at its start and ``width = max(1,
    frame_budget // n)`` time steps (fewer at the end of the longest sequence), so
    ``n x width <= max(frame_budget, n)``. The windows partition every sequence's frames.
    """
    if frame_budget < 1:
        raise UserError(f"the frame budget must be a positive number of frames, got {frame_budget}")
    lengths = batch.lengths
    if lengths.numel() > 1 and bool((lengths[1:] > lengths[:-1]).any()):
        raise ValueError("iterate_windows needs a batch sorted by decreasing length (see sort_by_length)")
    longest = int(lengths[0])
    start = 0
    while start < longest:
        n = int((lengths > start).sum())
        stop = min(longest, start + max(1, frame_budget // n))
        running = lengths[:n]
        frames = Batch(batch.values[:n, start:stop], (running - start).clamp(max=stop - start))
        yield TimeWindow(frames, start, running)
        start = stop
