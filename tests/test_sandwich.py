"""The AIS / RAISE sandwich against exact enumeration on tiny models (issue 12).

For every RBM-family model: averaged over 20 independent runs (seeded), the AIS log-likelihood
is at least the exact one (AIS under-estimates log Z in expectation) and the RAISE one at most
(RAISE is unbiased for the annealing model's probability, a normalised distribution, so by Jensen
and Gibbs' inequality its expectation under the model's own distribution is below the exact
expected log-likelihood); each is within its error of the exact value with a long schedule; and
the gap closes as the number of intermediate distributions grows.

Statistics: the exact side is the probability-weighted mean over *every* configuration
(enumerated), so the only noise is the estimators'. Margins are 4 standard errors of the mean over
the 20 runs (one-sided failure rate about 3e-5 per check under a normal approximation; the runs
are seeded, so a pass is repeatable).
"""

from __future__ import annotations

import math

import pytest
import torch

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.frames.rbm_exact import binary_states
from probseq.frames.rbm_annealing import rbm_ais_log_partition, rbm_raise_log_prob
from probseq.models.registry import build_model
from probseq.testing import trbm_oracle
from probseq.testing.enumerate import all_sequences
from probseq.testing.rbm_oracle import random_rbm

pytestmark = pytest.mark.usefixtures("one_thread")

RUNS = 20


def _mean_and_sem(runs: torch.Tensor) -> tuple[float, float]:
    """Mean over dim 0 (the runs) and its standard error."""
    return float(runs.mean(0)), float(runs.std(0) / math.sqrt(runs.shape[0]))


def _weighted(values: torch.Tensor, log_p: torch.Tensor) -> torch.Tensor:
    """``sum_x p(x) values[..., x]`` for ``values`` ``(runs, X)``: the expectation under the model."""
    return (values * torch.exp(log_p)).sum(-1)


def _check_sandwich(exact_mean: float, ais: dict, raise_: dict, short: int, long: int) -> None:
    """``ais[k]``/``raise_[k]``: ``(runs,)`` expected log-likelihoods with ``k`` intermediate distributions."""
    for k in (short, long):
        a, a_se = _mean_and_sem(ais[k])
        r, r_se = _mean_and_sem(raise_[k])
        assert a >= exact_mean - 4 * a_se, (k, a, exact_mean, a_se)        # AIS: upward in expectation
        assert r <= exact_mean + 4 * r_se, (k, r, exact_mean, r_se)        # RAISE: downward
    gap_short = float(ais[short].mean() - raise_[short].mean())
    gap_long = float(ais[long].mean() - raise_[long].mean())
    assert gap_short > 0.05, "the short schedule should show a visible bias on this model"
    assert gap_long < 0.5 * gap_short, (gap_short, gap_long)
    for est in (ais, raise_):                                                  # within its error when long
        m, se = _mean_and_sem(est[long])
        assert abs(m - exact_mean) <= 4 * se + 0.1 * gap_short, (m, exact_mean, se)


def test_rbm_sandwich_over_twenty_runs():
    rbm = random_rbm(5, 4, seed=11, scale=1.5)
    vs = binary_states(5, dtype=torch.float64)
    with torch.no_grad():
        exact_log_z = rbm.log_partition("exact").value
        log_p = -rbm.free_energy(vs) - exact_log_z
    exact_mean = float((torch.exp(log_p) * log_p).sum())
    g = torch.Generator().manual_seed(0)
    ais, raise_ = {}, {}
    for k in (3, 200):
        vb = rbm.visible_bias.detach().expand(RUNS, 5)
        log_z = rbm_ais_log_partition(rbm, visible_bias=vb, chains=4, steps=k, generator=g).value
        # the AIS log-likelihood of every v in each run, weighted by p(v)
        ais[k] = _weighted((-rbm.free_energy(vs).detach()).expand(RUNS, -1) - log_z[:, None], log_p)
        value, _ = rbm_raise_log_prob(rbm, vs.expand(RUNS, -1, -1), chains=4, steps=k, generator=g)
        raise_[k] = _weighted(value, log_p)
    _check_sandwich(exact_mean, ais, raise_, 3, 200)


def _strong_tiny(name: str, hyper: dict, seed: int):
    torch.manual_seed(seed)
    model = build_model(name, DataSpec("binary", 3), hyper).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 1.5)
    return model


@pytest.mark.slow  # 20 runs x 64 sequences x 2 schedules x 2 estimators (the RBM sandwich above stays in the default run)
@pytest.mark.parametrize("name, hyper", [("rtrbm", {"hidden": 2}), ("rnn-rbm", {"hidden": 3, "rbm_hidden": 2})],
                         ids=["rtrbm", "rnn-rbm"])
def test_sequence_model_sandwich_over_twenty_runs(name, hyper):
    """Every sequence of length 2 over 3 binary units (64), each scored in 20 independent runs."""
    model = _strong_tiny(name, hyper, seed=3)
    seqs = torch.cat([b.values for b in all_sequences(DataSpec("binary", 3), 2)]).double()
    n = seqs.shape[0]
    with torch.no_grad():
        log_p = model.log_prob(Batch(seqs, torch.full((n,), 2)), estimator="exact").values
    torch.testing.assert_close(torch.logsumexp(log_p, 0), torch.zeros((), dtype=torch.float64))
    exact_mean = float((torch.exp(log_p) * log_p).sum())
    batch = Batch(seqs.repeat(RUNS, 1, 1), torch.full((RUNS * n,), 2))
    g = torch.Generator().manual_seed(1)
    ais, raise_ = {}, {}
    for k in (2, 200):
        for estimator, out in (("ais", ais), ("raise", raise_)):
            with torch.no_grad():
                result = model.log_prob(batch, estimator=estimator, samples=4, ais_steps=k, generator=g)
            assert result.kind == "estimate" and result.bias == {"ais": "upper", "raise": "lower"}[estimator]
            out[k] = _weighted(result.values.reshape(RUNS, n), log_p)
    _check_sandwich(exact_mean, ais, raise_, 2, 200)


@pytest.mark.slow  # 20 runs x 16 sequences x hidden trajectories x RAISE/AIS per step
def test_trbm_raise_is_conservative_and_ais_is_consistent():
    """The TRBM's raise and ais (hidden trajectories x RAISE / AIS per step) against its exact
    marginal, by enumeration; the default estimates log P (not the filtering Q)."""
    torch.manual_seed(5)
    model = build_model("trbm", DataSpec("binary", 2), {"hidden": 2, "ais_chains": 4}).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 1.5)
    seqs = torch.cat([b.values for b in all_sequences(DataSpec("binary", 2), 2)]).double()
    n = seqs.shape[0]
    log_p = torch.stack([trbm_oracle.exact_log_marginal(model, s) for s in seqs])
    exact_mean = float((torch.exp(log_p) * log_p).sum())
    batch = Batch(seqs.repeat(RUNS, 1, 1), torch.full((RUNS * n,), 2))
    g = torch.Generator().manual_seed(2)
    for k in (1, 100):
        result = model.log_prob(batch, estimator="raise", samples=8, ais_steps=k, generator=g)
        assert (result.kind, result.bias) == ("estimate", "lower")
        m, se = _mean_and_sem(_weighted(result.values.reshape(RUNS, n), log_p))
        assert m <= exact_mean + 4 * se, (k, m, exact_mean, se)
    assert abs(m - exact_mean) <= 4 * se + 0.01, (m, exact_mean, se)       # and tight when long
    # ais: a consistent estimate of log P without a guaranteed direction
    result = model.log_prob(batch, estimator="ais", samples=8, ais_steps=100, generator=g)
    assert (result.kind, result.bias) == ("estimate", "unknown")
    m, se = _mean_and_sem(_weighted(result.values.reshape(RUNS, n), log_p))
    assert abs(m - exact_mean) <= 4 * se + 0.01, (m, exact_mean, se)
    default = model.log_prob(Batch(seqs, torch.full((n,), 2)), generator=g)
    assert default.kind == "bound" and default.estimator.startswith("is-")   # estimates log P, not Q
