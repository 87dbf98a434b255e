"""The log-likelihood of the observed part of partly observed sequences, labelled by how it was computed.

Two model shapes, two answers (the maths and the labels; ``docs/missing-data.md`` for users):

* **Independent frames** (``independent``, ``nade``): :math:`p(x^{obs}_{1:T}) = \\prod_t p(x^{obs}_t)`.
  Factorial frames drop the missing terms: **exact**. A NADE's marginal is exact where the observed
  dimensions of every frame come first in its ordering (then they are a prefix of the chain rule,
  Uria, Murray & Larochelle 2014); otherwise ``--estimator is`` (default) estimates each frame's
  marginal by importance sampling with the proposal "the observed dimensions moved first"
  (``is-K``, a stochastic lower bound of ``log p``: kind ``bound``), and ``--estimator observed-first``
  returns that reordered NADE's exact marginal, the marginal of a *different* model (kind
  ``approximation``; for an order-agnostically trained NADE the orderings nearly agree).
* **Recurrent models** (``rnn``, ``gru``, ``lstm``, ``rnn-nade``): the missing values are fed back,
  so the marginal sums over every completion; :func:`~probseq.missing.particles.particle_filter`
  estimates it without bias (``smc-K``, kind ``bound``: its log is low in expectation). Sequences
  with nothing missing keep the exact teacher-forced likelihood (the batch does not reach here).

Training (:func:`iid_training_loss`, :func:`sequential_training_loss`) uses the observed-part
objective: the missing terms are dropped; a recurrent model reads, at a missing value, one draw
from its own conditional given the frame's observed values (detached: the gradient ignores the
draw, as in scheduled sampling). That is one particle of the filter without weights: its
expected log is a lower bound of :math:`\\log p(x^{obs})`, and the biased gradient is documented.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.errors import UserError
from probseq.likelihood import LogProb
from probseq.missing.particles import particle_filter

__all__ = ["MISSING_ESTIMATORS", "DEFAULT_PARTICLES", "iid_observed_log_prob", "sequential_observed_log_prob",
           "iid_training_loss", "sequential_training_loss"]

#: the estimators of the observed part's likelihood (which apply depends on the model)
MISSING_ESTIMATORS = ("exact", "is", "observed-first", "smc")
#: particles / importance samples when ``--samples`` is not given
DEFAULT_PARTICLES = 32


def _masked_sum(values: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, values, torch.zeros_like(values)).sum(1)


def _frame_marginal_is_exact(frame, observed: Tensor, mask: Tensor) -> bool:
    kind = getattr(frame, "observed_marginal", "none")
    if kind == "exact":
        return True
    if kind == "prefix":
        return bool((frame.observed_is_prefix(observed) | ~mask).all())
    return False


def iid_observed_log_prob(model, batch: Batch, params: Tensor, length_term: Tensor, *,
                          estimator: str | None, samples: int | None,
                          generator: torch.Generator | None) -> LogProb:
    """``log p(x^obs)`` of a model with i.i.d. frames (module docstring); ``params`` ``(B, T, P)``
    are every frame's parameters and ``length_term`` ``(B,)`` the length model's ``log P(T)``."""
    frame = model.frame
    if getattr(frame, "observed_marginal", "none") == "none":
        raise UserError(f"model {model.name!r} cannot score partly observed frames")
    x = model.frames_of(batch)
    observed, mask = batch.observed_or_all, batch.mask
    exact = _frame_marginal_is_exact(frame, observed, mask)
    included = model.length_model.models_length
    if estimator in (None, "exact") and exact:
        total = _masked_sum(frame.observed_log_prob(params, x, observed), mask)
        return LogProb(total + length_term, "exact", "exact", length_included=included)
    if estimator == "exact":
        raise UserError("the exact marginal of a NADE frame needs the observed dimensions to come first "
                        "in its ordering; use --estimator is (importance sampling) or observed-first")
    if estimator == "observed-first":
        total = _masked_sum(frame.observed_log_prob(params, x, observed), mask)
        return LogProb(total + length_term, "approximation", "observed-first", length_included=included)
    if estimator not in (None, "is"):
        raise UserError(f"model {model.name!r} scores missing values with the estimators exact, is or "
                        f"observed-first, not {estimator!r}")
    K = int(samples or DEFAULT_PARTICLES)
    with torch.no_grad():
        expand = (K,) + tuple(params.shape)
        _, log_w = frame.fill_missing(params.expand(expand), x.expand((K,) + tuple(x.shape)),
                                      observed.expand((K,) + tuple(observed.shape)), generator=generator)
        per_frame = torch.logsumexp(log_w, 0) - math.log(K)
    total = _masked_sum(per_frame, mask)
    return LogProb(total + length_term, "bound", f"is-{K}", length_included=included)


def sequential_observed_log_prob(model, batch: Batch, *, estimator: str | None, samples: int | None,
                                 generator: torch.Generator | None) -> LogProb:
    """``log p(x^obs)`` of a recurrent model by the particle filter (module docstring)."""
    if getattr(model.frame, "observed_marginal", "none") == "none":
        raise UserError(f"model {model.name!r} cannot score partly observed frames")
    if estimator not in (None, "smc"):
        raise UserError(f"model {model.name!r} feeds missing values back into its state, so the "
                        f"likelihood of the observed part needs --estimator smc, not {estimator!r}")
    K = int(samples or DEFAULT_PARTICLES)
    with torch.no_grad():
        result = particle_filter(model, batch, particles=K, generator=generator)
    return LogProb(result.log_marginal, "bound", f"smc-{K}",
                   length_included=model.length_model.models_length)


def iid_training_loss(model, batch: Batch, params: Tensor, length_term: Tensor, *,
                      generator: torch.Generator | None) -> Tensor:
    """``-[sum of the observed-part terms + length terms] / frames`` for i.i.d. frames."""
    x = model.frames_of(batch)
    lp = -model.frame.observed_loss(params, x, batch.observed_or_all, generator=generator)
    return -(_masked_sum(lp, batch.mask).sum() + length_term.sum()) / batch.n_frames


def sequential_training_loss(model, batch: Batch, *, generator: torch.Generator | None) -> Tensor:
    """The observed-part objective of a recurrent model (module docstring), per frame."""
    result = particle_filter(model, batch, particles=1, objective="observed", generator=generator)
    return -result.log_marginal.sum() / batch.n_frames
