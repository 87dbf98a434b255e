"""The RTRBM: gradient equations written out by hand, normalisation, sampling, AIS, training recipe."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from probseq.data.batch import Batch
from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.frames.rbm_exact import binary_states
from probseq.models.registry import build_model
from probseq.testing.enumerate import all_sequences, random_batch


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(d=3, h=2, kind="binary", seed=0, scale=0.8, **hyper):
    torch.manual_seed(seed)
    model = build_model("rtrbm", DataSpec(kind, d), {"hidden": h, **hyper}).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model


def hand_gradient(model, v, expectations):
    """Thesis eqs. 3.23-3.25 for one sequence ``v`` ``(T, D)``, written out step by step.

    ``expectations(t, c_t) -> (E[v], E[h], E[v h^T])`` under step ``t``'s RBM (CD estimates or exact).
    Returns the gradient of ``L = sum_t log P_t(v_t)`` (ascent direction) by parameter name.
    """
    rbm = model.rbm
    W, Wr = rbm.weight.detach(), model.recurrent_weight.detach()
    bH, binit = rbm.hidden_bias.detach(), model.initial_hidden_bias.detach()
    T = v.shape[0]
    c, r = [], []
    for t in range(T):
        c_t = binit if t == 0 else bH + Wr @ r[t - 1]
        c.append(c_t)
        r.append(torch.sigmoid(W.t() @ v[t] + c_t))
    exp = [expectations(t, c[t]) for t in range(T)]
    deltas = [None] * T
    dr = [None] * T
    for t in reversed(range(T)):
        dr[t] = torch.zeros_like(bH) if t == T - 1 else Wr.t() @ deltas[t + 1]
        deltas[t] = (r[t] - exp[t][1]) + dr[t] * r[t] * (1 - r[t])
    g = {
        "rbm.weight": sum(torch.outer(v[t], r[t]) - exp[t][2] + torch.outer(v[t], dr[t] * r[t] * (1 - r[t]))
                          for t in range(T)),
        "rbm.visible_bias": sum(v[t] - exp[t][0] for t in range(T)),
        "rbm.hidden_bias": sum(deltas[t] for t in range(1, T)),
        "initial_hidden_bias": deltas[0],
        "recurrent_weight": sum(torch.outer(deltas[t], r[t - 1]) for t in range(1, T)),
    }
    return g


def test_cd_gradient_matches_the_thesis_equations():
    model = make_model(d=4, h=3, cd_steps=3)
    x = torch.bernoulli(torch.full((1, 5, 4), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    batch = Batch(x, torch.tensor([5]))
    loss = model.loss(batch, generator=torch.Generator().manual_seed(2))
    names = [n for n, _ in model.named_parameters()]
    auto = dict(zip(names, torch.autograd.grad(loss, list(model.parameters()))))
    # the same negatives: loss() runs the chains of all steps at once with the generator's stream
    with torch.no_grad():
        c, _ = model.hidden_biases(x)
        negatives = model.rbm.gibbs(x[0], 3, model.rbm.visible_bias, c[0],
                                    generator=torch.Generator().manual_seed(2))

    def cd_expectations(t, c_t):
        vn = negatives[t]
        hn = torch.sigmoid(model.rbm.weight.detach().t() @ vn + c_t)
        return vn, hn, torch.outer(vn, hn)

    hand = hand_gradient(model, x[0], cd_expectations)
    for name, value in hand.items():
        # loss = -(surrogate sum) / frames, so its gradient is -hand / 5
        torch.testing.assert_close(auto[name], -value / 5, rtol=1e-9, atol=1e-12)


def test_exact_gradient_matches_the_thesis_equations_with_exact_expectations():
    model = make_model(d=3, h=2)
    x = torch.tensor([[[1, 0, 1], [0, 0, 1], [1, 1, 0], [1, 0, 0]]], dtype=torch.float64)
    batch = Batch(x, torch.tensor([4]))
    lp = model.log_prob(batch, estimator="exact").values.sum()
    names = [n for n, _ in model.named_parameters()]
    auto = dict(zip(names, torch.autograd.grad(lp, list(model.parameters()))))
    states = binary_states(3, dtype=torch.float64)

    def exact_expectations(t, c_t):
        rbm = model.rbm
        with torch.no_grad():
            p = torch.softmax(-rbm.free_energy(states, hidden_bias=c_t), 0)
            hp = torch.sigmoid(states @ rbm.weight + c_t)
        return p @ states, p @ hp, (states * p[:, None]).t() @ hp

    hand = hand_gradient(model, x[0], exact_expectations)
    for name, value in hand.items():
        torch.testing.assert_close(auto[name], value, rtol=1e-9, atol=1e-12)


def test_probabilities_of_all_sequences_sum_to_one():
    model = make_model(d=3, h=2, scale=1.0)
    total = torch.logsumexp(torch.cat([model.log_prob(b, estimator="exact").values
                                       for b in all_sequences(DataSpec("binary", 3), 3)]), 0)
    torch.testing.assert_close(total, torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-10)


def test_sampler_follows_the_model_chi_square():
    """20000 sequences of 2 frames of 2 pixels (16 outcomes), 40 Gibbs rounds per frame, vs exact.

    Seeded; under the null the test fails with probability 1e-3 (the p-value threshold).
    """
    model = make_model(d=2, h=2, scale=1.0, sample_steps=40)
    g = torch.Generator().manual_seed(3)
    samples = model.sample(20000, length=2, generator=g)
    code = (samples.values.reshape(20000, 4) @ torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).long()
    counts = torch.bincount(code, minlength=16).double()
    probs = torch.cat([model.log_prob(b, estimator="exact").values.exp()
                       for b in all_sequences(DataSpec("binary", 2), 2)]).detach()
    torch.testing.assert_close(probs.sum(), torch.ones((), dtype=torch.float64))
    assert stats.chisquare(counts.numpy(), (probs * 20000).numpy()).pvalue > 1e-3


def test_ais_agrees_with_exact_for_whole_sequences():
    """Sequence log-likelihoods of a 12-pixel, 6-hidden RTRBM: AIS within 4.5 stderr of exact.

    Three sequences, each estimate independent; failure probability under the null < 1e-4.
    """
    model = make_model(d=12, h=6, scale=0.5)
    batch = random_batch(DataSpec("binary", 12), [6, 3, 5], dtype=torch.float64)
    exact = model.log_prob(batch, estimator="exact")
    est = model.log_prob(batch, estimator="ais", samples=100, ais_steps=300,
                         generator=torch.Generator().manual_seed(4))
    assert exact.kind == "exact" and exact.stderr is None and exact.estimator == "exact"
    assert est.kind == "estimate" and est.estimator == "ais-100x300"
    z = (est.values - exact.values) / est.stderr
    assert (z.abs() < 4.5).all(), z


def test_default_estimator_is_exact_only_for_tiny_models():
    assert make_model(d=3, h=2).check_estimator(None) == "exact"
    big = build_model("rtrbm", DataSpec("binary", 30), {"hidden": 20})
    assert big.check_estimator(None) == "ais" and big.likelihood_kind == "estimate"
    with pytest.raises(UserError, match="estimator"):
        big.check_estimator("elbo")


def test_predict_next_uses_only_the_past():
    model = make_model(d=4, h=3)
    batch = random_batch(DataSpec("binary", 4), [6], dtype=torch.float64)
    pred = model.predict_next(batch)
    changed = batch.values.clone()
    changed[:, 3:] = 1 - changed[:, 3:]
    pred2 = model.predict_next(Batch(changed, batch.lengths))
    torch.testing.assert_close(pred[:, :4], pred2[:, :4])
    assert not torch.allclose(pred[:, 4:], pred2[:, 4:])
    # with predict=mean-field, frame 1 is the mean-field mean of the RBM with hidden bias b_init
    model.config["predict"] = "mean-field"
    torch.testing.assert_close(model.predict_next(batch)[0, 0],
                               model.rbm.mean_field(model.rbm.visible_bias, model.initial_hidden_bias))


def test_gibbs_prediction_is_the_exact_conditional_mean():
    """predict=gibbs with 4000 chains vs E[v_t | v_<t] by enumeration, on every step of a sequence.

    The Monte Carlo error of each component is below 0.5 / sqrt(4000) = 0.008; the tolerance 0.04
    is five of those (the chains run 25 rounds on a 3-pixel RBM, far past mixing). Seeded.
    """
    model = make_model(d=3, h=2, scale=1.0, predict_chains=4000)
    batch = random_batch(DataSpec("binary", 3), [4], dtype=torch.float64)
    pred = model.predict_next(batch)
    torch.testing.assert_close(pred, model.predict_next(batch))          # deterministic
    c, _ = model.hidden_biases(batch.values)
    states = binary_states(3, dtype=torch.float64)
    for t in range(4):
        with torch.no_grad():
            p = torch.softmax(-model.rbm.free_energy(states, hidden_bias=c[0, t]), 0)
        assert float((pred[0, t] - p @ states).abs().max()) < 0.04


def test_gaussian_rtrbm_trains_samples_and_scores():
    model = make_model(d=3, h=2, kind="real", scale=0.3, learn_sigma=True)
    batch = random_batch(DataSpec("real", 3), [4, 2], dtype=torch.float64)
    model.loss(batch, generator=torch.Generator().manual_seed(0)).backward()
    assert model.rbm.log_sigma.grad is not None and torch.isfinite(model.rbm.log_sigma.grad).all()
    exact = model.log_prob(batch, estimator="exact")
    est = model.log_prob(batch, estimator="ais", samples=200, ais_steps=200,
                         generator=torch.Generator().manual_seed(1))
    assert ((est.values - exact.values).abs() < 4.5 * est.stderr).all()
    sample = model.sample(2, length=3, generator=torch.Generator().manual_seed(2))
    assert sample.values.shape == (2, 3, 3) and torch.isfinite(sample.values).all()
    assert model.predict_next(batch).shape == (2, 4, 3)


def test_thesis_preset_schedule_and_static_pretraining():
    model = build_model("rtrbm", DataSpec("binary", 6), {"hidden": 4, "preset": "thesis",
                                                          "pretrain_steps": 50})
    assert model.training_defaults["optimizer"] == "sgd"
    assert model.training_defaults["momentum"] == 0.9 and model.training_defaults["lr_schedule"] == "linear"
    model.on_train_step(10, 100)
    assert model.cd_steps == 10
    model.on_train_step(60, 100)
    assert model.cd_steps == 25
    g = torch.Generator().manual_seed(5)
    train = [torch.bernoulli(torch.full((8, 6), 0.3), generator=g) for _ in range(5)]
    dataset = Dataset("toy", DataSpec("binary", 6), {"train": train, "valid": train[:2], "test": train[:2]})
    w0 = model.rbm.weight.detach().clone()
    torch.manual_seed(0)
    model.prepare(dataset)
    assert not torch.allclose(model.rbm.weight, w0)
    torch.testing.assert_close(model.initial_hidden_bias, model.rbm.hidden_bias)
    assert not hasattr(model.rbm, "_velocity")
    assert set(model.state_dict()) == {"rbm.weight", "rbm.visible_bias", "rbm.hidden_bias",
                                       "recurrent_weight", "initial_hidden_bias"}
    with pytest.raises(UserError, match="preset"):
        build_model("rtrbm", DataSpec("binary", 6), {"preset": "paper"})
    with pytest.raises(UserError, match="length"):
        build_model("rtrbm", DataSpec("binary", 6), {"length": "explicit"})


def test_fit_end_to_end_with_the_thesis_preset(tmp_path):
    from probseq.train.fit import fit

    g = torch.Generator().manual_seed(6)
    seqs = [torch.bernoulli(torch.full((10, 5), 0.3), generator=g) for _ in range(6)]
    dataset = Dataset("toy", DataSpec("binary", 5), {"train": seqs, "valid": seqs[:2], "test": seqs[:2]})
    model = build_model("rtrbm", DataSpec("binary", 5), {"hidden": 3, "preset": "thesis", "pretrain_steps": 20,
                                                          "cd_steps": 2, "cd_steps_late": 3})
    summary = fit(model, dataset, tmp_path, steps=6, seed=0, options={"batch_size": 3}, progress=False)
    assert summary.steps == 6 and (tmp_path / "model.pt").exists()
    assert model.cd_steps == 3
    assert math.isfinite(float(model.log_prob(Batch.from_sequences(seqs[:2])).values.sum()))
