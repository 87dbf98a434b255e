"""Oracles for NADE on tiny cases: enumeration of all 2^D vectors, a naive per-dimension NADE, and a
seeded chi-square goodness-of-fit test for samplers.

These are deliberately written the slow, obvious way (one pass per dimension, Python loops) so that
they share no code path with :mod:`probseq.frames.nade`'s cumulative-sum implementation.
"""

from __future__ import annotations

import itertools

import torch
from scipy import stats
from torch import Tensor

__all__ = ["all_binary_vectors", "naive_nade_log_prob", "naive_nade_conditionals",
           "enumerate_log_probs", "chi_square_pvalue", "vector_index"]


def all_binary_vectors(dim: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """All ``2^dim`` binary vectors, ``(2^dim, dim)``; row ``i`` is ``i`` in binary, dimension 0
    the most significant bit (so :func:`vector_index` inverts it)."""
    if dim > 20:
        raise ValueError(f"refusing to enumerate 2^{dim} vectors")
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=dim)), dtype=dtype).reshape(-1, dim)


def vector_index(x: Tensor) -> Tensor:
    """Row index of each binary vector ``(..., D)`` in :func:`all_binary_vectors` (int64)."""
    D = x.shape[-1]
    weights = 2 ** torch.arange(D - 1, -1, -1)
    return (x.long() * weights).sum(-1)


def naive_nade_conditionals(W: Tensor, V: Tensor, b: Tensor, c: Tensor, x: Tensor,
                            ordering: Tensor) -> Tensor:
    """Logits of ``p(x_{o_k} = 1 | x_{o_<k})`` for ONE vector, position by position, ``(D,)``.

    Every position recomputes its hidden layer from scratch, ``h_k = sigmoid(c + W[:, o_<k] x_{o_<k})``:
    ``D`` passes of O(DH), O(D^2 H) in all (the implementation the cumulative trick avoids).
    ``W`` is ``(H, D)``, ``V`` ``(D, H)``, ``b`` ``(D,)``, ``c`` ``(H,)``, ``x`` ``(D,)``.
    """
    logits = []
    for k in range(x.shape[0]):
        before = ordering[:k]
        a = c + W[:, before] @ x[before] if k > 0 else c.clone()
        h = torch.sigmoid(a)
        logits.append(b[ordering[k]] + V[ordering[k]] @ h)
    return torch.stack(logits)


def naive_nade_log_prob(W: Tensor, V: Tensor, b: Tensor, c: Tensor, x: Tensor,
                        ordering: Tensor) -> Tensor:
    """``log p(x | o)`` for a batch ``x`` ``(N, D)`` with per-example (``(N, D)``) or shared biases
    and orderings, by :func:`naive_nade_conditionals` one example at a time. Returns ``(N,)``."""
    N, D = x.shape
    b = b.expand(N, D)
    c = c.expand(N, c.shape[-1])
    ordering = ordering.expand(N, D)
    out = []
    for n in range(N):
        logits = naive_nade_conditionals(W, V, b[n], c[n], x[n], ordering[n])
        xo = x[n, ordering[n]]
        out.append((xo * logits - torch.nn.functional.softplus(logits)).sum())
    return torch.stack(out)


def enumerate_log_probs(log_prob_fn, dim: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """``log_prob_fn`` evaluated on all ``2^dim`` vectors at once, ``(2^dim, ...)``."""
    return log_prob_fn(all_binary_vectors(dim, dtype))


def chi_square_pvalue(observed_counts: Tensor, probs: Tensor, *, min_expected: float = 5.0) -> float:
    """Pearson chi-square goodness-of-fit p-value of ``observed_counts`` against ``probs``.

    Cells whose expected count is below ``min_expected`` are pooled into one cell (the usual rule
    for the chi-square approximation to hold). A test that rejects when ``p < alpha`` has false
    alarm rate ``alpha`` when the sampler is correct.
    """
    observed = observed_counts.detach().double()
    expected = probs.detach().double() * observed.sum()
    small = expected < min_expected
    if small.any():
        observed = torch.cat([observed[~small], observed[small].sum().reshape(1)])
        expected = torch.cat([expected[~small], expected[small].sum().reshape(1)])
    return float(stats.chisquare(observed.numpy(), expected.numpy() * observed.sum().item()
                                 / expected.sum().item()).pvalue)
