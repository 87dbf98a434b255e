"""VRNN: the estimators against an exact likelihood by quadrature, the sampler by chi-square, the pieces.

Oracle: with one latent unit and two frames, ``p(x_{1:2}, T) = \\iint p(x, T, z_1, z_2) dz`` is a 2-D
integral; a 201 x 201 grid on [-10, 10]^2 (the integrand is a smooth Gaussian-like bump) gives it to
about 1e-6 nats (checked against 401 points while writing this test). The joint density at each grid
point comes from the *Pyro program* conditioned on ``z`` (``poutine.condition``), independent of the
fast path whose estimators are tested.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from pyro import poutine
from scipy.stats import chi2
from torch.distributions import Normal, kl_divergence

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.estimators import latent
from probseq.frames.factorial import BernoulliFrame, GaussianFrame
from probseq.frames.mixture import MixtureFrame
from probseq.models.gaussian import gaussian_kl
from probseq.models.objectives.kl_annealing import KLAnnealing, free_bits_kl
from probseq.models.vrnn import VRNN
from probseq.models.vrnn_parts import gru_update

F64 = torch.float64


def _tiny(dim=3, seed=0, **hyper):
    torch.manual_seed(seed)
    hyper = {"hidden": 4, "latent": 1, "features": 4, **hyper}
    return VRNN(DataSpec("binary", dim), **hyper).double()


def _quadrature_log_prob(model, x: torch.Tensor, points: int = 201, half_width: float = 10.0) -> float:
    """``log p(x_{1:T}, T)`` for one ``(T, D)`` sequence of a 1-latent-unit model, by a grid over z."""
    steps = x.shape[0]
    grid = torch.linspace(-half_width, half_width, points, dtype=F64)
    mesh = torch.cartesian_prod(*([grid] * steps)).reshape(-1, steps)
    n = mesh.shape[0]
    batch = Batch(x.unsqueeze(0).expand(n, *x.shape).contiguous(), torch.full((n,), steps))
    data = {f"z_{t + 1}": mesh[:, t:t + 1] for t in range(steps)}
    with torch.no_grad():
        trace = poutine.trace(poutine.condition(model.pyro_model, data=data)).get_trace(batch)
        trace.compute_log_prob()
    joint = sum(s["log_prob"] for s in trace.nodes.values()
                if s["type"] == "sample" and s["log_prob"].dim() == 1)
    return float(torch.logsumexp(joint, 0)) + steps * math.log(float(grid[1] - grid[0]))


# ---------------------------------------------------------------------------- exact oracles
def test_probabilities_of_all_sequences_sum_to_one():
    """Length given (``length=none``): sum over all 16 binary sequences of 2 frames of 2 bits = 1."""
    model = _tiny(dim=2)
    total = sum(math.exp(_quadrature_log_prob(model, torch.tensor(bits, dtype=F64).reshape(2, 2)))
                for bits in itertools.product([0.0, 1.0], repeat=4))
    assert abs(total - 1.0) < 1e-6


def test_estimators_against_the_exact_likelihood():
    """ELBO < IWAE-k (rising with k) <= exact; IS estimate within its error of exact.

    8000 draws (seeded). Failure rates of the statistical checks, measured over generator seeds
    0..99 while writing this test: 0/100 for each (ELBO 4 sigma below exact; each IWAE-k within
    3 sigma above; IWAE-1000 gap < 1/4 of the ELBO's; IS within 4 sigma). A stricter 1/10 for the
    gap failed 20/100 (IWAE-1000 from 8 groups is too noisy for it), so it is not used.
    """
    model = _tiny(length="halting")
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]], dtype=F64)
    exact = _quadrature_log_prob(model, x)
    batch = Batch(x.unsqueeze(0), torch.tensor([2]))
    with torch.no_grad():
        log_w, elbo_terms = model.log_weights(batch, 8000, generator=torch.Generator().manual_seed(0))
    elbo = latent.elbo(elbo_terms)
    assert float(elbo.values) + 4 * float(elbo.stderr) < exact          # a strict bound, here by ~0.25
    bounds = [latent.iwae(log_w, k) for k in (1, 10, 100, 1000)]
    for lo, hi in zip(bounds, bounds[1:]):
        assert float(lo.values) <= float(hi.values) + 1e-12
    for b in bounds:
        assert float(b.values) <= exact + 3 * float(b.stderr)
    assert exact - float(bounds[-1].values) < 0.25 * (exact - float(bounds[0].values))
    is_est = latent.importance_sampled(log_w)
    assert abs(float(is_est.values) - exact) < 4 * float(is_est.stderr)
    # the model's own entry point labels the numbers
    lp = model.log_prob(batch, estimator="is", samples=50, generator=torch.Generator().manual_seed(1))
    assert lp.kind == "bound" and lp.estimator == "is-50" and lp.stderr is not None
    lp = model.log_prob(batch, estimator="iwae", samples=50, generator=torch.Generator().manual_seed(1))
    assert lp.kind == "bound" and lp.estimator == "iwae-50"


def test_sampler_matches_the_exact_joint_of_two_frames():
    """20000 sequences of 2 frames of 2 bits through the shared sampling loop vs quadrature.

    Chi-square over the 16 outcomes at alpha = 1e-3: failure rate 0.1% if the sampler is right. The
    second frame depends on the *drawn* z_1 (stashed by draw_frame, consumed by advance), so a
    sampler that re-inferred z_1 would change the joint.
    """
    model = _tiny(dim=2, seed=3)
    outcomes = list(itertools.product([0.0, 1.0], repeat=4))
    probs = torch.tensor([math.exp(_quadrature_log_prob(model, torch.tensor(o, dtype=F64).reshape(2, 2)))
                          for o in outcomes], dtype=F64)
    n = 20000
    samples = model.sample(n, length=2, generator=torch.Generator().manual_seed(11))
    codes = (samples.values.reshape(n, 4) * torch.tensor([8.0, 4.0, 2.0, 1.0], dtype=F64)).sum(1).long()
    counts = torch.bincount(codes, minlength=16).to(F64)
    expected = n * probs
    stat = float(((counts - expected) ** 2 / expected).sum())
    assert stat < chi2.ppf(1 - 1e-3, df=15), stat


# ---------------------------------------------------------------------------- the pieces
def test_gru_step_matches_torch_gru_cell():
    model = VRNN(DataSpec("real", 3), hidden=5, latent=2, features=4, length="explicit", max_length=9)
    rnn = model.transition.rnn
    inputs, h = torch.randn(6, rnn.input_size), torch.randn(6, 5)
    gates_x = F.linear(inputs, rnn.weight_ih, rnn.bias_ih)
    gates_h = F.linear(h, rnn.weight_hh, rnn.bias_hh)
    torch.testing.assert_close(gru_update(gates_x, gates_h, h), rnn(inputs, h))
    # the transition from its split inputs (phi_x + length features | phi_z) is the same GRU step
    phi_x, phi_z, extra = inputs[:, :4], inputs[:, 4:8], inputs[:, 8:]
    torch.testing.assert_close(model.transition(model.transition.frame_inputs(phi_x, extra), phi_z, h),
                               rnn(inputs, h))


def test_old_state_dict_names_still_load():
    """A checkpoint written before the VRNN was built from public pieces loads into the new layout."""
    model = VRNN(DataSpec("binary", 3), hidden=5, latent=2, features=4, length="halting")
    renames = {"prior.net.": "prior_net.", "posterior.frame_layer.": "encoder_x.",
               "posterior.hidden_weight": "encoder_h", "posterior.out.": "encoder_out.",
               "emitter.net.": "decoder.", "transition.rnn.": "rnn."}
    old = {}
    for key, value in model.state_dict().items():
        for new, before in renames.items():
            if key.startswith(new):
                key = before + key[len(new):]
                break
        old[key] = value.clone() + 1.0
    assert "rnn.weight_ih" in old and "decoder.4.bias" in old and "encoder_h" in old
    fresh = VRNN(DataSpec("binary", 3), hidden=5, latent=2, features=4, length="halting")
    fresh.load_state_dict(old)                                   # strict: every key found
    torch.testing.assert_close(fresh.transition.rnn.weight_ih, model.transition.rnn.weight_ih + 1.0)
    torch.testing.assert_close(fresh.posterior.hidden_weight, model.posterior.hidden_weight + 1.0)


def test_gaussian_kl_matches_torch():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(4, 3, generator=g, dtype=F64), torch.randn(4, 3, generator=g, dtype=F64)
    sa, sb = torch.rand(4, 3, generator=g, dtype=F64) + 0.1, torch.rand(4, 3, generator=g, dtype=F64) + 0.1
    torch.testing.assert_close(gaussian_kl(a, sa, b, sb), kl_divergence(Normal(a, sa), Normal(b, sb)))


def test_bernoulli_mixture_sums_to_one_and_samples_correctly():
    """Enumerate all 2^3 frames; chi-square of 20000 draws at alpha = 1e-3 (failure rate 0.1%)."""
    frame = MixtureFrame(BernoulliFrame(3), 4)
    params = torch.randn(frame.param_dim, generator=torch.Generator().manual_seed(2), dtype=F64)
    xs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=F64)
    probs = frame.log_prob(params.expand(8, -1), xs).exp()
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0, dtype=F64))
    torch.testing.assert_close(frame.mean(params), (probs.unsqueeze(1) * xs).sum(0))
    draws = frame.sample(params.expand(20000, -1), generator=torch.Generator().manual_seed(4))
    counts = torch.bincount((draws * torch.tensor([4.0, 2.0, 1.0], dtype=F64)).sum(1).long(), minlength=8)
    stat = float(((counts - 20000 * probs) ** 2 / (20000 * probs)).sum())
    assert stat < chi2.ppf(1 - 1e-3, df=7)


def test_gaussian_mixture_log_prob_is_the_weighted_sum():
    frame = MixtureFrame(GaussianFrame(2), 3)
    g = torch.Generator().manual_seed(1)
    params, x = torch.randn(5, frame.param_dim, generator=g, dtype=F64), torch.randn(5, 2, generator=g, dtype=F64)
    logits, comp = frame.split(params)
    dens = sum(torch.softmax(logits, -1)[:, c] * GaussianFrame(2).log_prob(comp[:, c], x).exp() for c in range(3))
    torch.testing.assert_close(frame.log_prob(params, x), dens.log())


def test_loss_is_negative_elbo_per_frame_without_annealing():
    model = _tiny(latent=2, length="halting")
    batch = Batch(torch.bernoulli(torch.full((3, 6, 3), 0.5, dtype=F64)), torch.tensor([6, 2, 4]))
    terms = model.elbo_terms(batch, generator=torch.Generator().manual_seed(0))
    loss = model.loss(batch, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss, -terms.elbo.sum() / batch.n_frames)
    model.kl_weight = 0.0                            # beta = 0: reconstruction and length only
    loss0 = model.loss(batch, generator=torch.Generator().manual_seed(0))
    kl = torch.where(terms.mask.unsqueeze(-1), terms.kl, torch.zeros_like(terms.kl)).sum()
    torch.testing.assert_close(loss0, loss - kl / batch.n_frames)


def test_iwae_is_at_least_as_tight_as_the_elbo():
    """Seeded: IWAE-64 exceeds the 64-draw ELBO by far more than the ELBO's standard error.

    Over seeds 0..99 the smallest margin was 196 standard errors (0/100 failures)."""
    model = _tiny(latent=2, length="halting")
    batch = Batch(torch.bernoulli(torch.full((4, 5, 3), 0.5, dtype=F64)), torch.tensor([5, 1, 3, 4]))
    with torch.no_grad():
        elbo = model.log_prob(batch, estimator="elbo", samples=64, generator=torch.Generator().manual_seed(1))
        iwae = model.log_prob(batch, estimator="iwae", samples=64, generator=torch.Generator().manual_seed(2))
    assert bool((iwae.values > elbo.values + 4 * elbo.stderr).all())


def test_kl_annealing_schedules():
    lin = KLAnnealing("linear", warmup=0.2)
    assert lin(0, 1000) == 0.0 and lin(50, 1000) == 0.25 and lin(200, 1000) == 1.0 and lin(999, 1000) == 1.0
    assert KLAnnealing("linear", warmup=0.5, start=0.2)(250, 1000) == pytest.approx(0.6)
    sig = [KLAnnealing("sigmoid", warmup=0.5)(s, 100) for s in range(0, 60)]
    assert all(a <= b for a, b in zip(sig, sig[1:])) and sig[0] < 0.01 and sig[25] == pytest.approx(0.5)
    cyc = KLAnnealing("cyclic", warmup=0.8, cycles=4)
    # 4 cycles of 20 steps: rising over steps 0..10, flat at 1 over 10..20
    assert cyc(0, 100) == 0.0 and cyc(5, 100) == 0.5 and cyc(10, 100) == 1.0 and cyc(15, 100) == 1.0
    assert cyc(20, 100) == 0.0 and cyc(25, 100) == 0.5
    assert cyc(85, 100) == 1.0
    assert KLAnnealing("constant")(0, 10) == 1.0 and KLAnnealing("linear", warmup=0.0)(0, 10) == 1.0
    with pytest.raises(UserError, match="schedule"):
        KLAnnealing("exponential")
    model = _tiny(kl_warmup=0.5)
    model.on_train_step(25, 100)
    assert model.kl_weight == 0.5


def test_free_bits_floor_and_gradient():
    kl = torch.tensor([[[0.5, 0.01], [0.7, 0.03]], [[0.3, 0.02], [9.0, 9.0]]], requires_grad=True)
    mask = torch.tensor([[True, True], [True, False]])
    # per-unit means over 3 real frames: (1.5/3, 0.06/3) = (0.5, 0.02)
    torch.testing.assert_close(free_bits_kl(kl, mask, 3, 0.0), torch.tensor(0.52))
    value = free_bits_kl(kl, mask, 3, 0.1)
    torch.testing.assert_close(value, torch.tensor(0.6))
    value.backward()
    expected = torch.zeros(2, 2, 2)
    expected[..., 0] = 1 / 3
    expected[1, 1] = 0.0
    torch.testing.assert_close(kl.grad, expected)       # the floored unit gets no gradient


def test_diagnostics_count_active_units():
    model = _tiny(latent=3, features=6)
    batch = Batch(torch.bernoulli(torch.full((8, 6, 3), 0.5, dtype=F64),
                                  generator=torch.Generator().manual_seed(0)), torch.full((8,), 6))
    with torch.no_grad():
        model.posterior.frame_layer.weight.zero_()   # q ignores x and h: posterior means constant
        model.posterior.hidden_weight.zero_()
        diag = model.diagnostics(batch)
        assert diag["active_units"] == 0
        assert set(diag) >= {"kl_per_frame", "active_units", "kl_per_unit", "kl_weight", "elbo_nll_per_frame"}
        model.posterior.frame_layer.weight.normal_(0, 3.0)   # now the means move with x
        model.posterior.out.weight.normal_(0, 3.0)
        assert model.diagnostics(batch)["active_units"] > 0
    assert math.isclose(diag["kl_per_frame"], sum(diag["kl_per_unit"]), rel_tol=1e-3, abs_tol=1e-4)


def test_predict_next_is_decoder_mean_at_prior_mean():
    model = _tiny(latent=2)
    batch = Batch(torch.bernoulli(torch.full((2, 4, 3), 0.5, dtype=F64)), torch.tensor([4, 3]))
    pred = model.predict_next(batch)
    assert pred.shape == batch.values.shape and bool(((pred > 0) & (pred < 1)).all())
    with torch.no_grad():                              # first frame: from h_0 alone
        h0 = model.initial_hidden.expand(2, -1)
        loc, _ = model.prior(h0)
        first = torch.sigmoid(model.emitter(model.phi_z(loc), h0))
    torch.testing.assert_close(pred[:, 0], first)


def test_draw_frame_stashes_the_latent_and_advance_consumes_it():
    model = _tiny(latent=2, length="halting")
    state = model.initial_state(3)
    with torch.no_grad():
        x, drawn = model.draw_frame(state, generator=torch.Generator().manual_seed(0))
        assert drawn.z_features is not None and state.z_features is None
        after = model.advance(drawn, x)
        prefix = model.advance(state, x)          # no stash: posterior mean
    assert after.z_features is None and after.steps == 1
    assert not torch.allclose(after.hidden, prefix.hidden)
    assert model.stop_logit(after).shape == (3,)


def test_explicit_length_and_prefix_sampling():
    model = VRNN(DataSpec("real", 2), hidden=5, latent=2, features=4, length="explicit", max_length=6)
    out = model.sample(5, prefix=torch.zeros(1, 2, 2), generator=torch.Generator().manual_seed(0))
    assert bool((out.lengths >= 3).all()) and bool((out.lengths <= 6).all())
    assert torch.equal(out.values[:, :2], torch.zeros(5, 2, 2))


def test_clear_errors():
    with pytest.raises(UserError, match="end-symbol"):
        VRNN(DataSpec("categorical", 4), length="end-symbol")
    with pytest.raises(UserError, match="output=categorical"):
        VRNN(DataSpec("categorical", 4), output="mixture")
    with pytest.raises(UserError, match="does not fit binary"):
        VRNN(DataSpec("binary", 4), output="gaussian")
    model = _tiny()
    batch = Batch(torch.bernoulli(torch.full((2, 3, 3), 0.5, dtype=F64)), torch.tensor([3, 2]))
    with pytest.raises(UserError, match="samples must be positive"):
        model.log_prob(batch, estimator="iwae", samples=0)
    with pytest.raises(UserError, match="estimator"):
        model.log_prob(batch, estimator="ais")
    with pytest.raises(UserError, match="binary frames"):
        model.log_prob(Batch(torch.full((1, 2, 3), 1.5, dtype=F64), torch.tensor([2])))


def test_nan_log_weights_are_reported_not_dropped():
    model = _tiny()
    with torch.no_grad():
        model.emitter.output_layer.bias.fill_(float("nan"))
    batch = Batch(torch.ones(1, 2, 3, dtype=F64), torch.tensor([2]))
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        model.log_prob(batch, estimator="is", samples=4)


def test_speed_benchmark_runs_with_tiny_arguments(capsys):
    """``benchmarks/vrnn_speed.py`` stays runnable (tiny sizes; the numbers are meaningless here)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vrnn_speed.py"
    spec = importlib.util.spec_from_file_location("vrnn_speed", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        result = bench.main(bench.parse_args(["--batch", "2", "--steps", "4", "--hidden", "8", "--latent", "2",
                                              "--rounds", "1", "--steps-per-round", "1", "--warmup", "1"]))
    finally:
        torch.set_num_threads(threads)
    assert set(result) >= {"probseq_s_per_step", "pyro_s_per_step", "speedup_vs_pyro"}
    assert capsys.readouterr().out.count("\n") == 1
