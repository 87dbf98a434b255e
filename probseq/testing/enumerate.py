"""Enumerate every sequence of a tiny sequence space, for normalisation checks.

:func:`total_probability` is the length oracle: the mass of every sequence of every length up to
``L``, plus, for unbounded length models (``halting``, ``end-symbol``), the exact probability of
not having stopped after ``L`` frames, so the total is exactly one.
"""

from __future__ import annotations

import itertools
from typing import Iterator

import torch
import torch.nn.functional as F

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec

__all__ = ["all_frames", "all_sequences", "random_batch", "total_probability"]


def all_frames(spec: DataSpec) -> torch.Tensor:
    """Every possible frame: ``(2^D, D)`` binary vectors or ``(K,)`` symbols."""
    if spec.kind == "binary":
        return torch.tensor(list(itertools.product((0.0, 1.0), repeat=spec.dim)))
    if spec.kind == "categorical":
        return torch.arange(spec.dim)
    raise ValueError("only binary and categorical frames can be enumerated")


def all_sequences(spec: DataSpec, length: int, *, chunk: int = 4096) -> Iterator[Batch]:
    """Every sequence of exactly ``length`` frames, in batches of at most ``chunk``."""
    frames = all_frames(spec)
    n = frames.shape[0]
    total = n ** length
    for start in range(0, total, chunk):
        idx = torch.arange(start, min(start + chunk, total))
        digits = torch.stack([(idx // n ** (length - 1 - t)) % n for t in range(length)], 1)
        yield Batch(frames[digits], torch.full((len(idx),), length, dtype=torch.long))


def random_batch(spec: DataSpec, lengths: list[int], *, generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None) -> Batch:
    """A batch of random data of the right kind (Bernoulli(0.5), N(0, 1) or uniform symbols)."""
    generator = generator or torch.Generator().manual_seed(0)
    dtype = dtype or torch.get_default_dtype()
    steps = max(lengths)
    n = len(lengths)
    if spec.kind == "binary":
        values = torch.bernoulli(torch.full((n, steps, spec.dim), 0.5, dtype=dtype), generator=generator)
    elif spec.kind == "real":
        values = torch.randn(n, steps, spec.dim, generator=generator, dtype=dtype)
    else:
        values = torch.randint(spec.dim, (n, steps), generator=generator)
    return Batch(values, torch.tensor(lengths))


def _stop_logit_after(model, batch: Batch) -> torch.Tensor:
    """The stop logit ``a_L`` after reading every frame of ``batch`` (the sampling hooks)."""
    state = model.initial_state(batch.batch_size, target_length=None)
    for x_t in batch.values.unbind(1):
        state = model.advance(state, x_t)
    return model.stop_logit(state)


@torch.no_grad()
def total_probability(model, spec: DataSpec, max_length: int, *, unbounded: bool) -> float:
    r"""Total mass of a model's sequences of lengths ``1..L`` (``L = max_length``), in float64.

    .. math:: \sum_{T \le L} \sum_{x_{1:T}} p(x_{1:T}, T)
              + [\text{unbounded}] \sum_{x_{1:L}} p(x_{1:L}, T > L),

    with ``log p(x_{1:L}, T > L) = log p(x_{1:L}, T = L) - log sigmoid(a_L) + log sigmoid(-a_L)``,
    ``a_L`` the stop logit after ``L`` frames. Equals one for a normalised length model (``explicit``
    with support ``1..L``: ``unbounded=False``). Cost: ``|frames|^L`` sequences.
    """
    total = torch.zeros((), dtype=torch.float64)
    for length in range(1, max_length + 1):
        for batch in all_sequences(spec, length):
            lp = model.log_prob(batch).values.double()
            total += lp.exp().sum()
            if unbounded and length == max_length:
                a = _stop_logit_after(model, batch).double()
                total += (lp - F.logsigmoid(a) + F.logsigmoid(-a)).exp().sum()
    return float(total)
