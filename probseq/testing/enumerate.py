"""Enumerate every sequence of a tiny sequence space, for normalisation checks."""

from __future__ import annotations

import itertools
from typing import Iterator

import torch

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec

__all__ = ["all_frames", "all_sequences", "random_batch"]


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
