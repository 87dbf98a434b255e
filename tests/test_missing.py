"""Missing values (issue 21): the observed mask of a batch, the observed part's likelihood against
brute-force sums over every completion, the particle filter's unbiasedness and completions, training
on the observed part.

Statistical tests are seeded; each states its failure rate for an unseeded run.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.frames.nade import NADE
from probseq.missing.particles import particle_filter
from probseq.models.registry import build_model
from probseq.testing.missing_oracle import brute_force_conditional, brute_force_observed_log_prob

NAN = float("nan")


@pytest.fixture(autouse=True)
def _float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _model(name: str, spec=DataSpec("binary", 4), scale: float = 0.8, **hyper):
    torch.manual_seed(1)
    defaults = {"independent": {"length": "halting"},
                "nade": {"nade_hidden": 3, "length": "halting"},
                "gru": {"hidden": 5, "length": "halting"},
                "lstm": {"hidden": 5},
                "rnn-nade": {"hidden": 5, "nade_hidden": 3, "input_dropout": 0.0, "output_dropout": 0.0,
                             "weight_drop": 0.0, "length": "halting"}}[name]
    model = build_model(name, spec, {**defaults, **hyper})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)
    return model.eval()


def _holey_batch(seed: int = 0, B: int = 3, T: int = 3, D: int = 4, p_missing: float = 0.35) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.bernoulli(torch.full((B, T, D), 0.5), generator=g)
    observed = torch.rand(B, T, D, generator=g) > p_missing
    observed[:, 0, 0] = True
    return Batch(x, torch.tensor([T, T - 1, T][:B]), observed)


# ----------------------------------------------------------------------------- the batch contract
def test_nan_in_examples_becomes_a_mask_with_zeros():
    batch = Batch.from_sequences([torch.tensor([[1.0, NAN], [0.0, 1.0]]), torch.tensor([[NAN, 1.0]])])
    assert batch.observed.tolist() == [[[True, False], [True, True]], [[False, True], [True, True]]]
    assert not torch.isnan(batch.values).any()
    assert batch.values[0, 0, 1] == 0 and batch.values[1, 0, 0] == 0
    assert batch.has_missing and batch.n_observed == 4
    sub = batch.select([1])
    assert sub.observed.shape == sub.values.shape and sub.has_missing
    assert Batch.from_sequences([torch.ones(2, 2)]).observed is None


def test_missing_values_written_by_a_caller_are_zeroed():
    values = torch.full((1, 2, 2), 7.0)
    values[0, 1, 1] = NAN
    batch = Batch(values, torch.tensor([2]), torch.tensor([[[True, False], [True, False]]]))
    assert batch.values[0, :, 1].tolist() == [0.0, 0.0]


def test_wrong_shape_mask_is_one_sentence():
    with pytest.raises(UserError, match="shape of the values"):
        Batch(torch.zeros(2, 3, 4), torch.tensor([3, 2]), torch.ones(2, 3, dtype=torch.bool))


def test_everything_missing_is_refused():
    with pytest.raises(UserError, match="every value of the batch is missing"):
        Batch.from_sequences([torch.full((3, 2), NAN)])
    # observed values only in the padding do not count
    observed = torch.zeros(1, 3, 2, dtype=torch.bool)
    observed[0, 2] = True
    with pytest.raises(UserError, match="every value"):
        Batch(torch.zeros(1, 3, 2), torch.tensor([2]), observed)


def test_models_without_missing_support_refuse_nan_in_one_sentence():
    model = build_model("rnn-rbm", DataSpec("binary", 4), {"hidden": 3, "rbm_hidden": 2})
    with pytest.raises(UserError, match="missing values"):
        model.validate_examples([torch.tensor([[1.0, NAN, 0.0, 1.0]])])
    # models that support them accept NaN and still check the rest of the frame
    gru = _model("gru")
    gru.validate_examples([torch.tensor([[1.0, NAN, 0.0, 1.0]])])
    with pytest.raises(UserError):
        gru.validate_examples([torch.tensor([[1.0, NAN, 0.5 + 2, 1.0]])])


def test_nothing_missing_keeps_the_exact_likelihood():
    model = _model("gru")
    batch = _holey_batch()
    full = Batch(batch.values, batch.lengths)
    all_seen = Batch(batch.values, batch.lengths, torch.ones_like(batch.values, dtype=torch.bool))
    a, b = model.log_prob(full), model.log_prob(all_seen)
    assert b.kind == "exact" and torch.allclose(a.values, b.values)


# ----------------------------------------------------------------------------- exact marginals
@pytest.mark.parametrize("name", ["independent"])
def test_factorial_marginal_equals_the_brute_force_sum(name):
    model = _model(name)
    batch = _holey_batch()
    result = model.log_prob(batch)
    assert result.kind == "exact"
    assert torch.allclose(result.values, brute_force_observed_log_prob(model, batch), atol=1e-10)


def test_gaussian_marginal_drops_the_missing_terms():
    model = _model("independent", spec=DataSpec("real", 3), length="none")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 3, generator=g)
    observed = torch.rand(2, 3, 3, generator=g) > 0.4
    observed[:, 0, 0] = True
    result = model.log_prob(Batch(x, torch.tensor([3, 3]), observed))
    mu, log_std = model.frame_params.detach().split(3)
    std = log_std.clamp(-7, 5).exp()
    expected = torch.where(observed, torch.distributions.Normal(mu, std).log_prob(x), torch.zeros(())).sum((1, 2))
    assert result.kind == "exact" and torch.allclose(result.values, expected)


def test_nade_marginal_is_exact_when_the_observed_dimensions_come_first():
    model = _model("nade", scale=1.0)
    g = torch.Generator().manual_seed(3)
    x = torch.bernoulli(torch.full((3, 3, 4), 0.5), generator=g)
    # natural ordering: observed = a prefix 0..k-1 of every frame
    k = torch.randint(0, 5, (3, 3), generator=g)
    observed = torch.arange(4) < k.unsqueeze(-1)
    observed[:, 0, 0] = True
    batch = Batch(x, torch.tensor([3, 2, 3]), observed)
    result = model.log_prob(batch)
    assert result.kind == "exact"
    assert torch.allclose(result.values, brute_force_observed_log_prob(model, batch), atol=1e-10)


def test_nade_observed_first_is_the_exact_marginal_of_the_reordered_nade():
    torch.manual_seed(0)
    nade = NADE(5, 3, ordering="random", init_scale=1.0)
    x = torch.bernoulli(torch.full((6, 5), 0.5))
    observed = torch.rand(6, 5) > 0.4
    lp = nade.observed_log_prob(x, observed)
    reordered = nade.observed_first(observed)
    for i in range(6):
        holes = (~observed[i]).nonzero().flatten()
        fills = torch.cartesian_prod(*[torch.tensor([0.0, 1.0])] * len(holes)).reshape(-1, len(holes))
        full = x[i].expand(fills.shape[0], 5).clone()
        full[:, holes] = fills
        brute = torch.logsumexp(nade.log_prob(full, ordering=reordered[i]), 0)
        assert torch.allclose(lp[i], brute, atol=1e-10)


def test_nade_conditional_sampler_reports_its_own_probability():
    torch.manual_seed(0)
    nade = NADE(5, 3, ordering="random", init_scale=1.0)
    x = torch.bernoulli(torch.full((8, 5), 0.5))
    observed = torch.rand(8, 5) > 0.5
    filled, log_q = nade.sample_missing(x, observed, generator=torch.Generator().manual_seed(2))
    assert torch.equal(filled[observed], x[observed])
    reordered = nade.observed_first(observed)
    expected = nade.log_prob(filled, ordering=reordered) - nade.observed_log_prob(x, observed)
    assert torch.allclose(log_q, expected.detach(), atol=1e-10)


# ----------------------------------------------------------------------------- estimators
def _unbiasedness(model, batch, *, runs: int, particles: int, estimator: str | None = None):
    """Mean over independent runs of ``p_hat / p`` (should be 1) and its standard error; the runs
    are ``runs`` copies of the batch scored in one call (every copy has its own particles)."""
    truth = brute_force_observed_log_prob(model, batch)
    copies = Batch(batch.values.repeat(runs, 1, 1), batch.lengths.repeat(runs),
                   batch.observed.repeat(runs, 1, 1))
    est = model.log_prob(copies, estimator=estimator, samples=particles,
                         generator=torch.Generator().manual_seed(100))
    ratios = torch.exp(est.values.detach().reshape(runs, -1) - truth)
    return ratios.mean(0), ratios.std(0) / math.sqrt(runs), est


@pytest.mark.parametrize("name,length", [("gru", "halting"), ("gru", "explicit"), ("rnn-nade", "halting")])
def test_particle_filter_is_unbiased_for_the_observed_marginal(name, length):
    # E[p_hat] = p: the mean ratio lies within 4 standard errors of 1 (failure rate < 1e-4 per
    # sequence for an unseeded run, by the CLT); its log is below the truth on average (Jensen).
    # The halting term depends on the filled-in frames (it is in the weights); the explicit P(T)
    # feeds the remaining steps to the network
    model = _model(name, length=length, max_length=5)
    batch = _holey_batch(seed=5)
    mean, se, est = _unbiasedness(model, batch, runs=300, particles=3)
    assert est.kind == "bound" and est.estimator == "smc-3" and est.bias == "lower"
    assert ((mean - 1).abs() < 4 * se + 1e-9).all(), (mean, se)


def test_importance_sampling_for_nade_frames_is_unbiased():
    model = _model("nade", scale=1.0)
    batch = _holey_batch(seed=7)
    mean, se, est = _unbiasedness(model, batch, runs=300, particles=2)
    assert est.kind == "bound" and est.estimator == "is-2"
    assert ((mean - 1).abs() < 4 * se + 1e-9).all(), (mean, se)


def test_many_particles_approach_the_brute_force_marginal():
    for name in ("gru", "rnn-nade", "nade"):
        model = _model(name)
        batch = _holey_batch(seed=2)
        est = model.log_prob(batch, samples=2000, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(est.values, brute_force_observed_log_prob(model, batch), atol=0.03), name


def test_recurrent_models_refuse_an_exact_label_with_missing_inputs():
    with pytest.raises(UserError, match="smc"):
        _model("gru").log_prob(_holey_batch(), estimator="exact")


def test_padding_never_changes_the_observed_marginal():
    model = _model("gru")
    batch = _holey_batch()
    values = batch.values.clone()
    values[1, 2] = 1.0          # sequence 1 has length 2: frame 3 is padding
    observed = batch.observed.clone()
    observed[1, 2] = False
    garbage = Batch(values, batch.lengths, observed)
    a = model.log_prob(batch, samples=8, generator=torch.Generator().manual_seed(0))
    b = model.log_prob(garbage, samples=8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(a.values, b.values)


# ----------------------------------------------------------------------------- completions
def test_completions_follow_the_exact_conditional_given_past_and_future():
    # a GRU over T = 2 frames of 2 units, frame 1 wholly missing and frame 2 observed: the drawn
    # completions of frame 1 must follow p(x_1 | x_2), which needs the future (a forward sampler
    # would draw from p(x_1)); total-variation distance below 0.05 with 2000 particles and 2000
    # draws (its sampling error is about 0.02)
    model = _model("gru", spec=DataSpec("binary", 2), scale=3.0, length="none")
    values = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    observed = torch.tensor([[[False, False], [True, True]]])
    batch = Batch(values, torch.tensor([2]), observed)
    full, probs = brute_force_conditional(model, batch)
    result = particle_filter(model, batch, particles=2000, draws=2000, generator=torch.Generator().manual_seed(0))
    drawn = result.completions[0]
    assert torch.equal(drawn[:, 1], values[0, 1].expand(2000, 2))
    codes = (drawn[:, 0] * torch.tensor([2.0, 1.0])).sum(-1).long()
    freq = torch.bincount(codes, minlength=4).double() / 2000
    exact = torch.zeros(4)
    for f, p in zip(full, probs):
        exact[int(f[0, 0] * 2 + f[0, 1])] += p
    p1 = torch.sigmoid(model.frame_params_of(model.initial_state(1)))[0].detach()
    prior = torch.stack([(1 - p1[0]) * (1 - p1[1]), (1 - p1[0]) * p1[1], p1[0] * (1 - p1[1]), p1[0] * p1[1]])
    assert 0.5 * (prior - exact).abs().sum() > 0.25          # the future matters here
    assert 0.5 * (freq - exact).abs().sum() < 0.05, (freq, exact, prior)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", ["independent", "nade", "gru", "rnn-nade"])
def test_training_loss_on_holes_is_finite_and_differentiable(name):
    model = _model(name).train()
    batch = _holey_batch()
    loss = model.loss(batch, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_factorial_training_loss_drops_exactly_the_missing_terms():
    model = _model("independent").train()
    batch = _holey_batch()
    loss = model.loss(batch)
    assert torch.allclose(loss, -brute_force_observed_log_prob(model, batch).sum() / batch.n_frames)


def _rotating_dataset_with_holes(p_missing: float = 0.2, seed: int = 0):
    """A rotating one-hot piano-roll (frame t has key t mod 4) with NaN holes in every split."""
    from probseq.data.registry import Dataset

    g = torch.Generator().manual_seed(seed)

    def seqs(n):
        out = []
        for _ in range(n):
            t = int(torch.randint(4, 9, (1,), generator=g))
            x = torch.zeros(t, 4, dtype=torch.float32)
            x[torch.arange(t), torch.arange(t) % 4] = 1.0
            holes = torch.rand(t, 4, generator=g) < p_missing
            holes[0] = False
            out.append(torch.where(holes, torch.tensor(NAN, dtype=torch.float32), x))
        return out

    return Dataset("toy-holes", DataSpec("binary", 4), {"train": seqs(40), "valid": seqs(8), "test": seqs(8)})


@pytest.mark.parametrize("name", ["gru", "nade", "independent"])
def test_fit_trains_on_data_with_holes(tmp_path, name):
    from probseq.train.fit import fit

    torch.set_default_dtype(torch.float32)
    dataset = _rotating_dataset_with_holes()
    torch.manual_seed(0)
    hyper = {"gru": {"hidden": 8}, "nade": {"nade_hidden": 4}, "independent": {}}[name]
    model = build_model(name, DataSpec("binary", 4), hyper)
    for split, examples in dataset.splits.items():
        model.validate_examples(examples, split)
    with torch.no_grad():
        before = float(model.log_prob(model.collate(dataset.split("test")), samples=8,
                                      generator=torch.Generator().manual_seed(0)).values.sum())
    summary = fit(model, dataset, tmp_path, steps=60, options={"lr": 0.03, "eval_every": 30},
                  progress=False)
    assert math.isfinite(summary.best_valid if summary.best_valid is not None else 0.0)
    model.eval()
    after = model.log_prob(model.collate(dataset.split("test")), samples=8,
                           generator=torch.Generator().manual_seed(0))
    assert float(after.values.detach().sum()) > before
    if name == "gru":   # the rotation is learnable: the observed part is far likelier than at the start
        assert after.kind == "bound" and after.estimator == "smc-8"


def test_the_particle_posterior_mean_matches_the_exact_conditional_mean():
    # E[x_1 | x_2] for the GRU of the completion test, from 2000 particles: within 0.03 of the
    # brute-force conditional mean (sampling error about 0.01)
    model = _model("gru", spec=DataSpec("binary", 2), scale=3.0, length="none")
    values = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])
    observed = torch.tensor([[[False, False], [True, True]]])
    batch = Batch(values, torch.tensor([2]), observed)
    full, probs = brute_force_conditional(model, batch)
    exact = (probs.reshape(-1, 1, 1) * full).sum(0)
    prior = torch.sigmoid(model.frame_params_of(model.initial_state(1)))[0].detach()
    assert (prior - exact[0]).abs().max() > 0.25             # the future matters here
    result = particle_filter(model, batch, particles=2000, posterior_mean=True,
                             generator=torch.Generator().manual_seed(0))
    assert torch.allclose(result.posterior_mean[0], exact, atol=0.03)
    assert torch.allclose(result.posterior_mean[0, 1], values[0, 1])


def test_independent_frames_give_the_exact_posterior_mean():
    from probseq.missing.infill import infill

    model = _model("independent")
    batch = _holey_batch()
    result = infill(model, batch, draws=2)
    probs = torch.sigmoid(model.frame_params.detach())
    expected = torch.where(batch.observed, batch.values, probs.expand_as(batch.values))
    expected = torch.where(batch.mask.unsqueeze(-1), expected, torch.zeros(()))
    assert result.exact and torch.allclose(result.posterior_mean, expected)


def _code_frequencies(frames: Tensor, n_units: int) -> Tensor:
    weights = 2.0 ** torch.arange(n_units - 1, -1, -1, dtype=frames.dtype)
    codes = (frames * weights).sum(-1).long()
    return torch.bincount(codes, minlength=2 ** n_units).double() / codes.numel()


def _exact_frequencies(model, batch: Batch, n_units: int) -> Tensor:
    full, probs = brute_force_conditional(model, batch)
    out = torch.zeros(2 ** n_units, dtype=torch.float64)
    weights = 2.0 ** torch.arange(n_units - 1, -1, -1, dtype=full.dtype)
    for f, p in zip(full, probs):
        out[int((f[0] * weights).sum())] += p
    return out


def test_nade_infilling_by_sir_follows_the_exact_conditional():
    # one frame of a NADE (natural order) with units 0 and 2 missing (not a prefix): 1000 draws
    # (one per loop step, so the cost is in their number), each the resampled one of 400 proposals;
    # total variation below 0.06 (its sampling error is about 0.015, 0.002-0.013 for seeds 0-2;
    # SIR's bias at 400 proposals is far smaller)
    from probseq.missing.infill import infill

    model = _model("nade", spec=DataSpec("binary", 3), scale=1.5, length="none")
    batch = Batch(torch.tensor([[[0.0, 1.0, 0.0]]]), torch.tensor([1]), torch.tensor([[[False, True, False]]]))
    result = infill(model, batch, draws=1000, particles=400, generator=torch.Generator().manual_seed(0))
    assert not result.exact
    freq = _code_frequencies(result.completions[0, :, 0], 3)
    assert 0.5 * (freq - _exact_frequencies(model, batch, 3)).abs().sum() < 0.06


def test_rnn_rbm_gibbs_infilling_of_one_frame_follows_the_exact_conditional():
    # with nothing after the gap, clamped Gibbs targets the exact conditional of the frame's RBM:
    # 3000 chains of 30 rounds, total variation below 0.06 (sampling error about 0.02)
    from probseq.missing.infill import infill

    torch.manual_seed(0)
    model = build_model("rnn-rbm", DataSpec("binary", 3), {"hidden": 3, "rbm_hidden": 2, "sample_steps": 30})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.eval()
    batch = Batch(torch.tensor([[[0.0, 1.0, 0.0]]]), torch.tensor([1]), torch.tensor([[[False, True, False]]]))
    result = infill(model, batch, draws=3000, generator=torch.Generator().manual_seed(0))
    assert not result.exact and "Gibbs" in result.method
    freq = _code_frequencies(result.completions[0, :, 0], 3)
    assert 0.5 * (freq - _exact_frequencies(model, batch, 3)).abs().sum() < 0.06


@pytest.mark.parametrize("name", ["trbm", "rtrbm"])
def test_trbm_family_gibbs_infilling_of_the_first_frame_follows_its_rbm(name):
    # the first frame's RBM (biases from the initial state): clamped Gibbs draws follow its exact
    # conditional, computed from free energies of every completion; TV below 0.06 (3000 chains)
    from probseq.missing.infill import infill

    torch.manual_seed(0)
    model = build_model(name, DataSpec("binary", 3), {"hidden": 2, "sample_steps": 30})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.eval()
    batch = Batch(torch.tensor([[[0.0, 1.0, 0.0]]]), torch.tensor([1]), torch.tensor([[[False, True, False]]]))
    result = infill(model, batch, draws=3000, generator=torch.Generator().manual_seed(0))
    assert not result.exact and "Gibbs" in result.method
    rbm, vb, hb = model.next_frame_rbm(model.initial_state(1))
    full = torch.tensor([[a, 1.0, c] for a in (0.0, 1.0) for c in (0.0, 1.0)])
    with torch.no_grad():
        probs = torch.softmax(-rbm.free_energy(full, vb[0], hb[0]), 0)
    exact = torch.zeros(8, dtype=torch.float64)
    for f, p in zip(full, probs):
        exact[int(f[0] * 4 + f[1] * 2 + f[2])] += p
    freq = _code_frequencies(result.completions[0, :, 0], 3)
    assert 0.5 * (freq - exact).abs().sum() < 0.06


def test_fixed_lag_smoother_reaches_the_exact_mean_when_the_lag_covers_the_future():
    # T = 3, frame 1 missing: lag 2 (or the whole sequence) sees every observation after it and
    # matches the brute-force E[x_1 | x_2, x_3] within 0.03; lag 0 is the filter, which does not
    model = _model("gru", spec=DataSpec("binary", 2), scale=3.0, length="none")
    values = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    observed = torch.tensor([[[False, False], [True, True], [True, True]]])
    batch = Batch(values, torch.tensor([3]), observed)
    full, probs = brute_force_conditional(model, batch)
    exact = (probs.reshape(-1, 1, 1) * full).sum(0)[0]
    means = {lag: particle_filter(model, batch, particles=3000, posterior_mean=True, smoothing_lag=lag,
                                  generator=torch.Generator().manual_seed(0)).posterior_mean[0, 0]
             for lag in (None, 2, 0)}
    assert torch.allclose(means[None], exact, atol=0.03) and torch.allclose(means[2], exact, atol=0.03)
    prior = torch.sigmoid(model.frame_params_of(model.initial_state(1)))[0].detach()
    assert torch.allclose(means[0], prior, atol=0.03) and (prior - exact).abs().max() > 0.1
