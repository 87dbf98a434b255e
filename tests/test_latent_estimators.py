"""Tests of :mod:`probseq.estimators.latent` against exact answers.

Oracles: hand-computed values on tiny weight arrays; a lognormal weight distribution whose
``log E[w]`` is known in closed form; and a linear-Gaussian state-space model whose exact marginal
likelihood the Kalman filter gives (itself checked against the dense joint Gaussian).

Statistical tests are seeded. Their failure rates, measured by running this file as a script
(``python tests/test_latent_estimators.py --seeds 200``, which repeats each statistical check with
seeds 0..199; see ``_lognormal_checks`` and ``_kalman_checks``), are stated in each test.
"""

from __future__ import annotations

import math

import pytest
import torch

from probseq.errors import UserError
from probseq.estimators import latent
from probseq.testing.kalman import LinearGaussianSSM

F64 = torch.float64


# ---------------------------------------------------------------------------- hand-computed values
def test_hand_computed_values():
    log_w = torch.log(torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0], [7.0, 2.0]], dtype=F64))
    e = latent.elbo(log_w)
    assert e.kind == "bound" and e.estimator == "elbo"
    torch.testing.assert_close(e.values, log_w.mean(0))
    assert torch.allclose(e.stderr, log_w.std(0) / 2)
    full = latent.iwae(log_w)
    assert full.kind == "bound" and full.estimator == "iwae-4" and full.stderr is None
    torch.testing.assert_close(full.values, torch.log(torch.tensor([4.0, 2.0], dtype=F64)))
    pairs = latent.iwae(log_w, k=2)                 # groups {1,3} and {5,7}: log 2 and log 6
    assert pairs.estimator == "iwae-2"
    torch.testing.assert_close(pairs.values[0], torch.tensor((math.log(2) + math.log(6)) / 2, dtype=F64))
    torch.testing.assert_close(pairs.stderr[0], torch.tensor((math.log(6) - math.log(2)) / 2, dtype=F64))
    is_ = latent.importance_sampled(log_w)
    assert is_.kind == "bound" and is_.bias == "lower" and is_.estimator == "is-4"
    torch.testing.assert_close(is_.values, full.values)
    # delta method: sd(w / mean w) / sqrt(K) = sd([1,3,5,7]/4) / 2
    expect = torch.tensor([1.0, 3.0, 5.0, 7.0], dtype=F64).div(4).std() / 2
    torch.testing.assert_close(is_.stderr[0], expect)
    assert float(is_.stderr[1]) == 0.0             # equal weights: no Monte-Carlo error
    torch.testing.assert_close(latent.effective_sample_size(log_w),
                               torch.tensor([16**2 / 84, 4.0], dtype=F64))


def test_iwae_one_is_elbo_and_single_sample_has_no_stderr():
    log_w = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    torch.testing.assert_close(latent.iwae(log_w, k=1).values, latent.elbo(log_w).values)
    assert latent.elbo(log_w[:1]).stderr is None
    assert latent.importance_sampled(log_w[:1]).stderr is None


def test_grouped_bounds_are_ordered_on_fixed_draws():
    """For nested groups, IWAE-k <= IWAE-2k on the *same* draws (concavity of log), exactly."""
    log_w = 3 * torch.randn(64, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    values = [latent.elbo(log_w).values] + [latent.iwae(log_w, k).values for k in (1, 2, 4, 8, 16, 32, 64)]
    for lo, hi in zip(values, values[1:]):
        assert bool((lo <= hi + 1e-12).all())
    assert bool((values[-1] > values[0] + 1).all())     # large spread: the bounds really differ


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nonfinite_weights_raise(bad):
    log_w = torch.zeros(4, 3)
    log_w[2, 1] = bad
    for fn in (latent.elbo, latent.iwae, latent.importance_sampled, latent.effective_sample_size):
        with pytest.raises(FloatingPointError, match="sample 2 of sequence 1"):
            fn(log_w)
    with pytest.raises(FloatingPointError):
        latent.collect_log_weights(lambda k: log_w[:k], 4, chunk=3)


def test_argument_errors():
    log_w = torch.zeros(6, 2)
    with pytest.raises(ValueError, match="divisor"):
        latent.iwae(log_w, k=4)
    with pytest.raises(ValueError, match="divisor"):
        latent.importance_sampled(log_w, groups=4)
    with pytest.raises(ValueError, match=r"\(K, B\)"):
        latent.elbo(torch.zeros(3))
    with pytest.raises(UserError, match="unknown latent-variable estimator"):
        latent.estimate(log_w, "ais")


def test_estimate_dispatch_and_chunked_collection():
    g = torch.Generator().manual_seed(3)
    log_w = torch.randn(10, 4, generator=g, dtype=F64)
    calls = []

    def draw(k):
        start = sum(calls)
        calls.append(k)
        return log_w[start:start + k]

    got = latent.collect_log_weights(draw, 10, chunk=4)
    assert calls == [4, 4, 2]
    torch.testing.assert_close(got, log_w)
    terms = log_w - 1.0
    torch.testing.assert_close(latent.estimate(log_w, "elbo", elbo_terms=terms).values, terms.mean(0))
    assert latent.estimate(log_w, "iwae").estimator == "iwae-10"
    assert latent.estimate(log_w, "is").kind == "bound"


# ---------------------------------------------------------------------------- lognormal weights
def _lognormal_checks(seed: int) -> dict[str, bool]:
    """log w ~ N(0, s^2) with s = 1, so log E[w] = 1/2 exactly. 2000 replicates of K = 200 draws.

    * the delta-method stderr matches the spread of the replicates: 0.85 < mean(se)/sd(est) < 1.15;
    * p_hat = mean(w) is unbiased: |mean_r p_hat - e^{1/2}| < 4 standard errors of that mean;
    * the grouped (G = 20) stderr matches the spread too: 0.8 < ratio < 1.2.
    """
    g = torch.Generator().manual_seed(seed)
    reps, k = 2000, 200
    log_w = torch.randn(k, reps, generator=g, dtype=F64)          # each column one replicate
    est = latent.importance_sampled(log_w)
    spread = float(est.values.std())
    ratio = float(est.stderr.mean()) / spread
    p_hat = torch.exp(est.values)
    bias_z = abs(float(p_hat.mean()) - math.exp(0.5)) / (float(p_hat.std()) / math.sqrt(reps))
    grouped = latent.importance_sampled(log_w, groups=20)
    g_ratio = float(grouped.stderr.mean()) / spread
    return {"delta": 0.85 < ratio < 1.15, "unbiased": bias_z < 4.0, "grouped": 0.8 < g_ratio < 1.2}


def test_importance_sampled_stderr_and_unbiasedness_lognormal():
    """Measured failure rate over seeds 0..199: 0/200 for each check (see module docstring)."""
    assert _lognormal_checks(seed=7) == {"delta": True, "unbiased": True, "grouped": True}


# ---------------------------------------------------------------------------- Kalman oracle
def _models():
    g = torch.Generator().manual_seed(11)
    yield LinearGaussianSSM.random(1, 1, generator=g)
    yield LinearGaussianSSM.random(2, 3, noise=0.3, generator=g)
    yield LinearGaussianSSM.random(3, 2, noise=1.0, generator=g)


@pytest.mark.parametrize("steps", [1, 2, 5])
def test_kalman_filter_matches_dense_joint_gaussian(steps):
    g = torch.Generator().manual_seed(steps)
    for model in _models():
        _, x = model.sample(4, steps, generator=g)
        torch.testing.assert_close(model.log_marginal(x), model.log_marginal_dense(x), rtol=0, atol=1e-9)


def test_kalman_rejects_bad_shapes():
    with pytest.raises(ValueError, match="C must have shape"):
        LinearGaussianSSM(torch.eye(2), torch.eye(3), torch.eye(2), torch.eye(2), torch.zeros(2), torch.eye(2))


def test_exact_posterior_proposal_has_constant_weights():
    """FFBS draws from p(z | x) exactly, so every log weight is log p(x): ELBO = IWAE = IS = exact."""
    g = torch.Generator().manual_seed(5)
    for model in _models():
        _, x = model.sample(3, 6, generator=g)
        exact = model.log_marginal(x)
        log_w = model.posterior_log_weights(x, 7, generator=g)
        torch.testing.assert_close(log_w, exact.expand(7, -1), rtol=0, atol=1e-8)
        torch.testing.assert_close(latent.elbo(log_w).values, exact, rtol=0, atol=1e-8)


def test_log_joint_integrates_to_marginal_1d():
    """Check ``log_joint`` on its own: quadrature over z of p(x, z) for T = 1, d = m = 1."""
    model = LinearGaussianSSM(A=[[0.5]], C=[[2.0]], Q=[[0.3]], R=[[0.4]], mu0=[0.1], P0=[[1.5]])
    x = torch.tensor([[[0.7]]], dtype=F64)
    grid = torch.linspace(-12, 12, 20001, dtype=F64)
    joint = model.log_joint(grid.reshape(-1, 1, 1), x)
    log_quad = torch.logsumexp(joint, 0) + math.log(float(grid[1] - grid[0]))
    torch.testing.assert_close(log_quad, model.log_marginal(x)[0], rtol=0, atol=1e-8)


KS = (1, 4, 16, 64, 256, 1024)


def _kalman_checks(seed: int) -> dict[str, bool]:
    """Bootstrap (transition-prior) proposal on B = 16 sequences of T = 6 frames; 8192 draws each.

    From the same 8192 draws per sequence: ``bound[k]`` = mean over sequences of the grouped IWAE-k
    (8192/k groups), with the standard error over sequences and groups of ``gap_k = exact - IWAE-k``.

    * ``monotone``: ELBO <= IWAE-1 <= IWAE-4 <= ... <= IWAE-1024 (exact on fixed draws; always true);
    * ``below_exact``: every mean gap exceeds -3 of its standard errors (a one-sided 3-sigma test of
      E[IWAE-k] <= log p(x));
    * ``tightening``: gap(1024) < 0.1 gap(1) — the bound closes in on the exact value;
    * ``is_consistent``: the IS estimate with all 8192 draws is within 4 delta-method standard errors
      of the exact value in pooled form: |sum_b (IS_b - exact_b)| < 4 sqrt(sum_b se_b^2) + bias,
      where ``bias = sum_b se_b^2 / 2`` is the known first-order downward bias of log p_hat.
    """
    g = torch.Generator().manual_seed(1000 + seed)
    model = LinearGaussianSSM.random(2, 2, noise=2.0, generator=g)
    _, x = model.sample(16, 6, generator=g)
    exact = model.log_marginal(x)
    log_w = model.prior_log_weights(x, 8192, generator=g)
    elbo_value = latent.elbo(log_w).values
    bounds, ok_below = [elbo_value], True
    gaps = {}
    for k in KS:
        groups = latent.log_mean_exp(log_w.reshape(8192 // k, k, -1), dim=1)     # (G, B)
        gap = exact.unsqueeze(0) - groups
        mean_gap = float(gap.mean())
        # sequences are fixed (conditioned on); the randomness is over groups: se of the mean
        # over groups of the per-group average over sequences
        per_group = gap.mean(1)
        se = float(per_group.std() / math.sqrt(per_group.shape[0])) if per_group.shape[0] > 1 else \
            float(latent.importance_sampled(log_w).stderr.pow(2).sum().sqrt() / 16)
        ok_below &= mean_gap > -3 * se
        gaps[k] = mean_gap
        bounds.append(groups.mean(0))
    monotone = all(bool((lo <= hi + 1e-9).all()) for lo, hi in zip(bounds, bounds[1:]))
    is_est = latent.importance_sampled(log_w)
    var = float((is_est.stderr ** 2).sum())
    is_ok = abs(float((is_est.values - exact).sum())) < 4 * math.sqrt(var) + var / 2
    return {"monotone": monotone, "below_exact": ok_below, "tightening": gaps[1024] < 0.1 * gaps[1],
            "is_consistent": is_ok}


def test_iwae_tightens_towards_kalman_marginal():
    """ELBO <= IWAE-k <= exact, gap shrinking with k (checks in ``_kalman_checks``).

    Measured failure rates over seeds 0..199 (``python tests/test_latent_estimators.py``):
    monotone 0/200, tightening 0/200, below_exact 1/200 (a one-sided 3-sigma test over 6 values of
    k), is_consistent 2/200 (the delta-method error understates the spread of heavy-tailed weights,
    so a 4-sigma band fails more often than a Gaussian would). This seed passes deterministically.
    """
    assert _kalman_checks(seed=0) == {"monotone": True, "below_exact": True, "tightening": True,
                                      "is_consistent": True}


if __name__ == "__main__":          # measure the failure rates of the statistical checks
    import argparse
    from collections import Counter

    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, fn in (("lognormal", _lognormal_checks), ("kalman", _kalman_checks)):
        failures = Counter()
        for seed in range(args.seeds):
            for check, ok in fn(seed).items():
                failures[check] += not ok
        print(name, {k: f"{v}/{args.seeds}" for k, v in failures.items()})
