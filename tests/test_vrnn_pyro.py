"""The VRNN's Pyro program and its fast torch path compute the same ELBO on the same latent draws.

The fast path (:meth:`VRNN.elbo_terms`) draws ``z``; the Pyro guide is then *replayed* with exactly
those ``z`` values and the Pyro model replayed against the guide trace. Pyro's own estimators must
then agree with the fast path to float64 rounding:

* ``Trace_ELBO`` (sampled ``log p(z) - log q(z)``) = ``-sum log_weight``;
* ``TraceMeanField_ELBO`` (closed-form KL per step) = ``-sum elbo``;
* with ``kl_scale = beta`` (``poutine.scale``), the fast ``loss`` at ``kl_weight = beta``.
"""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.models.vrnn import VRNN

CONFIGS = [
    ("binary", {"length": "halting"}),
    ("binary", {"output": "mixture", "components": 2}),
    ("real", {"length": "explicit", "max_length": 9}),
    ("real", {"output": "mixture", "components": 3}),
    ("categorical", {"length": "none"}),
]
LENGTHS = torch.tensor([5, 2, 7])


def _model_and_batch(kind, hyper, seed=0):
    torch.manual_seed(seed)
    model = VRNN(DataSpec(kind, 4), hidden=7, latent=3, features=5, **hyper).double()
    g = torch.Generator().manual_seed(seed + 1)
    if kind == "binary":
        values = torch.bernoulli(torch.full((3, 7, 4), 0.4, dtype=torch.float64), generator=g)
    elif kind == "real":
        values = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    else:
        values = torch.randint(0, 4, (3, 7), generator=g)
    return model, Batch(values, LENGTHS)


def _guide_with(model, z: torch.Tensor):
    """The Pyro guide, replaying the latent values ``z (B, T, U)`` as if it had sampled them."""
    trace = poutine.Trace()
    for t in range(z.shape[1]):
        trace.add_node(f"z_{t + 1}", type="sample", value=z[:, t], is_observed=False, infer={})
    return poutine.replay(model.pyro_guide, trace=trace)


@pytest.mark.parametrize("kind,hyper", CONFIGS)
def test_pyro_and_fast_path_agree_on_the_same_draws(kind, hyper):
    model, batch = _model_and_batch(kind, hyper)
    with torch.no_grad():
        terms = model.elbo_terms(batch, generator=torch.Generator().manual_seed(5))
        guide = _guide_with(model, terms.z)
        guide_tr = poutine.trace(guide).get_trace(batch)
        model_tr = poutine.trace(poutine.replay(model.pyro_model, trace=guide_tr)).get_trace(batch)
        # per-sequence log weights from the traces
        model_tr.compute_log_prob()
        guide_tr.compute_log_prob()
        per_seq = sum(s["log_prob"] for s in model_tr.nodes.values()
                      if s["type"] == "sample" and s["log_prob"].dim() == 1)
        per_seq = per_seq - sum(s["log_prob"] for s in guide_tr.nodes.values() if s["type"] == "sample")
        torch.testing.assert_close(per_seq, terms.log_weight, rtol=0, atol=1e-9)
        sampled = Trace_ELBO().loss(model.pyro_model, guide, batch)
        analytic = TraceMeanField_ELBO().loss(model.pyro_model, guide, batch)
    assert abs(sampled + float(terms.log_weight.sum())) < 1e-9
    assert abs(analytic + float(terms.elbo.sum())) < 1e-9
    assert abs(float(terms.elbo.sum() - terms.log_weight.sum())) > 1e-3   # the two really differ


def test_kl_annealing_matches_pyro_scale():
    model, batch = _model_and_batch("binary", {"length": "halting"})
    model.kl_weight = 0.3
    noise_gen = torch.Generator().manual_seed(9)
    with torch.no_grad():
        terms = model.elbo_terms(batch, generator=torch.Generator().manual_seed(9))
        fast = float(model.loss(batch, generator=noise_gen)) * batch.n_frames
        pyro_loss = TraceMeanField_ELBO().loss(model.pyro_model, _guide_with(model, terms.z), batch,
                                               kl_scale=0.3)
    assert abs(fast - pyro_loss) < 1e-9


def test_padding_sites_are_masked_in_the_pyro_program():
    model, batch = _model_and_batch("real", {"length": "halting"})
    with torch.no_grad():
        tr = poutine.trace(model.pyro_model).get_trace(batch)
        tr.compute_log_prob()
    for t in range(1, 8):
        for site in (f"z_{t}", f"x_{t}", f"halt_{t}"):
            lp = tr.nodes[site]["log_prob"]
            assert lp.shape == (3,)
            assert bool((lp[LENGTHS < t] == 0).all()) and bool((lp[LENGTHS >= t] != 0).all())
    assert [f.name for f in tr.nodes["x_1"]["cond_indep_stack"]] == ["sequences"]


def test_svi_with_trace_elbo_trains_the_model():
    """Pyro's SVI on the model/guide reduces the negative ELBO of a fixed batch (seeded)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    model, batch = _model_and_batch("binary", {"length": "halting"})
    svi = SVI(model.pyro_model, model.pyro_guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())

    def neg_elbo():
        with torch.no_grad():
            return -float(model.log_prob(batch, estimator="elbo", samples=200,
                                         generator=torch.Generator().manual_seed(0)).values.sum())

    before = neg_elbo()
    for _ in range(20):
        svi.step(batch)
    after = neg_elbo()
    assert after < before - 2.0, (before, after)
    pyro.clear_param_store()
