"""Motion pieces of the RBM sequence models: autoregressive taps, their least-squares start,
noise-free sampling, and the linear-extrapolation baseline of ``--metric mse``."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.evaluate.prediction import linear_extrapolation, next_frame_errors
from probseq.frames.rbm import RBM
from probseq.models._autoregressive import RIDGES, delay_taps, fit_autoregression
from probseq.models.registry import build_model


# ---------------------------------------------------------------------------- baselines
def test_linear_extrapolation_by_hand():
    x = torch.tensor([[[1.0], [3.0], [4.0], [10.0]]])
    assert linear_extrapolation(x)[0, 1:, 0].tolist() == [1.0, 5.0, 5.0]


class _Oracle:
    """A stand-in model whose next-frame prediction is the true frame plus a fixed offset."""

    spec = DataSpec("real", 2)

    def eval(self):
        return self

    def collate(self, examples):
        return Batch.from_sequences(examples)

    def predict_next(self, batch):
        return batch.padded_with_zeros() + 0.5


def test_next_frame_errors_reports_both_baselines_on_the_same_frames():
    seqs = [torch.randn(5, 2, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    seqs.append(torch.randn(2, 2))
    out = next_frame_errors(_Oracle(), seqs, batch_size=2)
    copy = sum(((s[1:] - s[:-1]) ** 2).sum() for s in seqs)
    lin = 0.0
    for s in seqs:
        for t in range(1, len(s)):
            guess = s[t - 1] if t == 1 else 2 * s[t - 1] - s[t - 2]
            lin += float(((s[t] - guess) ** 2).sum())
    n = sum(len(s) - 1 for s in seqs)
    assert out["n_predicted_frames"] == n
    assert out["next_frame_mse_per_dim"] == pytest.approx(0.25)
    assert out["baseline_copy_last_mse_per_dim"] == pytest.approx(float(copy) / (2 * n), rel=1e-5)
    assert out["baseline_linear_mse_per_dim"] == pytest.approx(lin / (2 * n), rel=1e-5)
    assert out["baseline_linear_se_per_frame"] == pytest.approx(lin / n, rel=1e-5)


# ---------------------------------------------------------------------------- the least-squares start
def test_delay_taps_by_hand():
    seq = torch.arange(1.0, 5.0).reshape(1, 4, 1)          # 1, 2, 3, 4
    taps = delay_taps(seq, torch.tensor([[0.0], [-1.0]]), 2)  # s_0 = 0, s_{-1} = -1
    assert taps[0].tolist() == [[0.0, -1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 2.0]]


def _ar_sequences(n, length, seed, noise=0.01):
    """Sequences of a known stable 2-dimensional AR(2) with small noise."""
    g = torch.Generator().manual_seed(seed)
    a1 = torch.tensor([[1.6, 0.1], [0.0, 1.5]], dtype=torch.float64)
    a2 = torch.tensor([[-0.7, 0.0], [0.05, -0.6]], dtype=torch.float64)
    b = torch.tensor([0.1, -0.2], dtype=torch.float64)
    out = []
    for _ in range(n):
        xs = [torch.randn(2, generator=g, dtype=torch.float64), torch.randn(2, generator=g, dtype=torch.float64)]
        for _ in range(length - 2):
            xs.append(b + a1 @ xs[-1] + a2 @ xs[-2] + noise * torch.randn(2, generator=g, dtype=torch.float64))
        out.append(torch.stack(xs))
    return out, torch.cat([a1, a2], 1), b


def test_autoregression_recovers_a_known_process_and_picks_the_ridge_on_validation():
    train, weight, bias = _ar_sequences(20, 60, 0)
    valid, _, _ = _ar_sequences(5, 60, 1)
    fit = fit_autoregression(train, valid, 2)
    assert fit.structure == "full" and fit.ridge <= 1e-2   # the truth couples the dimensions
    assert torch.allclose(fit.weight, weight, atol=0.05)
    assert torch.allclose(fit.bias, bias, atol=0.05)
    assert torch.allclose(fit.residual_std, torch.full((2,), 0.01, dtype=torch.float64), rtol=0.2)
    best = min(fit.valid_errors, key=fit.valid_errors.get)
    assert best == (fit.structure, fit.anchor, fit.ridge) and len(fit.valid_errors) == 4 * len(RIDGES)


def test_autoregression_solves_the_ridge_problem_exactly():
    """Brute force: the normal equations of the penalised residual regression, by lstsq on an
    augmented system ``[Z_c; sqrt(lambda N) I] B = [Y_c; 0]``."""
    train, _, _ = _ar_sequences(3, 20, 2, noise=0.3)
    from probseq.models._autoregressive import _pairs, _solve

    x, z = _pairs(train, 2)
    n = x.shape[0]
    eye, zero = torch.eye(2, dtype=z.dtype), torch.zeros(2, 2, dtype=z.dtype)
    anchors = {"last": torch.cat([eye, zero], 1), "linear": torch.cat([2 * eye, -eye], 1)}
    for (anchor, p), ridge in itertools.product(anchors.items(), (1e-2, 10.0)):
        weight, bias = _solve(x, z, "full", anchor, ridge)
        y = x - z @ p.t()
        zc, yc = z - z.mean(0), y - y.mean(0)
        aug_z = torch.cat([zc, math.sqrt(ridge * n) * torch.eye(4, dtype=z.dtype)])
        aug_y = torch.cat([yc, torch.zeros(4, 2, dtype=z.dtype)])
        coef = torch.linalg.lstsq(aug_z, aug_y).solution
        assert torch.allclose(weight, coef.t() + p, atol=1e-9)
        pred = z @ weight.t() + bias
        assert torch.allclose(pred.mean(0), x.mean(0), atol=1e-9)   # the intercept is not penalised
    # an infinite ridge is "the anchor plus the mean residual"; diagonal couples nothing
    for anchor, p in anchors.items():
        weight, bias = _solve(x, z, "diagonal", anchor, 1e12)
        assert torch.allclose(weight, p, atol=1e-6)
        assert torch.allclose(bias, (x - z @ p.t()).mean(0), atol=1e-6)
    weight, _ = _solve(x, z, "diagonal", "last", 1e-3)
    assert weight[0, 1] == 0 and weight[1, 2] == 0 and weight[0, 0] != 0


def _random_walks(n, length, seed, dim=3, step=0.1):
    """Sequences whose true dynamics is the identity plus noise: ``x_t = x_{t-1} + step * noise``."""
    g = torch.Generator().manual_seed(seed)
    return [torch.cumsum(step * torch.randn(length, dim, generator=g, dtype=torch.float64), 0)
            + torch.randn(1, dim, generator=g, dtype=torch.float64) for _ in range(n)]


def test_a_strong_ridge_start_is_copy_last_on_identity_dynamics():
    """On a random walk (identity dynamics plus noise) the ridge start shrinks towards the last frame:
    with a strong ridge its taps are ``[I, 0, 0]`` and its predictions copy the last frame up to the
    mean increment, whatever structure validation picks; chosen on validation among every ridge, it
    predicts held-out walks about as well as copy-last (it cannot learn more, the truth is copy-last)."""
    train, valid, test = _random_walks(2, 30, 0), _random_walks(2, 30, 1), _random_walks(3, 200, 2)
    eye = torch.eye(3, dtype=torch.float64)
    for ridge in (1e6, 1e9):
        fit = fit_autoregression(train, valid, 3, ridges=(ridge,))
        assert fit.anchor == "last"                     # validation prefers it to linear extrapolation
        assert torch.allclose(fit.weight[:, :3], eye, atol=10 / ridge ** 0.5)
        assert torch.allclose(fit.weight[:, 3:], torch.zeros(3, 6, dtype=torch.float64), atol=10 / ridge ** 0.5)
        increments = torch.cat([s[3:] - s[2:-1] for s in train])
        assert torch.allclose(fit.bias, increments.mean(0), atol=1e-3)
    fit = fit_autoregression(train, valid, 3)
    seq = torch.stack(test)
    taps = delay_taps(seq, seq[:, :3].flip(1)[0], 3)[:, 3:]
    start_error = float(((taps @ fit.weight.t() + fit.bias - seq[:, 3:]) ** 2).mean())
    copy_error = float(((seq[:, 2:-1] - seq[:, 3:]) ** 2).mean())
    assert start_error < 1.1 * copy_error


def test_the_tap_prior_makes_the_ridge_start_the_fixed_point_of_training():
    """``ar_train=prior``: the Gaussian negative log-likelihood per frame of the linear part (what CD
    estimates with the hidden units off) plus the prior's penalty has zero gradient at the ridge
    start, for any sigma; without the penalty it does not."""
    from probseq.models._autoregressive import AutoregressivePrior, _pairs

    train, _, _ = _ar_sequences(3, 25, 4, noise=0.3)
    valid, _, _ = _ar_sequences(2, 25, 5, noise=0.3)
    fit = fit_autoregression(train, valid, 2, ridges=(1.0,))
    sigma = torch.tensor([0.3, 2.0], dtype=torch.float64)
    prior = AutoregressivePrior(2, 4).double()
    prior.set_from(fit, sigma)
    x, z = _pairs(train, 2)
    weight, bias = fit.weight.clone().requires_grad_(), fit.bias.clone().requires_grad_()
    nll = (0.5 * ((x - z @ weight.t() - bias) / sigma) ** 2).sum() / x.shape[0]
    free = torch.autograd.grad(nll, weight, retain_graph=True)[0]
    grad_weight, grad_bias = torch.autograd.grad(nll + prior.penalty(weight), (weight, bias))
    assert free.abs().max() > 0.1
    assert grad_weight.abs().max() < 1e-9 and grad_bias.abs().max() < 1e-9


@pytest.mark.parametrize("name", ["trbm", "rtrbm"])
def test_ar_train_sets_the_prior_keeps_the_taps_or_leaves_them_free(name, synthetic_subject):
    data = synthetic_subject
    for mode in ("prior", "free", "fixed"):
        torch.manual_seed(0)
        model = build_model(name, data.spec, {"hidden": 3, "ar_train": mode})
        model.prepare(data)
        strength = model.ar_prior.strength
        ridge = model.autoregressive_fit.ridge
        if mode == "prior":
            torch.testing.assert_close(strength, ridge / model.rbm.sigma ** 2)
            assert float(model.tap_prior_penalty().detach()) > 0          # the fit's taps are not the anchor
        else:
            assert float(strength.abs().max()) == 0 and float(model.tap_prior_penalty().detach()) == 0
        assert model.vv_weight.requires_grad == (mode != "fixed")
    with pytest.raises(UserError, match="ar_train"):
        build_model(name, data.spec, {"ar_train": "loose"})


def test_the_prepared_model_is_reported_as_the_ar_start_baseline(synthetic_subject, tmp_path, one_thread):
    """``starting_point_errors`` rebuilds and prepares the run's model without training: its error
    is the trained model's when no training step was taken, and it names the autoregression chosen."""
    from probseq.evaluate.prediction import starting_point_errors

    data = synthetic_subject
    hyper = {"hidden": 4, "sample_steps": 2}
    torch.manual_seed(3)
    model = build_model("trbm", data.spec, hyper)
    torch.manual_seed(3)
    model.prepare(data)
    assert model.autoregressive_start and model.autoregressive_fit is not None
    info = {"model": "trbm", "spec": data.spec.to_dict(), "hyperparameters": model.config, "seed": 3,
            "training": {}}
    out = starting_point_errors(info, data, data.split("test"))
    direct = next_frame_errors(model, data.split("test"))
    assert out["ar_start_mse_per_dim"] == pytest.approx(direct["next_frame_mse_per_dim"], rel=1e-6)
    assert out["ar_start_choice"].startswith(model.autoregressive_fit.structure)
    binary = {"model": "trbm", "spec": DataSpec("binary", 3).to_dict(), "hyperparameters": {"hidden": 2}}
    assert starting_point_errors(binary, None, []) == {}       # no autoregressive start: nothing to add


# ---------------------------------------------------------------------------- motion sample statistics
def test_motion_statistics_tell_moving_frozen_and_exploding_samples_apart():
    from probseq.data.sets.mocap import MIT_COLUMNS
    from probseq.evaluate.sample_statistics import motion_channel_roles, motion_statistics

    meta = {"motion_format": "mit", "columns": MIT_COLUMNS.tolist()}
    height, joints = motion_channel_roles(meta, 49)
    assert height == 5 and joints == list(range(6, 49))   # columns 0-5 are the root's
    g = torch.Generator().manual_seed(0)
    t = torch.arange(200.0)[:, None]
    gait = lambda phase: torch.sin(0.2 * t + phase + torch.arange(49.0)) + 0.01 * torch.randn(200, 49, generator=g)  # noqa: E731
    data = [gait(0.0), gait(1.0)]
    moving = motion_statistics([gait(2.0)], data, meta, windows=((0, None), (100, None)))
    assert moving["height_in_range_0_end"] > 0.95 and moving["angles_in_range_100_end"] > 0.95
    assert 0.9 < moving["angle_spread_ratio_0_end"] < 1.1 and 0.8 < moving["motion_ratio_100_end"] < 1.2
    frozen = motion_statistics([gait(2.0)[:1].expand(200, -1)], data, meta)
    assert frozen["angle_spread_ratio_0_end"] == 0 and frozen["motion_ratio_0_end"] == 0
    exploding = motion_statistics([gait(2.0) * torch.linspace(1, 10, 200)[:, None]], data, meta)
    assert exploding["height_in_range_0_end"] < 0.5 and exploding["angle_spread_ratio_0_end"] > 3
    channels = [["root", d] for d in ("tx", "ty", "tz")] + [["femur", "rx"], ["femur", "ry"]]
    assert motion_channel_roles({"motion_format": "asf", "channels": channels}, 5) == (1, [3, 4])


# ---------------------------------------------------------------------------- RTRBM with taps: brute force
def _gaussian_rbm_log_prob(v, vb, hb, weight, sigma):
    """``log P(v)`` of a Gaussian-Bernoulli RBM as the mixture of Gaussians it is:
    ``sum_h pi_h N(v; b + sigma W h, sigma^2)``, ``pi_h ∝ exp(c.h + (b/sigma).(W h) + |W h|^2 / 2)``."""
    hidden = weight.shape[1]
    logs, comps = [], []
    for bits in itertools.product([0.0, 1.0], repeat=hidden):
        h = torch.tensor(bits, dtype=v.dtype)
        u = weight @ h
        logs.append(hb @ h + (vb / sigma) @ u + 0.5 * u @ u)
        mean = vb + sigma * u
        comps.append(torch.distributions.Normal(mean, sigma).log_prob(v).sum())
    logs = torch.stack(logs)
    return torch.logsumexp(logs - torch.logsumexp(logs, 0) + torch.stack(comps), 0)


def test_rtrbm_with_delay_taps_matches_a_brute_force_mixture_of_gaussians():
    torch.manual_seed(0)
    model = build_model("rtrbm", DataSpec("real", 2), {"hidden": 3, "delay": 2, "init_std": 0.5,
                                                       "sigma": 0.7}).double()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(1, 4, 2, dtype=torch.float64)
    got = model.log_prob(Batch(x, torch.tensor([4])), estimator="exact").values[0]
    rbm = model.rbm
    sigma = rbm.sigma
    hist = [model.initial_visible[0], model.initial_visible[1]]     # v_0, v_{-1}
    c_rec = model.initial_hidden_bias
    total = 0.0
    for t in range(4):
        taps = torch.cat(hist)
        vb = rbm.visible_bias + model.vv_weight @ taps
        hb = c_rec + model.vh_weight @ taps
        total = total + _gaussian_rbm_log_prob(x[0, t], vb, hb, rbm.weight, sigma)
        r = torch.sigmoid(rbm.weight.t() @ (x[0, t] / sigma) + hb)
        c_rec = rbm.hidden_bias + model.recurrent_weight @ r
        hist = [x[0, t], hist[0]]
    assert float(got.detach()) == pytest.approx(float(total.detach()), abs=1e-8)


def test_rtrbm_tap_gradients_pass_gradcheck():
    torch.manual_seed(1)
    model = build_model("rtrbm", DataSpec("real", 2), {"hidden": 2, "delay": 2, "init_std": 0.5}).double()
    x = torch.randn(2, 3, 2, dtype=torch.float64)
    batch = Batch(x, torch.tensor([3, 2]))

    def log_lik(vv, vh):
        model.vv_weight, model.vh_weight = vv, vh
        return model.log_prob(batch, estimator="exact").values.sum()

    vv = model.vv_weight.detach().clone().requires_grad_(True)
    vh = model.vh_weight.detach().clone().requires_grad_(True)
    del model.vv_weight, model.vh_weight
    assert torch.autograd.gradcheck(log_lik, (vv, vh))


def test_rtrbm_without_taps_is_the_thesis_rtrbm_for_binary_data():
    model = build_model("rtrbm", DataSpec("binary", 4), {"hidden": 3})
    assert model.delay == 0 and model.vv_weight is None and model.initial_visible is None
    assert not model.sample_visible_mean


# ---------------------------------------------------------------------------- noise-free sampling
def test_mean_visible_sampling_returns_the_conditional_mean():
    torch.manual_seed(0)
    rbm = RBM(3, 4, "gaussian", init_std=0.5)
    vb = torch.randn(5, 3)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    noisy = rbm.sample(steps=1, visible_bias=vb, generator=g1)
    clean = rbm.sample(steps=1, visible_bias=vb, generator=g2, mean_visible=True)
    h = (torch.rand(5, 4, generator=torch.Generator().manual_seed(3)) < torch.sigmoid(rbm.hidden_bias)).float()
    assert torch.allclose(clean, rbm.visible_mean(h, vb), atol=1e-6)
    assert not torch.allclose(noisy, clean)


@pytest.mark.parametrize("name", ["trbm", "rtrbm"])
def test_motion_samples_with_a_fixed_sigma_are_noise_free_by_default(name):
    model = build_model(name, DataSpec("real", 3), {"hidden": 4, "sample_steps": 3, "sigma": 1.0})
    assert model.sample_visible_mean
    smooth = model.sample(2, length=30, generator=torch.Generator().manual_seed(0)).values
    model.sample_visible_mean = False
    rough = model.sample(2, length=30, generator=torch.Generator().manual_seed(0)).values
    jitter = lambda s: float(((s[:, 2:] - 2 * s[:, 1:-1] + s[:, :-2]) ** 2).mean())  # noqa: E731
    assert jitter(smooth) < 0.1 * jitter(rough)     # sigma = 1 noise dominates the rough samples
    assert not build_model(name, DataSpec("binary", 3), {"hidden": 4}).sample_visible_mean


@pytest.fixture(scope="module")
def synthetic_subject(tmp_path_factory):
    """Four trials of one synthetic gait (whole held-out trials for valid and test)."""
    from probseq.data.sets.mocap import load_cmu
    from probseq.testing.synthetic_mocap import write_synthetic_subject

    directory = tmp_path_factory.mktemp("subject")
    write_synthetic_subject(directory, n_files=4, frames=480, seed=5, gait_seed=1, noise=0.005)
    return load_cmu(data_dir=directory)


@pytest.mark.parametrize("name", ["trbm", "rtrbm"])
def test_calibrated_samples_keep_moving_like_the_data(name, synthetic_subject, one_thread):
    """No drift to a rest pose and no excess jitter: after a prime from the held-out trial, the
    samples' frame-to-frame change stays within a factor 2 of the data's."""
    data = synthetic_subject
    torch.manual_seed(0)
    model = build_model(name, data.spec, {"hidden": 8, "sample_steps": 5})
    model.prepare(data)
    assert not model.sample_visible_mean           # sigma was fitted: draws, not means
    test = data.split("test")[0]
    energy = lambda s: float(((s[..., 1:, :] - s[..., :-1, :]) ** 2).mean())  # noqa: E731
    prime = test[None, :10]
    late = model.sample(2, length=110, prefix=prime, generator=torch.Generator().manual_seed(1)).values[:, 60:]
    assert 0.5 * energy(test) < energy(late) < 2 * energy(test)


# ---------------------------------------------------------------------------- the recipe on synthetic motion
@pytest.mark.parametrize("name", ["trbm", "rtrbm"])
def test_default_recipe_beats_both_baselines_on_held_out_synthetic_motion(name, synthetic_subject, tmp_path,
                                                                          one_thread):
    from probseq.train.fit import fit

    data = synthetic_subject
    torch.manual_seed(0)
    model = build_model(name, data.spec, {"hidden": 8, "cd_steps": 1})
    fit(model, data, tmp_path / "run", steps=20, options={"eval_every": 10}, progress=False)
    out = next_frame_errors(model, data.split("test"))
    assert out["next_frame_mse_per_dim"] < out["baseline_copy_last_mse_per_dim"]
    assert out["next_frame_mse_per_dim"] < out["baseline_linear_mse_per_dim"]


# ---------------------------------------------------------------------------- subject 35 as whole trials
@pytest.mark.slow  # writes all 33 trials of the developer data back as AMC files
def test_cmu35_trials_writer_reproduces_the_original_trial(shared_data, tmp_path):
    """``benchmarks/cmu35_trials.py`` writes the .mat trials back as AMC files; its trial 1 must give
    exactly the features of CMU's own ``35_01.amc`` (column order, frame rate, unwrapping)."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    from probseq.data.sets.mocap import cmu_features_from_motion
    from probseq.io.amc import read_amc, read_asf

    source = shared_data / "mocap"
    if not (source / "cmu35WalkJog.mat").is_file():
        pytest.skip(f"needs cmu35WalkJog.mat in {source}, which is absent")
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "cmu35_trials.py"
    spec = importlib.util.spec_from_file_location("cmu35_trials", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--source", str(source), "--out", str(tmp_path)])
    assert len(list(tmp_path.glob("35_*.amc"))) == 33
    skeleton = read_asf(source / "35.asf")
    original = read_amc(source / "35_01.amc", skeleton)
    written = read_amc(tmp_path / "35_01.amc", skeleton)
    assert written.channels == original.channels
    np.testing.assert_allclose(cmu_features_from_motion(written, 4), cmu_features_from_motion(original, 4),
                               atol=1e-4)
