"""The RNN-RBM: normalisation, AIS against exact, CD through the RNN, sampling, prediction."""

from __future__ import annotations

import pytest
import torch
from scipy import stats

from probseq.data.batch import Batch
from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model
from probseq.testing.enumerate import all_sequences, random_batch, total_probability


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(d=3, h=2, kind="binary", seed=0, scale=0.7, **hyper):
    torch.manual_seed(seed)
    model = build_model("rnn-rbm", DataSpec(kind, d), {"hidden": 4, "rbm_hidden": h, **hyper}).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model


def test_probabilities_of_all_sequences_of_one_length_sum_to_one():
    """Length none: all sequences of 3 frames sum to 1."""
    model = make_model(d=2, h=2, length="none")
    total = torch.logsumexp(torch.cat([model.log_prob(b).values
                                       for b in all_sequences(DataSpec("binary", 2), 3)]), 0)
    torch.testing.assert_close(total, torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-10)


@pytest.mark.parametrize("length", ["halting", "explicit"])
def test_probabilities_of_all_sequences_of_all_lengths_sum_to_one(length):
    """The length oracle of tests/test_lengths.py: lengths 1..4 plus, for halting, the exact
    ``P(T > 4)`` read from the stop logit after 4 frames, sum to one (exact frame likelihoods)."""
    model = make_model(d=2, h=2, length=length, max_length=4).eval()
    unbounded = length == "halting"
    assert total_probability(model, DataSpec("binary", 2), 4, unbounded=unbounded) == pytest.approx(1.0, abs=1e-9)
    if unbounded:  # the survival term matters: without it the lengths 1..4 miss a visible share
        assert total_probability(model, DataSpec("binary", 2), 4, unbounded=False) < 1 - 1e-3


def test_ais_agrees_with_exact_within_its_error():
    """Three sequences of a 12-pixel / 6-hidden RNN-RBM; |z| < 4.5 fails with probability < 1e-4."""
    model = make_model(d=12, h=6, scale=0.4)
    batch = random_batch(DataSpec("binary", 12), [5, 2, 4], dtype=torch.float64)
    exact = model.log_prob(batch, estimator="exact")
    est = model.log_prob(batch, estimator="ais", samples=100, ais_steps=300,
                         generator=torch.Generator().manual_seed(1))
    assert exact.kind == "exact" and est.kind == "estimate" and est.estimator == "ais-100x300"
    z = (est.values - exact.values) / est.stderr
    assert (z.abs() < 4.5).all(), z


def test_frame_term_is_the_step_rbms_log_probability():
    model = make_model(d=3, h=2)
    batch = random_batch(DataSpec("binary", 3), [4, 2], dtype=torch.float64)
    x, params, _ = model.readouts(batch)
    expected = torch.zeros(2, dtype=torch.float64)
    for i, n in enumerate(batch.lengths.tolist()):
        for t in range(n):
            vb, hb = model.frame.biases(params[i, t])
            expected[i] += model.frame.rbm.log_prob(x[i, t], visible_bias=vb, hidden_bias=hb)
    torch.testing.assert_close(model.log_prob(batch).values, expected)


def test_cd_loss_reaches_the_rnn_and_matches_the_frame_surrogate():
    model = make_model(d=4, h=3, cd_steps=2)
    batch = random_batch(DataSpec("binary", 4), [5, 3], dtype=torch.float64)
    loss = model.loss(batch, generator=torch.Generator().manual_seed(2))
    loss.backward()
    for name in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "readout.weight", "frame.rbm.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and float(grad.abs().sum()) > 0, name
    # the loss is the pooled CD surrogate with negatives from one batched Gibbs run over all frames
    with torch.no_grad():
        x, params, _ = model.readouts(batch)
        mask = batch.mask
        vb, hb = model.frame.biases(params[:, :-1][mask])
        neg = model.frame.rbm.gibbs(x[mask], 2, vb, hb, generator=torch.Generator().manual_seed(2))
        surrogate = model.frame.rbm.free_energy(x[mask], vb, hb) - model.frame.rbm.free_energy(neg, vb, hb)
    torch.testing.assert_close(loss.detach(), surrogate.sum() / batch.n_frames)


def test_sampler_follows_the_model_chi_square():
    """20000 sequences of 2 frames of 2 pixels vs the exact law; fails with probability 1e-3 under the null."""
    model = make_model(d=2, h=2, scale=1.0, sample_steps=40)
    samples = model.sample(20000, length=2, generator=torch.Generator().manual_seed(3))
    code = (samples.values.reshape(20000, 4) @ torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=torch.float64)).long()
    counts = torch.bincount(code, minlength=16).double()
    probs = torch.cat([model.log_prob(b).values.exp() for b in all_sequences(DataSpec("binary", 2), 2)]).detach()
    assert stats.chisquare(counts.numpy(), (probs * 20000).numpy()).pvalue > 1e-3


def test_predict_next_uses_only_the_past():
    model = make_model(d=4, h=3, cell="gru")
    batch = random_batch(DataSpec("binary", 4), [6], dtype=torch.float64)
    pred = model.predict_next(batch)
    changed = batch.values.clone()
    changed[:, 2:] = 1 - changed[:, 2:]
    pred2 = model.predict_next(Batch(changed, batch.lengths))
    torch.testing.assert_close(pred[:, :3], pred2[:, :3])
    assert not torch.allclose(pred[:, 3:], pred2[:, 3:])


def test_gaussian_rnn_rbm_and_validation_loss():
    model = make_model(d=3, h=2, kind="real", scale=0.3, predict="mean-field")
    batch = random_batch(DataSpec("real", 3), [4, 2], dtype=torch.float64)
    model.loss(batch, generator=torch.Generator().manual_seed(0)).backward()
    exact = model.log_prob(batch, estimator="exact")
    est = model.log_prob(batch, estimator="ais", samples=200, ais_steps=200,
                         generator=torch.Generator().manual_seed(1))
    assert ((est.values - exact.values).abs() < 4.5 * est.stderr).all()
    score = model.validation_loss(batch)
    pred = model.predict_next(batch)
    x = batch.padded_with_zeros()
    expected = float(((pred - x) ** 2).sum(-1)[batch.mask].mean())
    assert abs(score - expected) < 1e-9


def test_prepare_sets_marginal_biases_and_optional_pretraining():
    model = build_model("rnn-rbm", DataSpec("binary", 5), {"hidden": 4, "rbm_hidden": 3, "pretrain_steps": 30})
    g = torch.Generator().manual_seed(4)
    train = [torch.bernoulli(torch.full((9, 5), 0.2), generator=g) for _ in range(4)]
    w0 = model.frame.rbm.weight.detach().clone()
    model.prepare(Dataset("toy", DataSpec("binary", 5), {"train": train, "valid": train, "test": train}))
    assert not torch.allclose(model.frame.rbm.weight, w0)
    assert "frame.rbm.weight" in model.state_dict() and not hasattr(model.frame.rbm, "_velocity")


def test_bad_options_and_data_are_user_errors():
    with pytest.raises(UserError, match="cell"):
        build_model("rnn-rbm", DataSpec("binary", 5), {"cell": "transformer"})
    with pytest.raises(UserError, match="cannot fit categorical"):
        build_model("rnn-rbm", DataSpec("categorical", 5), {})
    model = make_model(d=3, h=2)
    with pytest.raises(UserError, match="0s and 1s"):
        model.log_prob(Batch(torch.full((1, 2, 3), 0.5, dtype=torch.float64), torch.tensor([2])))
    with pytest.raises(UserError, match="2 chains"):
        model.log_prob(random_batch(DataSpec("binary", 3), [2], dtype=torch.float64), estimator="ais", samples=1)


def _toy_dataset(d=5, n=40, length=25, seed=4):
    """Frames from two modes (keys 0-1 or keys 2-4 held), so a static RBM has something to learn."""
    g = torch.Generator().manual_seed(seed)
    modes = torch.tensor([[1.0, 1, 0, 0, 0], [0.0, 0, 1, 1, 1]])[:, :d]
    train = []
    for _ in range(n):
        pick = modes[torch.randint(2, (length,), generator=g)]
        flip = torch.bernoulli(torch.full((length, d), 0.05), generator=g)
        train.append((pick + flip) % 2)
    return Dataset("toy", DataSpec("binary", d), {"train": train, "valid": train, "test": train})


def test_default_pretraining_raises_the_static_rbms_exact_likelihood_of_the_training_frames():
    """``prepare`` with the default recipe pre-trains the RBM as a static RBM: the exact mean
    log-likelihood of the training frames (5 keys, 3 hidden units: Z by enumeration; 1,000 frames,
    so the pass cap allows 200 minibatches) beats the marginal-bias start of ``pretrain_steps=0``
    by a margin no noise explains (measured -1.64 against -3.47; the data's entropy is ~1.7)."""
    data = _toy_dataset()
    frames = torch.cat(data.split("train"))
    scores = {}
    for steps in (0, None):
        torch.manual_seed(0)
        hyper = {"hidden": 4, "rbm_hidden": 3, **({} if steps is None else {"pretrain_steps": steps})}
        model = build_model("rnn-rbm", DataSpec("binary", 5), hyper)
        model.prepare(data)
        with torch.no_grad():
            scores[steps] = float(model.frame.rbm.log_prob(frames).mean().detach())
    assert scores[None] > scores[0] + 1.0, scores


def test_pretraining_length_is_capped_by_passes_over_the_training_frames():
    model = build_model("rnn-rbm", DataSpec("binary", 5), {"hidden": 4, "rbm_hidden": 3})
    assert model.config["pretrain_steps"] == 2000
    assert model.pretrain_minibatches(36) == model.PRETRAIN_MAX_PASSES          # 1 minibatch per pass
    assert model.pretrain_minibatches(13_807) == 2000                           # JSB: the full 2,000
    off = build_model("rnn-rbm", DataSpec("binary", 5), {"hidden": 4, "rbm_hidden": 3, "pretrain_steps": 0})
    assert off.pretrain_minibatches(13_807) == 0


def test_defaults_are_the_papers_sizes_and_cd_k():
    """Boulanger-Lewandowski et al. 2012 / the RNN-RBM tutorial: 100 tanh recurrent units, an RBM
    of 150 hidden units, CD-15."""
    model = build_model("rnn-rbm", DataSpec("binary", 88), {})
    cfg = model.config
    assert (cfg["hidden"], cfg["cell"], cfg["rbm_hidden"], cfg["cd_steps"]) == (100, "rnn", 150, 15)
    assert model.frame.cd_steps == 15
