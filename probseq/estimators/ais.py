"""Annealed importance sampling of a log-partition function (Neal 2001; Salakhutdinov & Murray 2008).

Along an annealing path ``f_0, f_{beta_1}, ..., f_1`` (:class:`~probseq.estimators.annealing.AnnealingPath`)
each of ``M`` chains starts from the base, ``x_0 ~ p_0``, moves by ``x_k ~ T_{beta_k}(. | x_{k-1})``
(``k = 1..K-1``) and carries the log weight

.. math:: \\log w = \\sum_{k=1}^{K} \\big[\\log f_{\\beta_k}(x_{k-1}) - \\log f_{\\beta_{k-1}}(x_{k-1})\\big],
          \\qquad \\widehat{\\log Z_1} = \\log Z_0 + \\log \\frac1M \\sum_m w_m .

``E[w] = Z_1 / Z_0`` exactly, so ``E[\\widehat{\\log Z}] \\le \\log Z`` (Jensen): a log-likelihood
``log f_1(x) - \\widehat{\\log Z}`` is **biased upward** (optimistic) in expectation. The bias grows
when the chains fail to follow the path (too few intermediate distributions, long sequences of
per-step partition functions); the standard error (delta method,
:func:`~probseq.estimators.annealing.log_mean_exp_with_stderr`) covers the chains' spread only
and under-states the error then. The conservative counterpart is RAISE
(:mod:`probseq.estimators.reverse_annealing`).

References:
    Neal (2001), Annealed importance sampling. Statistics and Computing 11.
    Salakhutdinov & Murray (2008), On the quantitative analysis of deep belief networks. ICML.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.estimators.annealing import (AnnealingPath, annealing_schedule, check_schedule,
                                          log_mean_exp_with_stderr)
from probseq.precision import full_precision

__all__ = ["ais_log_partition", "ais_log_weights", "ais_schedule", "log_mean_exp_with_stderr"]

#: the schedule AIS uses by default (kept under its old name)
ais_schedule = annealing_schedule


@torch.no_grad()
@full_precision
def ais_log_weights(path: AnnealingPath, betas: Tensor, chains: int,
                    generator: torch.Generator | None = None) -> Tensor:
    """The chains' log importance weights ``log w`` ``(chains, n)`` (float64), see the module doc."""
    betas = check_schedule(betas)
    state = path.sample_base(int(chains), generator)
    log_w = None
    last = len(betas) - 1
    previous = path.log_density(state, 0.0)
    for k in range(1, last + 1):
        beta = float(betas[k])
        current = path.log_density(state, beta)
        inc = (current - previous).to(torch.float64)
        log_w = inc if log_w is None else log_w + inc
        if k == last:
            break
        state = path.transition(state, beta, generator)
        previous = path.log_density(state, beta)
    return log_w


@full_precision
def ais_log_partition(path: AnnealingPath, *, chains: int = 100, steps: int = 1000,
                      betas: Tensor | None = None, generator: torch.Generator | None = None
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """AIS estimate of ``log Z_1`` for each of the path's ``n`` targets.

    Args:
        path: the annealing path (base, target, transitions).
        chains: ``M`` (at least 2, for the standard error). steps: ``K`` (see
            :func:`~probseq.estimators.annealing.annealing_schedule`), unless ``betas`` is given.

    Returns ``(value, stderr, ess)``, each ``(n,)`` float64. Cost ``O(M K)`` transitions per target.
    """
    if int(chains) < 2:
        raise UserError(f"AIS needs at least 2 chains to give a standard error, got {chains}")
    betas = annealing_schedule(steps) if betas is None else betas
    log_w = ais_log_weights(path, betas, chains, generator)
    value, stderr, ess = log_mean_exp_with_stderr(log_w, 0)
    return value + path.log_base_partition().to(value.device), stderr, ess
