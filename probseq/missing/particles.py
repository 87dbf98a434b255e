"""A particle filter over the missing values of a sequence: the marginal of the observed part, and
completions drawn given everything observed, before and after each gap.

For a model whose next frame has a distribution ``p(x_t | theta_t)`` with ``theta_t`` read from a
state that is updated by the frames fed back (``frame_params_of`` / ``advance``, the sampling hooks
of :class:`~probseq.models.base.SequenceModel`), the values of the partly observed frames enter the
future through the state. The marginal of the observed part,

.. math::

    p(x^{obs}_{1:T}) = \\sum_{x^{mis}_{1:T}} \\prod_{t=1}^{T} p(x_t \\mid x_{<t}),

is a sum over every completion. Sequential Monte Carlo (Doucet, de Freitas & Gordon 2001; the
bootstrap filter of Gordon, Salmond & Smith 1993 with a guided proposal) estimates it with ``K``
particles per sequence: at step ``t`` every particle draws its missing values from the frame's
proposal ``q(x^{mis}_t | x^{obs}_t, \\theta_t)`` and is weighted by
``w_t = p(x_t | \\theta_t) / q(x^{mis}_t)`` (:meth:`~probseq.frames.base.FrameDistribution.fill_missing`;
for factorial frames ``q`` is the exact conditional and ``w_t = p(x^{obs}_t | \\theta_t)``); when the
effective sample size falls below ``K / 2`` the particles are resampled (multinomially, in
proportion to their weights). The estimate

.. math:: \\hat p = \\prod_{\\text{resampling epochs } e} \\frac1K \\sum_k \\prod_{t \\in e} w_{t,k}

is **unbiased** for :math:`p(x^{obs})` (Del Moral 2004), so :math:`\\log \\hat p` is biased
**downward** in expectation (Jensen): a stochastic lower bound, labelled ``smc-K`` with kind
``bound`` (the taxonomy of :mod:`probseq.likelihood`, where the log of an importance-sampling
estimate is a bound). The halting / end-symbol length term depends on the states, so it is part
of the weights; an explicit ``P(T)`` is added once.

**Completions.** A trajectory drawn from the final particles in proportion to their weights (the
genealogy traced back through the resampling steps) is a draw from the SMC approximation of
:math:`p(x^{mis} \\mid x^{obs}_{1:T})`, which uses the observations *after* each gap through the
weights (the filter-smoother of Kitagawa 1996); it is exact as ``K -> infinity`` and degenerates
toward few distinct early paths for small ``K`` (path degeneracy), so it is an approximation.

Cost: ``T`` steps of the model on ``B K`` particles, plus the frame's proposal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.errors import UserError

__all__ = ["ParticleResult", "particle_filter", "FIXED_LAG"]


#: the default lag of the fixed-lag smoother behind :attr:`ParticleResult.posterior_mean`
FIXED_LAG = 10


@dataclass
class ParticleResult:
    """What :func:`particle_filter` returns.

    Attributes:
        log_marginal: ``(B,)`` :math:`\\log \\hat p(x^{obs})`, length term included where modelled.
        completions: ``(B, S, T, ...)`` drawn completions (observed values kept), or ``None``.
        min_ess: the smallest effective sample size seen, as a fraction of ``K`` (1 when the
            weights never differed).
        posterior_mean: ``(B, T, ...)`` the filter-smoother's estimate of
            :math:`E[x_t \\mid x^{obs}_{1:T}]`: every final particle's traced path weighted by its
            final weight (all ``K`` paths, not ``S`` draws from them), or ``None``. (Replacing a
            path's value by its conditional mean given the past would be wrong: the final weights
            depend on the value itself through the observations after it.)
    """

    log_marginal: Tensor
    completions: Tensor | None
    min_ess: float
    posterior_mean: Tensor | None = None


def _resample(log_w: Tensor, rows: Tensor, generator: torch.Generator | None) -> Tensor:
    """Ancestor indices ``(B, K)`` within each sequence's particles: multinomial draws in proportion
    to the weights for ``rows``, the identity elsewhere."""
    B, K = log_w.shape
    ident = torch.arange(K, device=log_w.device).expand(B, K).clone()
    if bool(rows.any()):
        probs = torch.softmax(log_w[rows].double(), 1)
        ident[rows] = torch.multinomial(probs, K, replacement=True, generator=generator).to(ident.device)
    return ident


def particle_filter(model, batch: Batch, *, particles: int, draws: int = 0, mode: bool = False,
                    generator: torch.Generator | None = None, objective: str = "weight",
                    resample_threshold: float = 0.5, posterior_mean: bool = False,
                    smoothing_lag: int | None = FIXED_LAG) -> ParticleResult:
    """Run the particle filter of the module docstring over ``batch`` (its ``observed`` mask).

    Args:
        model: a :class:`~probseq.models.base.SequenceModel` with a ``frame`` whose
            ``fill_missing`` is defined and the hooks ``initial_state``, ``frame_params_of``,
            ``advance``, ``select_states``, ``stop_logit``.
        particles: ``K`` per sequence.
        draws: completions ``S`` to return per sequence (0: none).
        mode: return the single highest-weight particle's path instead of ``S`` draws.
        objective: ``"weight"`` (the importance weights, for the likelihood and completions) or
            ``"observed"`` (the training objective: one particle, no resampling, and each step
            scored by ``frame.observed_loss`` with gradients, the missing inputs filled by a draw).
        resample_threshold: resample a sequence's particles when ``ESS < threshold K``.
        posterior_mean: also return the fixed-lag smoother's estimate of every frame's posterior mean:
            the value at ``t`` of every particle alive at step ``t + L``, weighted by its weight
            there (``L = smoothing_lag``; ``None``: the final weights). A short lag keeps many
            distinct values (resampling has not yet collapsed the paths onto few ancestors, the
            path degeneracy of Kitagawa 1996) and ignores only the observations more than ``L``
            steps after ``t``: consistent as ``K`` grows and ``L`` reaches the end, approximate.
    """
    if particles < 1:
        raise UserError(f"the number of particles must be positive, got {particles}")
    frame = model.frame
    lm = model.length_model
    B, T = batch.values.shape[:2]
    K = int(particles)
    N = B * K
    device = batch.values.device
    owner = torch.arange(B, device=device).repeat_interleave(K)          # particle -> sequence
    param = next(model.parameters(), None)
    x = batch.padded_with_zeros()
    if x.is_floating_point() and param is not None:
        x = x.to(param.dtype)
    observed = batch.observed_or_all
    lengths = batch.lengths[owner]
    state = model.initial_state(N, target_length=lengths if lm.input_dim else None)
    log_w = torch.zeros(B, K, dtype=x.dtype if x.is_floating_point() else torch.get_default_dtype(),
                        device=device)
    log_z = torch.zeros(B, dtype=log_w.dtype, device=device)
    keep = draws > 0 or mode or posterior_mean
    weight_history: list[Tensor] = []   # log weights after each step (posterior_mean)
    path: list[Tensor] = []          # filled frames (N, ...) per step
    ancestry: list[Tensor] = []      # (N,) index of each particle's parent among the step before's
    min_ess = 1.0
    offsets = (torch.arange(B, device=device) * K).unsqueeze(1)
    for t in range(T):
        alive = (t < batch.lengths)                                       # (B,)
        if objective == "weight" and t > 0 and K > 1:
            ess = torch.exp(2 * torch.logsumexp(log_w, 1) - torch.logsumexp(2 * log_w, 1)) / K
            min_ess = min(min_ess, float(ess[alive].min())) if bool(alive.any()) else min_ess
            rows = (ess < resample_threshold) & alive
            if bool(rows.any()):
                log_z = log_z + torch.where(rows, torch.logsumexp(log_w, 1) - math.log(K),
                                            torch.zeros_like(log_z))
                parents = (_resample(log_w, rows, generator) + offsets).reshape(N)
                state = model.select_states(state, parents)
                log_w = torch.where(rows.unsqueeze(1), torch.zeros_like(log_w), log_w)
                if keep:
                    ancestry.append(parents)
            elif keep:
                ancestry.append(torch.arange(N, device=device))
        elif keep:
            ancestry.append(torch.arange(N, device=device))
        params = model.frame_params_of(state)
        x_t, obs_t = x[owner, t], observed[owner, t]
        if objective == "weight":
            with torch.no_grad():
                filled, inc = frame.fill_missing(params, x_t, obs_t, generator=generator)
        else:
            with torch.no_grad():
                filled, _ = frame.fill_missing(params.detach(), x_t, obs_t, generator=generator)
            inc = -frame.observed_loss(params, x_t, obs_t, generator=generator)
        inc = torch.where(alive[owner], inc, torch.zeros_like(inc))
        log_w = log_w + inc.reshape(B, K).to(log_w.dtype)
        if keep:
            path.append(filled)
        if t + 1 < T or lm.head_dim:
            state = model.advance(state, filled)
        if lm.head_dim:
            stop = model.stop_logit(state)
            log_w = log_w + lm.log_prob_window(lengths, stop.unsqueeze(1), t).reshape(B, K).to(log_w.dtype)
        if posterior_mean:
            weight_history.append(log_w)
    log_z = log_z + torch.logsumexp(log_w, 1) - math.log(K)
    if not lm.head_dim:
        log_z = log_z + lm.log_prob(batch.lengths, None).to(log_z.dtype)
    completions = average = None
    if draws > 0 or mode:
        completions = _trace(path, ancestry, log_w, offsets, draws, mode, generator)
    if posterior_mean:
        average = _fixed_lag_means(path, ancestry, weight_history, B, K,
                                   T if smoothing_lag is None else int(smoothing_lag))
    return ParticleResult(log_z, completions, min_ess, average)


def _fixed_lag_means(path: list[Tensor], ancestry: list[Tensor], weight_history: list[Tensor], B: int,
                     K: int, lag: int) -> Tensor:
    """``(B, T, ...)``: for each ``t``, the particles at ``s = min(t + lag, T - 1)`` traced back to
    ``t``, their values averaged with their weights at ``s``. O(T lag B K)."""
    T = len(path)
    out = []
    for t in range(T):
        s = min(t + max(lag, 0), T - 1)
        index = torch.arange(B * K, device=path[t].device)
        for j in range(s, t, -1):
            index = ancestry[j][index]
        values = path[t][index].reshape(B, K, *path[t].shape[1:])
        weights = torch.softmax(weight_history[s].double(), 1).to(values.dtype)
        out.append((weights.reshape(B, K, *([1] * (values.dim() - 2))) * values).sum(1))
    return torch.stack(out, 1)


def _trace(path: list[Tensor], ancestry: list[Tensor], log_w: Tensor, offsets: Tensor, draws: int,
           mode: bool, generator: torch.Generator | None, pick: Tensor | None = None) -> Tensor:
    """Completions ``(B, S, T, ...)``: final particles picked by weight (or the best one, or the
    given ``pick`` ``(B, S)``), their paths traced back through the ancestry."""
    B, K = log_w.shape
    if pick is not None:
        pass
    elif mode:
        pick = log_w.argmax(1, keepdim=True)
    else:
        pick = torch.multinomial(torch.softmax(log_w.double(), 1), draws, replacement=True,
                                 generator=generator).to(log_w.device)
    index = (pick + offsets).reshape(-1)                                     # (B S,)
    frames = []
    for t in range(len(path) - 1, -1, -1):
        frames.append(path[t][index])
        index = ancestry[t][index]
    S = pick.shape[1]
    out = torch.stack(frames[::-1], 1)                                       # (B S, T, ...)
    return out.reshape(B, S, *out.shape[1:])
