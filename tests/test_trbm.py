"""The TRBM against brute-force oracles (probseq/testing/trbm_oracle.py) on tiny models, in float64."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.stacked_trbm import StackedTRBM
from probseq.models.trbm import TRBM
from probseq.testing import trbm_oracle as oracle
from probseq.testing.enumerate import all_sequences

VARIANTS = [dict(vv=True, vh=True, hh=True), dict(vv=False, vh=True, hh=True),
            dict(vv=True, vh=False, hh=True), dict(vv=True, vh=True, hh=False),
            dict(vv=False, vh=False, hh=True)]


def make_trbm(d=2, h=2, m=1, seed=0, scale=0.8, kind="binary", **hyper):
    torch.manual_seed(seed)
    model = TRBM(DataSpec(kind, d), hidden=h, delay=m, init_std=scale, **hyper).double()
    with torch.no_grad():
        model.rbm.visible_bias.normal_()
        model.rbm.hidden_bias.normal_()
        for p in (model.initial_visible, model.initial_hidden):
            if p is not None:
                p.normal_()
    return model.eval()


def every_sequence(d, length):
    return torch.cat([b.values for b in all_sequences(DataSpec("binary", d), length)]).double()


def seq_batch(values):
    return Batch(values, torch.full((values.shape[0],), values.shape[1], dtype=torch.long))


# ---------------------------------------------------------------------------- likelihood
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(k for k, on in v.items() if on))
@pytest.mark.parametrize("m", [1, 2])
def test_filtered_log_prob_matches_oracle_and_sums_to_one(variant, m):
    model = make_trbm(m=m, seed=m, **variant)
    seqs = every_sequence(2, 3)
    result = model.log_prob(seq_batch(seqs), estimator="filtered")
    assert result.kind == "approximation" and result.estimator == "filtered-exact" and result.stderr is None
    assert result.bias == "unknown"
    expected = torch.stack([oracle.filtered_log_prob(model, s) for s in seqs])
    torch.testing.assert_close(result.values, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.logsumexp(result.values, 0), torch.zeros((), dtype=torch.float64),
                               rtol=0, atol=1e-10)


def test_the_oracle_marginal_sums_to_one_and_differs_from_the_filter():
    model = make_trbm(seed=3, scale=1.5)
    seqs = every_sequence(2, 2)
    exact = torch.stack([oracle.exact_log_marginal(model, s) for s in seqs])
    torch.testing.assert_close(torch.logsumexp(exact, 0), torch.zeros((), dtype=torch.float64),
                               rtol=0, atol=1e-10)
    filtered = model.log_prob(seq_batch(seqs), estimator="filtered").values
    assert (exact - filtered).abs().max() > 1e-2, "the filter should be an approximation here"


def test_without_hidden_hidden_connections_the_filter_is_exact():
    # with hh=false the biases depend on visible history only, so Q = P
    model = make_trbm(seed=4, scale=1.5, hh=False)
    seqs = every_sequence(2, 3)[::7]           # 10 of the 64: each oracle call enumerates 64 trajectories
    exact = torch.stack([oracle.exact_log_marginal(model, s) for s in seqs])
    torch.testing.assert_close(model.log_prob(seq_batch(seqs), estimator="filtered").values, exact,
                               rtol=0, atol=1e-10)


def test_importance_sampling_estimates_the_true_marginal():
    # failure rate: a 4-standard-error miss, about 6e-5 per sequence if the estimator is right
    model = make_trbm(seed=5, scale=1.5)
    seqs = every_sequence(2, 3)[[0, 21, 42, 63]]
    g = torch.Generator().manual_seed(0)
    result = model.log_prob(seq_batch(seqs), estimator="is", samples=4000, generator=g)
    assert result.kind == "bound" and result.estimator == "is-4000"
    exact = torch.stack([oracle.exact_log_marginal(model, s) for s in seqs])
    assert ((result.values - exact).abs() <= 4 * result.stderr + 1e-3).all(), (result.values, exact)
    filtered = model.log_prob(seq_batch(seqs), estimator="filtered").values
    assert ((filtered - exact).abs() > 8 * result.stderr).any(), "the test cannot tell P from Q"


def test_importance_sampling_over_a_padded_batch_estimates_each_sequences_marginal():
    """Batched over unequal lengths (garbage in the padding) vs the exact marginal of each sequence
    alone. The default ``is`` draws one noise stream for all rows, so batched and per-sequence runs
    cannot be compared value for value (tests/test_model_contract.py compares the deterministic
    filter); each row must still estimate its own sequence. 4-standard-error miss: about 6e-5 per row."""
    model = make_trbm(seed=5, scale=1.5)
    g = torch.Generator().manual_seed(3)
    lengths = [3, 1, 2]
    values = torch.bernoulli(torch.full((3, 3, 2), 0.5, dtype=torch.float64), generator=g)
    for i, n in enumerate(lengths):
        values[i, n:] = float("nan")
    result = model.log_prob(Batch(values, torch.tensor(lengths)), estimator="is", samples=4000, generator=g)
    exact = torch.stack([oracle.exact_log_marginal(model, values[i, :n]) for i, n in enumerate(lengths)])
    assert torch.isfinite(result.values).all()
    assert ((result.values - exact).abs() <= 4 * result.stderr + 1e-3).all(), (result.values, exact)


def test_ais_estimates_the_filtered_likelihood_within_its_error():
    model = make_trbm(seed=6)
    seqs = every_sequence(2, 3)[[5, 17, 60]]
    exact = model.log_prob(seq_batch(seqs), estimator="filtered").values
    g = torch.Generator().manual_seed(1)
    model.exact_by_default = False          # per-step log Z by AIS, as for a large model
    ais = model.log_prob(seq_batch(seqs), estimator="filtered", samples=200, ais_steps=200, generator=g)
    assert ais.kind == "approximation" and ais.estimator == "filtered-ais-200x200"
    assert ((ais.values - exact).abs() <= 4 * ais.stderr + 0.02).all()


def test_is_estimator_refuses_models_too_large_to_enumerate():
    model = TRBM(DataSpec("binary", 20), hidden=20)
    with pytest.raises(UserError, match="too large"):
        model.log_prob(seq_batch(torch.zeros(1, 3, 20)), estimator="is", samples=5)


def test_gaussian_filtered_density_integrates_to_one():
    model = make_trbm(d=1, h=2, seed=7, kind="real", scale=0.7)
    grid = torch.linspace(-9, 9, 241, dtype=torch.float64)
    a, b = torch.meshgrid(grid, grid, indexing="ij")
    seqs = torch.stack([a.flatten(), b.flatten()], 1).unsqueeze(-1)        # (N, 2, 1)
    log_q = model.log_prob(seq_batch(seqs), estimator="filtered").values
    step = float(grid[1] - grid[0])
    total = float(torch.exp(log_q).sum()) * step * step
    assert abs(total - 1.0) < 1e-4


# ---------------------------------------------------------------------------- sampling
def _chi_square(model, expected_log_prob, n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = model.sample(n, length=2, generator=g).values                  # (n, 2, 2)
    codes = (samples.reshape(n, 4) * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=samples.dtype)).sum(1).long()
    counts = torch.bincount(codes, minlength=16).double()
    expected = torch.exp(expected_log_prob) * n
    return stats.chisquare(counts.numpy(), expected.numpy()).pvalue


def discriminating_trbm(sampler):
    """Uncertain first hiddens and strong hidden-hidden weights: P and Q differ (total variation ~0.08)."""
    model = make_trbm(seed=0, scale=1.0, sample_steps=40, sampler=sampler)
    with torch.no_grad():
        model.rbm.hidden_bias.mul_(0.2)
        model.rbm.visible_bias.mul_(0.2)
        model.initial_hidden.zero_()
        model.rbm.weight.mul_(2.0)
        model.hh_weight.copy_(5.0 * torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    seqs = every_sequence(2, 2)                                              # codes 0..15 in this order
    exact = torch.stack([oracle.exact_log_marginal(model, s) for s in seqs])
    filtered = model.log_prob(seq_batch(seqs), estimator="filtered").values
    return model, exact, filtered


def test_trbm_sampler_draws_from_the_true_marginal():
    # seeded; a correct sampler fails this 0.1% test for 1 seed in 1000 (Gibbs bias negligible at 40 steps)
    model, exact, filtered = discriminating_trbm("trbm")
    assert _chi_square(model, exact) > 1e-3
    assert _chi_square(model, filtered) < 1e-3, "P and Q are too close for this test to discriminate"


def test_rtrbm_procedure_samples_the_filtered_distribution():
    model, exact, filtered = discriminating_trbm("rtrbm")
    assert _chi_square(model, filtered) > 1e-3
    assert _chi_square(model, exact) < 1e-3


# ---------------------------------------------------------------------------- learning rule
@pytest.mark.parametrize("kind", ["binary", "real"])
def test_cd_gradient_matches_the_thesis_equations(kind):
    """Eqs. 3.7-3.10: every step's CD gradient with the filtered means of the past held fixed."""
    model = make_trbm(d=3, h=2, m=2, seed=9, kind=kind, cd_steps=2).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    if kind == "binary":
        x = (x > 0).double()
    batch = Batch(x, torch.tensor([5, 3]))
    model.zero_grad()
    model.loss(batch, generator=torch.Generator().manual_seed(11)).backward()

    with torch.no_grad():
        xz = batch.padded_with_zeros()
        mask = batch.mask
        vb, c, hbar = model.filter(xz)
        negatives = model.rbm.gibbs(xz[mask], 2, vb[mask], c[mask], generator=torch.Generator().manual_seed(11))
        n = batch.n_frames
        v, c_t = xz[mask], c[mask]
        scale = (1.0 / model.rbm.sigma) if model.rbm.gaussian else torch.ones(3, dtype=torch.float64)
        p_pos = torch.sigmoid(c_t + (v * scale) @ model.rbm.weight)
        p_neg = torch.sigmoid(c_t + (negatives * scale) @ model.rbm.weight)
        assert torch.allclose(p_pos, hbar[mask])
        # d(-L)/d b_t and d(-L)/d c_t of the surrogate (F(v) - F(v~)) / n
        d_b = (negatives - v) * scale ** 2 / n
        d_c = (p_neg - p_pos) / n
        vtaps = model._taps(xz, model.initial_visible)[mask]
        htaps = model._taps(hbar, torch.sigmoid(model.initial_hidden))[mask]
        expected = {
            "vv_weight": d_b.t() @ vtaps,
            "vh_weight": d_c.t() @ vtaps,
            "hh_weight": d_c.t() @ htaps,
            "rbm.weight": ((negatives * scale).t() @ p_neg - (v * scale).t() @ p_pos) / n,
            "rbm.visible_bias": d_b.sum(0),
            "rbm.hidden_bias": d_c.sum(0),
        }
    params = dict(model.named_parameters())
    for name, grad in expected.items():
        torch.testing.assert_close(params[name].grad, grad, rtol=1e-10, atol=1e-12, msg=name)


def test_learned_initial_states_receive_gradients():
    model = make_trbm(d=3, h=2, m=2, seed=10).train()
    x = (torch.randn(2, 4, 3, generator=torch.Generator().manual_seed(0)) > 0).double()
    model.loss(Batch(x, torch.tensor([4, 4])), generator=torch.Generator().manual_seed(0)).backward()
    assert model.initial_visible.grad.abs().sum() > 0
    assert model.initial_hidden.grad.abs().sum() > 0


@pytest.mark.parametrize("variant", VARIANTS[1:4], ids=["no-vv", "no-vh", "no-hh"])
def test_variants_omit_their_connections(variant):
    model = make_trbm(**variant)
    names = dict(model.named_parameters())
    for flag, param in (("vv", "vv_weight"), ("vh", "vh_weight"), ("hh", "hh_weight")):
        assert (param in names) == variant[flag]


def test_training_learns_a_deterministic_cycle():
    """A 3-frame cycle of one-hot frames: after CD training the next-frame prediction is right."""
    torch.manual_seed(0)
    eye = torch.eye(3)
    data = [eye[(torch.arange(12) + s) % 3] for s in range(3)] * 8
    model = TRBM(DataSpec("binary", 3), hidden=8, cd_steps=1, init_std=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(0)
    batch = Batch.from_sequences(data)
    before = model.validation_loss(batch)
    for _ in range(60):                  # accuracy 1.0 and loss ratio about 0.065 for seeds 0..2 at 60
        opt.zero_grad()
        model.loss(batch, generator=g).backward()
        opt.step()
    pred = model.predict_next(batch)[:, 1:]
    accuracy = float(((pred > 0.5).float() == batch.values[:, 1:]).float().mean())
    assert accuracy > 0.97 and model.validation_loss(batch) < 0.5 * before


# ---------------------------------------------------------------------------- prediction, denoising, stacking
def test_predict_next_is_the_exact_mean_when_weights_vanish():
    model = make_trbm(d=3, h=2, m=2, seed=11)
    with torch.no_grad():
        model.rbm.weight.zero_()
    x = (torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0)) > 0).double()
    pred = model.predict_next(seq_batch(x))
    vtaps = model._taps(x, model.initial_visible)
    expected = torch.sigmoid(model.rbm.visible_bias + vtaps @ model.vv_weight.t())
    torch.testing.assert_close(pred, expected.detach(), rtol=0, atol=1e-12)


def test_denoise_is_online_and_reconstructs_from_the_filtered_hiddens():
    model = make_trbm(d=3, h=4, m=2, seed=12, kind="real")
    noisy = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = model.denoise(noisy)
    changed = noisy.clone()
    changed[:, 4:] += 5.0
    torch.testing.assert_close(model.denoise(changed)[:, :4], out[:, :4])
    with torch.no_grad():
        v_taps = model.initial_visible.reshape(-1)                            # [v_0, v_-1]
        h_taps = torch.sigmoid(model.initial_hidden).reshape(-1)
        b1 = model.rbm.visible_bias + v_taps @ model.vv_weight.t()
        c1 = model.rbm.hidden_bias + v_taps @ model.vh_weight.t() + h_taps @ model.hh_weight.t()
        h1 = torch.sigmoid(c1 + (noisy[:, 0] / model.rbm.sigma) @ model.rbm.weight)
        v1 = b1 + model.rbm.sigma * (h1 @ model.rbm.weight.t())
    torch.testing.assert_close(out[:, 0], v1)


def test_stacked_trbm_samples_and_trains_only_the_upper_layer():
    lower = make_trbm(d=3, h=4, seed=13, kind="real", sample_steps=3)
    upper = TRBM(DataSpec("binary", 4), hidden=3, sample_steps=3).double()
    stack = StackedTRBM(lower, upper)
    x = torch.randn(3, 6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    stack.upper_training_loss(seq_batch(x), generator=torch.Generator().manual_seed(0)).backward()
    assert all(p.grad is None for p in lower.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in upper.parameters())
    samples = stack.sample(2, 7, generator=torch.Generator().manual_seed(1))
    assert samples.values.shape == (2, 7, 3) and torch.isfinite(samples.values).all()
    with pytest.raises(UserError, match="upper TRBM"):
        StackedTRBM(lower, TRBM(DataSpec("binary", 5), hidden=2))


# ---------------------------------------------------------------------------- errors
def test_clear_errors():
    with pytest.raises(UserError, match="sampler"):
        TRBM(DataSpec("binary", 3), sampler="gibbs")
    with pytest.raises(UserError, match="delay"):
        TRBM(DataSpec("binary", 3), delay=0)
    with pytest.raises(UserError, match="0s and 1s"):
        TRBM(DataSpec("binary", 2), hidden=2).log_prob(seq_batch(torch.full((1, 2, 2), 0.5)))
    with pytest.raises(UserError, match="cannot fit categorical"):
        TRBM(DataSpec("categorical", 3))
    loss = TRBM(DataSpec("real", 2), hidden=2).loss(seq_batch(torch.randn(1, 3, 2)))
    assert math.isfinite(float(loss.detach()))
