"""Annealed importance sampling (probseq/estimators/ais.py on the RBM path of
probseq/frames/rbm_annealing.py) against the exact log-partition."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import probseq.frames.rbm_annealing as ais_module
from probseq.errors import UserError
from probseq.estimators.ais import ais_schedule, log_mean_exp_with_stderr
from probseq.frames.rbm_annealing import rbm_ais_log_partition as ais_log_partition
from probseq.testing.rbm_oracle import random_rbm


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_ais_agrees_with_exact_within_its_error_on_a_batch_of_rbms(visible):
    """24 RBMs (one per bias vector) with 10 visible / 8 hidden units and strong weights.

    Each AIS estimate must lie within 4.5 of its standard errors of the exact value. AIS is biased
    low by O(var/2), negligible here next to the standard error; under a normal approximation
    the chance that any of the 24 fails is about 24 * 7e-6 < 2e-4 (the run is seeded).
    """
    rbm = random_rbm(10, 8, visible, seed=1, scale=0.8 if visible == "bernoulli" else 0.4)
    g = torch.Generator().manual_seed(2)
    vb = torch.randn(4, 6, 10, generator=g, dtype=torch.float64)
    hb = torch.randn(4, 6, 8, generator=g, dtype=torch.float64)
    exact = rbm.log_partition("exact", visible_bias=vb, hidden_bias=hb).value.detach()
    est = rbm.log_partition("ais", visible_bias=vb, hidden_bias=hb, chains=200, steps=300, generator=g)
    assert est.value.shape == est.stderr.shape == est.ess.shape == (4, 6)
    assert est.method == "ais" and est.chains == 200 and est.steps == 300
    z = (est.value - exact) / est.stderr
    assert (z.abs() < 4.5).all(), z
    assert (est.stderr > 0).all() and (est.stderr < 0.2).all()
    # the standard error is honest on average: the z-scores are not systematically tiny
    assert float(z.pow(2).mean()) > 0.2


def test_ais_with_a_data_base_rate_and_chunking(monkeypatch):
    rbm = random_rbm(12, 6, seed=3, scale=0.8)
    exact = rbm.log_partition("exact").value.detach()
    base = torch.linspace(-2, 2, 12, dtype=torch.float64)
    monkeypatch.setattr(ais_module, "_CHUNK_ELEMENTS", 1000)   # forces one chain batch per RBM chunk
    vb = rbm.visible_bias.detach().expand(3, 12)
    g = torch.Generator().manual_seed(4)
    est = ais_log_partition(rbm, visible_bias=vb, chains=100, steps=500, generator=g, base_visible_bias=base)
    z = (est.value - exact) / est.stderr
    assert (z.abs() < 4.5).all(), z


@pytest.mark.slow  # 200 independent AIS runs with 300 intermediate distributions
def test_stderr_is_calibrated_with_a_long_schedule_and_too_small_with_a_short_one():
    """200 independent AIS runs (20 chains each) on one strongly coupled 10/10 RBM.

    With 300 intermediate distributions the runs scatter around the exact log Z as their reported
    standard error says (ratio of the empirical spread to the mean stderr within [0.75, 1.3]:
    the ratio's own relative error is about 5%, so this fails with probability < 1e-4). With 3 the
    weights degenerate: the estimate is biased low (Jensen; mean error below -3 standard errors
    of the mean) and the reported stderr under-states the real spread.
    """
    rbm = random_rbm(10, 10, seed=5, scale=2.0)
    exact = float(rbm.log_partition("exact").value)
    vb = rbm.visible_bias.detach().expand(200, 10)
    runs = {}
    for steps in (3, 300):
        est = rbm.log_partition("ais", visible_bias=vb, chains=20, steps=steps,
                                generator=torch.Generator().manual_seed(6))
        err = est.value - exact
        runs[steps] = (float(err.mean()), float(err.std()), float(est.stderr.mean()))
    mean, spread, stderr = runs[300]
    assert abs(mean) < 4 * spread / math.sqrt(200)
    assert 0.75 < spread / stderr < 1.3, runs
    mean, spread, stderr = runs[3]
    assert mean < -3 * spread / math.sqrt(200), runs
    assert spread > 1.3 * stderr, runs


def test_schedule_shape():
    betas = ais_schedule(1000)
    assert betas.shape == (1001,) and float(betas[0]) == 0.0 and float(betas[-1]) == 1.0
    assert bool((betas.diff() > 0).all())
    # Salakhutdinov & Murray's proportions: 500 : 4000 : 10000 of the steps in [0, .5], (.5, .9], (.9, 1]
    assert int((betas <= 0.5).sum()) - 1 == 34 and int((betas > 0.9).sum()) == 690
    torch.testing.assert_close(ais_schedule(4), torch.linspace(0, 1, 5, dtype=torch.float64))
    with pytest.raises(UserError):
        ais_schedule(0)
    rbm = random_rbm(3, 2)
    with pytest.raises(UserError, match="increase"):
        ais_log_partition(rbm, betas=torch.tensor([0.0, 0.7, 0.5, 1.0]))
    with pytest.raises(UserError, match="2 chains"):
        ais_log_partition(rbm, chains=1)


def test_log_mean_exp_standard_error_is_the_delta_method():
    rng = np.random.default_rng(0)
    log_w = rng.normal(size=(50, 3)) * 2 + 100
    value, stderr, ess = log_mean_exp_with_stderr(torch.tensor(log_w), 0)
    w = np.exp(log_w - 100)
    np.testing.assert_allclose(value.numpy(), np.log(w.mean(0)) + 100)
    np.testing.assert_allclose(stderr.numpy(), w.std(0, ddof=1) / (math.sqrt(50) * w.mean(0)))
    np.testing.assert_allclose(ess.numpy(), w.sum(0) ** 2 / (w ** 2).sum(0))
