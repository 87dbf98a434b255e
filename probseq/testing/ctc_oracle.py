"""Brute-force CTC: enumerate all :math:`C^T` per-frame paths of a tiny input.

Every quantity the CTC dynamic program computes is a sum or a max over paths
:math:`\\pi \\in \\{0..C-1\\}^T` grouped by their label sequence :math:`\\mathcal{B}(\\pi)`. Here the
paths are listed one by one and :math:`\\mathcal{B}` is applied in plain Python, independently of
:mod:`probseq.ctc` (no lattice, no semiring), so the tests compare two unrelated computations.
Exponential cost: keep :math:`C^T` below about :math:`10^5`.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import torch
from torch import Tensor

__all__ = ["label_map", "paths", "label_distribution", "log_prob", "best_alignment",
           "alignment_posterior", "symbol_marginals", "map_labels"]


def label_map(path: tuple[int, ...], *, blank: int = 0, collapse_repeats: bool = True) -> tuple[int, ...]:
    """:math:`\\mathcal{B}(\\pi)`: merge runs of equal symbols (if ``collapse_repeats``), drop blanks."""
    out: list[int] = []
    previous = None
    for symbol in path:
        if symbol != blank and not (collapse_repeats and symbol == previous):
            out.append(symbol)
        previous = symbol
    return tuple(out)


def paths(log_probs: Tensor) -> list[tuple[tuple[int, ...], float]]:
    """Every path of ``log_probs (T, C)`` with its log-probability :math:`\\sum_t \\log y_t(\\pi_t)`."""
    y = log_probs.detach().double().tolist()
    steps, n_classes = len(y), len(y[0])
    if n_classes ** steps > 10 ** 6:
        raise ValueError(f"{n_classes}^{steps} paths is too many to enumerate")
    return [(p, math.fsum(y[t][s] for t, s in enumerate(p)))
            for p in itertools.product(range(n_classes), repeat=steps)]


def _logsumexp(values: list[float]) -> float:
    finite = [v for v in values if v > -math.inf]
    if not finite:
        return -math.inf
    m = max(finite)
    return m + math.log(math.fsum(math.exp(v - m) for v in finite))


def label_distribution(log_probs: Tensor, *, blank: int = 0,
                       collapse_repeats: bool = True) -> dict[tuple[int, ...], float]:
    """:math:`\\log p(l \\mid x)` of every label sequence with a path, by enumeration."""
    groups: dict[tuple[int, ...], list[float]] = defaultdict(list)
    for p, score in paths(log_probs):
        groups[label_map(p, blank=blank, collapse_repeats=collapse_repeats)].append(score)
    return {labels: _logsumexp(scores) for labels, scores in groups.items()}


def log_prob(log_probs: Tensor, labels: tuple[int, ...], *, blank: int = 0,
             collapse_repeats: bool = True) -> float:
    """:math:`\\log p(l \\mid x)` of one label sequence (``-inf`` if no path maps onto it)."""
    return _logsumexp([s for p, s in paths(log_probs)
                       if label_map(p, blank=blank, collapse_repeats=collapse_repeats) == tuple(labels)])


def best_alignment(log_probs: Tensor, labels: tuple[int, ...], *, blank: int = 0,
                   collapse_repeats: bool = True) -> tuple[tuple[int, ...] | None, float]:
    """The most probable path mapping onto ``labels`` and its log-probability (``None, -inf`` if none)."""
    best: tuple[tuple[int, ...] | None, float] = (None, -math.inf)
    for p, s in paths(log_probs):
        if s > best[1] and label_map(p, blank=blank, collapse_repeats=collapse_repeats) == tuple(labels):
            best = (p, s)
    return best


def alignment_posterior(log_probs: Tensor, labels: tuple[int, ...], *, blank: int = 0,
                        collapse_repeats: bool = True) -> dict[tuple[int, ...], float]:
    """:math:`p(\\pi \\mid l, x)` of every path that maps onto ``labels``."""
    matching = [(p, s) for p, s in paths(log_probs)
                if label_map(p, blank=blank, collapse_repeats=collapse_repeats) == tuple(labels)]
    total = _logsumexp([s for _, s in matching])
    return {p: math.exp(s - total) for p, s in matching}


def symbol_marginals(log_probs: Tensor, labels: tuple[int, ...], *, blank: int = 0,
                     collapse_repeats: bool = True) -> Tensor:
    """:math:`P(\\pi_t = c \\mid l, x)`, ``(T, C)`` float64."""
    out = torch.zeros(log_probs.shape, dtype=torch.float64)
    for p, weight in alignment_posterior(log_probs, labels, blank=blank,
                                         collapse_repeats=collapse_repeats).items():
        for t, s in enumerate(p):
            out[t, s] += weight
    return out


def map_labels(log_probs: Tensor, *, blank: int = 0,
               collapse_repeats: bool = True) -> tuple[tuple[int, ...], float]:
    """The most probable label sequence and its log-probability, by exhaustive search."""
    dist = label_distribution(log_probs, blank=blank, collapse_repeats=collapse_repeats)
    return max(dist.items(), key=lambda kv: kv[1])
