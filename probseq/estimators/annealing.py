"""The interface annealing estimators (AIS, RAISE) are written against, and their shared pieces.

An **annealing path** is a family of unnormalised densities ``f_beta(x)``, ``0 <= beta <= 1``, over
the states ``x`` of a batch of ``n`` independent targets (e.g. one RBM per frame of a batch of
sequences), with

* a tractable base ``p_0 = f_0 / Z_0``: :meth:`AnnealingPath.log_base_partition` gives
  ``log Z_0`` ``(n,)`` and :meth:`AnnealingPath.sample_base` exact draws;
* the target ``f_1`` (``Z_1`` is what AIS estimates);
* for every ``beta`` a Markov transition ``T_beta`` that leaves ``f_beta`` invariant and is
  *reversible* with respect to it (``T(x'|x) f(x) = T(x|x') f(x')``; block Gibbs ``v -> h -> v``
  is), which RAISE needs and AIS does not mind.

States are opaque to the estimators: a path may cache in them whatever makes
:meth:`AnnealingPath.log_density` cheap (the RBM caches ``W^T v``). Leading shape of every state:
``(chains, n)``; :meth:`AnnealingPath.log_density` returns ``(chains, n)``.

This module knows nothing about RBMs or models (the RBM's path is
:class:`probseq.frames.rbm_annealing.RBMAnnealingPath`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.precision import full_precision

__all__ = ["AnnealingPath", "LogPartition", "annealing_schedule", "check_schedule", "log_mean_exp_with_stderr"]

#: Salakhutdinov & Murray (2008, §4.2): 500 intermediate distributions uniformly spaced in
#: [0, 0.5], 4 000 in [0.5, 0.9] and 10 000 in [0.9, 1] — the same proportions at any length
_SM_PIECES = ((0.5, 500), (0.9, 4000), (1.0, 10000))


@dataclass
class LogPartition:
    """``log Z`` of one energy model or of a batch of them (e.g. one RBM per bias vector), with how it was computed.

    Attributes:
        value: ``(...)`` log-partition(s); the shape is the broadcast batch shape of the biases
            (``()`` for an RBM with its own biases).
        stderr: ``(...)`` standard error of ``value`` (AIS), ``None`` when exact.
        method: ``"exact"`` or ``"ais"``.
        chains, steps: the AIS chain count and number of intermediate distributions (``None`` if exact).
        ess: ``(...)`` effective sample size of the AIS weights (``None`` if exact).
    """

    value: Tensor
    stderr: Tensor | None
    method: str
    chains: int | None = None
    steps: int | None = None
    ess: Tensor | None = None


class AnnealingPath(Protocol):
    """A path of distributions from a tractable base (``beta = 0``) to a target (``beta = 1``)."""

    def log_base_partition(self) -> Tensor:
        """``log Z_0`` of the base, ``(n,)`` (float64)."""

    def sample_base(self, chains: int, generator: torch.Generator | None) -> Any:
        """``chains`` exact draws from the base for each target: a state of leading shape ``(chains, n)``."""

    def state(self, x: Tensor, chains: int) -> Any:
        """The state of data ``x`` (one configuration per target, leading shape ``(n,)``), repeated
        for ``chains`` chains."""

    def log_density(self, state: Any, beta: float) -> Tensor:
        """``log f_beta(x)``, ``(chains, n)``."""

    def transition(self, state: Any, beta: float, generator: torch.Generator | None) -> Any:
        """One step of a Markov chain that leaves ``f_beta`` invariant and is reversible for it."""


def annealing_schedule(steps: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """Inverse temperatures ``beta_0 = 0 < ... < beta_K = 1`` (``K = steps``), shape ``(K + 1,)``.

    Salakhutdinov & Murray's (2008) schedule scaled to ``K``: 500/14 500 of the steps evenly spaced
    in ``[0, 0.5]``, 4 000/14 500 in ``[0.5, 0.9]`` and 10 000/14 500 in ``[0.9, 1]``, dense near
    ``beta = 1`` where the distributions change fastest (each piece at least one step); fewer than
    10 steps are linear.
    """
    steps = int(steps)
    if steps < 1:
        raise UserError(f"annealing needs at least one intermediate distribution, got {steps}")
    if steps < 10:
        return torch.linspace(0.0, 1.0, steps + 1, dtype=dtype, device="cpu")
    total = sum(n for _, n in _SM_PIECES)
    counts = [max(1, round(steps * n / total)) for _, n in _SM_PIECES[:-1]]
    counts.append(steps - sum(counts))
    pieces, start = [torch.zeros(1, dtype=dtype, device="cpu")], 0.0
    for (end, _), count in zip(_SM_PIECES, counts):
        pieces.append(torch.linspace(start, end, count + 1, dtype=dtype, device="cpu")[1:])
        start = end
    return torch.cat(pieces)


def check_schedule(betas: Tensor) -> Tensor:
    """``betas`` as float64 after checking it increases strictly from 0 to 1."""
    betas = torch.as_tensor(betas, dtype=torch.float64, device="cpu")   # Python scalars: on the CPU
    if betas.dim() != 1 or len(betas) < 2 or float(betas[0]) != 0.0 or float(betas[-1]) != 1.0 \
            or bool((betas.diff() <= 0).any()):
        raise UserError("an annealing schedule must increase strictly from 0 to 1")
    return betas


@full_precision
def log_mean_exp_with_stderr(log_w: Tensor, dim: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``log mean exp(log_w)`` over ``dim``, its delta-method standard error, and the ESS.

    ``stderr = std(r) / (sqrt(M) mean(r))`` with ``r = exp(log_w - max log_w)``;
    ``ESS = (sum w)^2 / sum w^2``. The standard error covers the spread of the weights only (not
    the bias of the log, nor weights the chains never visited).
    """
    m = log_w.shape[dim]
    top = log_w.amax(dim, keepdim=True)
    r = torch.exp(log_w - top)
    mean_r = r.mean(dim)
    value = torch.log(mean_r) + top.squeeze(dim)
    stderr = r.std(dim, unbiased=True) / (math.sqrt(m) * mean_r)
    ess = r.sum(dim) ** 2 / (r * r).sum(dim)
    return value, stderr, ess
