"""RAISE: reverse annealed importance sampling of ``log p(x)`` (Burda, Grosse & Salakhutdinov 2015).

AIS over-estimates a log-likelihood in expectation; RAISE under-estimates it, so the two bracket
the truth (the *sandwich*). Its argument runs through a generative **annealing model**: draw
``x_0 ~ p_0``, then ``x_k ~ T_{beta_k}(. | x_{k-1})`` for ``k = 1..K`` and emit ``x_K``. Its
marginal ``p_ann(x_K)`` is a normalised distribution that tends to ``p_1 = f_1 / Z_1`` as ``K``
grows. With the reverse chain as proposal — start at the data ``x_K = x``, draw
``x_{k-1} ~ T_{beta_k}(. | x_k)`` for ``k = K..1`` — and each ``T_beta`` reversible for
``f_beta``, the importance weight of the annealing model's joint over that proposal telescopes to

.. math::

    w = \\frac{f_1(x)}{Z_0} \\prod_{k=0}^{K-1} \\frac{f_{\\beta_k}(x_k)}{f_{\\beta_{k+1}}(x_k)},
    \\qquad
    \\log \\hat p(x) = \\log \\frac1M \\sum_{m=1}^M w_m .

``E[w] = p_ann(x)`` exactly, so ``E[\\log \\hat p(x)] \\le \\log p_{ann}(x)`` (Jensen), and on data
the model fits ``E_p[\\log p_{ann}] \\le E_p[\\log p]`` (Gibbs' inequality, since ``p_ann`` is
normalised): RAISE is **biased downward** (conservative) in expectation, and the gap to AIS closes
as ``K`` grows. It needs no ``log Z`` — every ``x`` gets its own chains — so it costs ``M K``
transitions per scored configuration, like AIS per partition function.

Reference: Burda, Grosse & Salakhutdinov (2015), Accurate and conservative estimates of MRF
log-likelihood using reverse annealing. AISTATS.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.estimators.annealing import (AnnealingPath, annealing_schedule, check_schedule,
                                          log_mean_exp_with_stderr)
from probseq.precision import full_precision

__all__ = ["raise_log_prob", "raise_log_weights"]


@torch.no_grad()
@full_precision
def raise_log_weights(path: AnnealingPath, x: Tensor, betas: Tensor, chains: int,
                      generator: torch.Generator | None = None) -> Tensor:
    """``log w - log f_1(x) + log Z_0`` of each reverse chain, ``(chains, n)`` float64 (module doc)."""
    betas = check_schedule(betas)
    state = path.state(x, int(chains))
    log_w = None
    for k in range(len(betas) - 1, 0, -1):
        state = path.transition(state, float(betas[k]), generator)          # x_{k-1}
        inc = (path.log_density(state, float(betas[k - 1]))
               - path.log_density(state, float(betas[k]))).to(torch.float64)
        log_w = inc if log_w is None else log_w + inc
    return log_w


@full_precision
def raise_log_prob(path: AnnealingPath, x: Tensor, *, chains: int = 100, steps: int = 1000,
                   betas: Tensor | None = None, generator: torch.Generator | None = None
                   ) -> tuple[Tensor, Tensor]:
    """RAISE estimate of ``log p_1(x)`` for each target's configuration ``x`` (leading shape ``(n,)``).

    Returns ``(value, stderr)``, each ``(n,)`` float64; ``stderr`` is the delta-method error of the
    chains' spread (not the downward bias).
    """
    if int(chains) < 2:
        raise UserError(f"RAISE needs at least 2 chains to give a standard error, got {chains}")
    betas = annealing_schedule(steps) if betas is None else betas
    log_w = raise_log_weights(path, x, betas, chains, generator)
    value, stderr, _ = log_mean_exp_with_stderr(log_w, 0)
    log_f1 = path.log_density(path.state(x, 1), 1.0)[0].to(torch.float64)
    return log_f1 - path.log_base_partition().to(value.device) + value, stderr
