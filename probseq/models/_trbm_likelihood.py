"""The TRBM's likelihood estimators (:class:`probseq.models.trbm.TRBM`), each labelled by what it is.

The TRBM's marginal ``P(v_{1:T}) = sum_h prod_t P(v_t, h_t | v_{<t}, h_{<t})`` sums over hidden
trajectories. Sequential importance sampling with the proposal
``q(h_{1:T} | v) = prod_t P(h_t | v_t, v_{<t}, h_{<t})`` (factorial given the sampled past) has
weights

.. math:: w = \\frac{P(v, h)}{q(h \\mid v)} = \\prod_t P(v_t \\mid v_{<t}, h_{<t}),

so ``mean_k w_k`` over ``K`` trajectories is unbiased for ``P(v_{1:T})`` when every step's
``log P(v_t | .)`` is exact. The estimators differ in how that per-step term is obtained:

``is`` (kind ``bound``)
    exact per-step log-partitions (tiny models): ``log mean_k w_k`` is a stochastic lower bound
    (Jensen), as ``is`` is everywhere in probseq.
``raise`` (kind ``estimate``, biased downward)
    each step's ``log P(v_t | .)`` by RAISE: unbiased estimates of a normalised annealing model's
    conditionals, so ``log mean_k w_k`` is a stochastic lower bound on the log-likelihood of a
    normalised model that tends to the TRBM — conservative in expectation.
``ais`` (kind ``estimate``, bias direction *unknown*)
    each step's ``log Z_t`` by AIS. ``E[1/Z^] >= 1/Z`` pushes the weights up while the log of the
    mean over trajectories pulls down; the estimate is consistent (``K``, chains and intermediate
    distributions all growing) but has no guaranteed direction. Pair it with ``raise``.
``filtered`` (kind ``approximation``)
    ``log Q(v_{1:T})`` of the mean-field filtering distribution (the training objective's
    distribution; per-step ``log Z`` exact for tiny models, else AIS): a proper distribution, but
    not the TRBM's ``P`` — 0.5–0.9 nats per sequence away from it on a tiny model; no guarantee.

``--samples`` sets the number of trajectories ``K`` (default 100 for ``is``,
:data:`DEFAULT_TRAJECTORIES` otherwise); the per-step AIS/RAISE chains and intermediate
distributions are the model's ``ais_chains`` and ``ais_steps`` (:data:`TRBM_QUICK_AIS`: the
default scores JSB's test split in about a minute), or the name's own, ``ais-20x1000``. The standard error is the delta-method error of ``log mean_k w_k``; it includes
the per-step estimators' noise (every trajectory's estimates are independent) but not any bias.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.errors import UserError
from probseq.estimators.annealing import log_mean_exp_with_stderr
from probseq.likelihood import LogProb
from probseq.models._rbm_common import estimator_label, parse_estimator, sequence_log_prob

__all__ = ["TRBM_ESTIMATORS", "TRBM_QUICK_AIS", "DEFAULT_TRAJECTORIES", "trbm_log_prob",
           "default_trbm_estimator"]

#: the TRBM's default per-step AIS setting: every trajectory multiplies the per-step cost, so
#: ``K x chains x steps = 4 x 2 x 250`` costs about what the RTRBM's 5 x 500 does (RESULTS.md)
TRBM_QUICK_AIS = {"ais_chains": 2, "ais_steps": 250}
#: hidden trajectories of ``ais`` / ``raise`` when ``samples`` is not given
DEFAULT_TRAJECTORIES = 4

#: the TRBM's estimators, in the order the registry lists them
TRBM_ESTIMATORS = ("ais", "raise", "is", "filtered")


def default_trbm_estimator(exact_by_default: bool) -> str:
    """``is`` (exact per-step partitions) for tiny TRBMs, else ``ais``: both estimate ``log P``."""
    return "is" if exact_by_default else "ais"


@torch.no_grad()
def trbm_log_prob(model, batch: Batch, x: Tensor, method: str, *, samples: int | None,
                  generator: torch.Generator | None, ais_steps: int | None) -> LogProb:
    """``method`` in :data:`TRBM_ESTIMATORS` on frames ``x`` (zero-padded, the model's dtype)."""
    method, named_chains, named_steps = parse_estimator(method)
    chains = int(named_chains or model.config["ais_chains"])
    steps = int(ais_steps or named_steps or model.config["ais_steps"])
    per_step = "exact" if model.exact_by_default else "ais"
    if method == "filtered":
        chains = int(samples or chains)
        vb, c, _ = model.filter(x)
        values, stderr = sequence_log_prob(model.rbm, x, vb, c, batch.mask, method=per_step,
                                           chains=chains, steps=steps, generator=generator)
        return LogProb(values, "approximation", "filtered-" + estimator_label(per_step, chains, steps),
                       stderr, length_included=False)
    if method == "is":
        if not model.exact_by_default:
            raise UserError("the is estimator needs exact per-step log-partitions; this TRBM is too "
                            f"large (more than {model.config['exact_max_units']} units to enumerate); "
                            "use ais or raise")
        per_step = "exact"
    else:
        per_step = method
    particles = int(samples or (100 if method == "is" else DEFAULT_TRAJECTORIES))
    if particles < 2:
        raise UserError(f"importance sampling over hidden trajectories needs at least 2 samples, got {particles}")
    n = x.shape[0]
    xs = x.repeat(particles, 1, 1)                                      # (K B, T, D)
    vb, c = _sampled_trajectory_biases(model, xs, generator)
    log_w, _ = sequence_log_prob(model.rbm, xs, vb, c, batch.mask.repeat(particles, 1), method=per_step,
                                 chains=chains, steps=steps, generator=generator)
    value, stderr, _ = log_mean_exp_with_stderr(log_w.reshape(particles, n).to(torch.float64), 0)
    if method == "is":
        return LogProb(value.to(x.dtype), "bound", f"is-{particles}", stderr.to(x.dtype), length_included=False)
    return LogProb(value.to(x.dtype), "estimate", f"is-{particles}-{estimator_label(method, chains, steps)}",
                   stderr.to(x.dtype), bias="lower" if method == "raise" else "unknown", length_included=False)


def _sampled_trajectory_biases(model, xs: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Visible biases ``(N, T, D)`` (or ``(D,)``) and hidden biases ``(N, T, H)`` of each step's RBM
    along one hidden trajectory per row, ``h_t ~ P(h_t | v_t, v_{<t}, h_{<t})``."""
    vb, static_c = model.data_biases(xs)
    if model.hh_weight is None:
        return vb, static_c
    drive = model.rbm.hidden_drive(xs)                                  # W^T (v / sigma)
    c, _ = model.hidden_trajectory(static_c, drive, sample=True, generator=generator)
    return vb, c
