"""Likelihood estimators shared by every latent-variable model (VRNN, VHRED, ...).

A latent-variable model with a proposal (inference network) ``q(z | x)`` gives, for ``K``
independent draws ``z^{(k)} ~ q(z | x)``, the log importance weights

.. math:: \\log w_k = \\log p(x, z^{(k)}) - \\log q(z^{(k)} \\mid x), \\qquad k = 1..K,

stored as a ``(K, B)`` tensor (one column per sequence). Every estimator here is a function of
that tensor, so a model only has to produce log weights (:func:`collect_log_weights` helps to draw
them in memory-bounded chunks):

``elbo``  (kind ``bound``)
    :math:`\\mathcal{L}_1 = E_q[\\log w]`, estimated by :math:`\\frac1K\\sum_k \\log w_k`, with the
    Monte-Carlo standard error :math:`\\mathrm{sd}(\\log w)/\\sqrt K` when ``K > 1``. Any unbiased
    per-sample estimate of the ELBO may be passed instead of ``log w`` (e.g. with the KL term in
    closed form, which has lower variance).
``iwae-k`` (kind ``bound``; Burda, Grosse & Salakhutdinov 2016, eq. 8)
    :math:`\\mathcal{L}_k = E\\big[\\log \\frac1k \\sum_{j=1}^k w_j\\big]`. With ``K = G k`` draws it
    is estimated by the mean over ``G`` disjoint groups of ``k`` (standard error over the groups
    when ``G > 1``). :math:`\\mathcal{L}_1 \\le \\mathcal{L}_k \\le \\mathcal{L}_{k'} \\le \\log p(x)`
    for ``k | k'``; on a *fixed* set of draws the grouped estimates are ordered the same way
    (concavity of ``log``), which the tests check exactly.
``is-K``  (kind ``bound``, as everywhere in probseq: :mod:`probseq.likelihood`)
    :math:`\\log \\hat p(x) = \\log \\frac1K \\sum_k w_k` — numerically the IWAE-K value:
    :math:`\\hat p(x)` is unbiased for :math:`p(x)`, so its log is a stochastic lower bound
    (Jensen), consistent, with a negative bias of order :math:`\\mathrm{Var}(w)/(2K\\,p(x)^2)`. Its
    standard error is the delta-method one (Owen 2013, *Monte Carlo theory, methods and examples*,
    §9.2),

    .. math:: \\mathrm{se}\\big(\\log \\hat p\\big) \\approx
              \\frac{\\mathrm{sd}(w)}{\\sqrt K\\,\\bar w}
              = \\frac{\\mathrm{sd}(w / \\bar w)}{\\sqrt K},

    computed from the self-normalised weights ``w_k / mean(w)`` (no overflow), or, with
    ``groups=G``, the spread of ``G`` independent group estimates divided by ``sqrt(G)``.

A NaN or ``+-inf`` log weight raises :class:`FloatingPointError`: it is never dropped silently
(DESIGN.md, "Evaluation conventions"). Everything is vectorised over the batch; all functions work
in the dtype of the weights (use float64 for tight tests).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.likelihood import LogProb
from probseq.precision import full_precision, upcast

__all__ = [
    "LATENT_ESTIMATORS",
    "check_log_weights",
    "log_mean_exp",
    "elbo",
    "iwae",
    "importance_sampled",
    "estimate",
    "collect_log_weights",
    "effective_sample_size",
]

#: the estimator names a latent-variable model accepts (``probseq evaluate --estimator``)
LATENT_ESTIMATORS = ("elbo", "iwae", "is")


def check_log_weights(log_weights: Tensor, what: str = "log importance weights") -> Tensor:
    """Validate a ``(K, B)`` tensor of log weights; raise on NaN or infinite entries.

    Returns the tensor unchanged. ``-inf`` (a draw the model deems impossible) is rejected too: a
    proposal that puts mass where the model has none signals a bug, and silently averaging it away
    would hide it.
    """
    if log_weights.dim() != 2:
        raise ValueError(f"{what} must have shape (K, B), got {tuple(log_weights.shape)}")
    if log_weights.shape[0] < 1:
        raise ValueError(f"{what} need at least one sample (K >= 1)")
    bad = ~torch.isfinite(log_weights)
    if bool(bad.any()):
        k, b = (int(i) for i in bad.nonzero()[0])
        raise FloatingPointError(
            f"{int(bad.sum())} of the {what} are NaN or infinite (first: sample {k} of sequence {b}, "
            f"value {float(log_weights[k, b].detach())}); refusing to drop them silently"
        )
    return log_weights


@full_precision
def log_mean_exp(x: Tensor, dim: int = 0) -> Tensor:
    """``log(mean(exp(x)))`` along ``dim``, stably (``logsumexp - log n``)."""
    return torch.logsumexp(x, dim) - math.log(x.shape[dim])


def _stderr_of_mean(values: Tensor) -> Tensor | None:
    """``sd / sqrt(n)`` along dim 0 (unbiased sd), or ``None`` for a single value."""
    n = values.shape[0]
    if n < 2:
        return None
    return values.std(0, unbiased=True) / math.sqrt(n)


@full_precision
def elbo(log_weights: Tensor) -> LogProb:
    """The ELBO: mean over the ``K`` rows of ``(K, B)`` per-sample ELBO terms; kind ``bound``.

    ``stderr`` is the Monte-Carlo standard error of that mean (``None`` when ``K = 1``).
    """
    check_log_weights(log_weights, "per-sample ELBO terms")
    return LogProb(log_weights.mean(0), "bound", "elbo", _stderr_of_mean(log_weights))


@full_precision
def iwae(log_weights: Tensor, k: int | None = None) -> LogProb:
    """The importance-weighted bound IWAE-``k`` from ``(K, B)`` log weights; kind ``bound``.

    Args:
        log_weights: ``(K, B)``, ``K`` independent draws per sequence.
        k: samples per bound; must divide ``K``. ``None`` uses all ``K`` (one group). With ``G = K/k``
            groups the value is the mean of the ``G`` group bounds and ``stderr`` their standard error
            (``None`` when ``G = 1``).
    """
    check_log_weights(log_weights)
    total = log_weights.shape[0]
    k = total if k is None else int(k)
    if k < 1 or total % k:
        raise ValueError(f"k={k} must be a positive divisor of the number of samples K={total}")
    groups = log_mean_exp(log_weights.reshape(total // k, k, -1), dim=1)   # (G, B)
    return LogProb(groups.mean(0), "bound", f"iwae-{k}", _stderr_of_mean(groups))


@full_precision
def importance_sampled(log_weights: Tensor, groups: int | None = None) -> LogProb:
    """The log of an importance-sampled estimate of ``p(x)`` from ``(K, B)`` log weights; kind ``bound``
    (lower in expectation, by Jensen).

    The value is ``log mean_k w_k`` over all ``K`` draws. ``stderr`` is the delta-method standard
    error ``sd(w / mean w) / sqrt(K)`` (``groups=None``), or the standard error of the mean of the
    ``groups`` disjoint group estimates ``log mean_{k in g} w_k`` (``groups`` must divide ``K``).
    """
    check_log_weights(log_weights)
    total = log_weights.shape[0]
    value = log_mean_exp(log_weights, 0)
    if groups is None:
        if total < 2:
            stderr = None
        else:
            ratio = torch.exp(log_weights - value)          # w_k / mean(w); mean(ratio) = 1
            stderr = ratio.std(0, unbiased=True) / math.sqrt(total)
    else:
        groups = int(groups)
        if groups < 2 or total % groups:
            raise ValueError(f"groups={groups} must be a divisor (>= 2) of the number of samples K={total}")
        per_group = log_mean_exp(log_weights.reshape(groups, total // groups, -1), dim=1)
        stderr = _stderr_of_mean(per_group)
    return LogProb(value, "bound", f"is-{total}", stderr)


@full_precision
def estimate(log_weights: Tensor, estimator: str, *, elbo_terms: Tensor | None = None) -> LogProb:
    """Dispatch on an estimator name in :data:`LATENT_ESTIMATORS`.

    ``elbo`` uses ``elbo_terms`` (lower-variance per-sample ELBO estimates, e.g. with an analytic KL)
    when given, else the log weights; ``iwae`` uses all ``K`` draws as one bound (IWAE-K); ``is``
    is :func:`importance_sampled` with the delta-method error.
    """
    if estimator == "elbo":
        return elbo(log_weights if elbo_terms is None else elbo_terms)
    if estimator == "iwae":
        return iwae(log_weights)
    if estimator == "is":
        return importance_sampled(log_weights)
    raise UserError(f"unknown latent-variable estimator {estimator!r}; expected one of "
                    f"{', '.join(LATENT_ESTIMATORS)}")


def collect_log_weights(draw: Callable[[int], Tensor], samples: int, *, chunk: int) -> Tensor:
    """Call ``draw(k) -> (k, B)`` log weights in chunks of at most ``chunk`` draws; ``(samples, B)``.

    Bounds memory when a model replicates the batch ``k`` times per call (IWAE-500 on long sequences).
    Each chunk is validated as it arrives, so a NaN is reported before more work is done.
    """
    if samples < 1:
        raise UserError(f"the number of samples must be positive, got {samples}")
    chunk = max(1, int(chunk))
    parts = []
    done = 0
    while done < samples:
        k = min(chunk, samples - done)
        part = draw(k)
        if part.dim() != 2 or part.shape[0] != k:
            raise ValueError(f"draw({k}) returned shape {tuple(part.shape)}, expected ({k}, B)")
        parts.append(check_log_weights(upcast(part)))   # kept in float32 (or float64)
        done += k
    return torch.cat(parts, 0)


@full_precision
def effective_sample_size(log_weights: Tensor) -> Tensor:
    """Kish's effective sample size ``(sum w)^2 / sum w^2`` per sequence, ``(B,)``, in ``[1, K]``.

    A diagnostic of the proposal: close to ``K`` means ``q`` is close to the posterior; close to 1
    means one draw dominates and the ``is`` estimate's delta-method error is unreliable.
    """
    check_log_weights(log_weights)
    return torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0))
