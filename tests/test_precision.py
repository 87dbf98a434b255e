"""Opt-in reduced precision (``--set precision=bf16|fp16``) and the float32 guard (probseq.precision).

* the option is checked (a bad value, a closure optimiser, a device that cannot autocast to the type:
  one clear sentence each);
* every guarded computation (CTC's dynamic program, NADE, RBM free energies and log-partitions, AIS,
  the latent-variable estimators, the Gaussian KL, length models, frame log-likelihoods) returns
  float32 under an active bf16 autocast, with exactly the value it has in float32, and float64
  inputs stay float64; with the guard switched off the same checks fail;
* a short ``fit`` under bf16 (and fp16, where the CPU supports it) trains one model of each family
  to a finite loss close to the float32 run's, with float32 weights, and fp16 clips unscaled gradients.

Everything runs on the CPU (torch's CPU autocast), one thread, each test well under five seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probseq import precision
from probseq.cli import main
from probseq.ctc import CTC, ctc_loss
from probseq.ctc.dp import Lattice, log_partition
from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.estimators import latent
from probseq.frames.factorial import BernoulliFrame, CategoricalFrame, GaussianFrame
from probseq.frames.mixture import MixtureFrame
from probseq.frames.nade import NADE
from probseq.frames.rbm import RBM
from probseq.lengths import Halting
from probseq.models.gaussian import gaussian_kl, gaussian_log_density
from probseq.models.registry import build_model
from probseq.precision import (AutocastSafeLSTM, TrainingPrecision, autocast_supported, check_precision,
                               check_precision_on_device, full_precision)
from probseq.train.fit import fit, training_options

pytestmark = pytest.mark.usefixtures("one_thread")

BF16 = torch.bfloat16
CPU_FP16 = autocast_supported("cpu", torch.float16)


def _bf16_autocast():
    return torch.autocast("cpu", dtype=BF16)


# ---------------------------------------------------------------------------------------- the option
def test_precision_values_are_checked_with_one_clear_sentence():
    assert check_precision("fp32") == "fp32" and check_precision(" BF16 ") == "bf16"
    with pytest.raises(UserError, match="precision must be one of fp32, bf16, fp16.*got 'fp8'"):
        check_precision("fp8")
    model = build_model("gru", DataSpec("binary", 4), {"hidden": 4})
    assert training_options(model)["precision"] == "fp32"
    assert training_options(model, {"precision": "bf16"})["precision"] == "bf16"
    with pytest.raises(UserError, match="precision must be one of"):
        training_options(model, {"precision": "half"})


@pytest.mark.parametrize("optimizer", ["nag", "hf"])
def test_closure_optimisers_refuse_reduced_precision(optimizer):
    model = build_model("rnn", DataSpec("binary", 4), {"hidden": 4})
    assert training_options(model, {"optimizer": optimizer})["precision"] == "fp32"
    with pytest.raises(UserError, match=f"optimizer={optimizer} trains in float32 only"):
        training_options(model, {"optimizer": optimizer, "precision": "bf16"})


def test_fp16_on_this_cpu_either_works_or_says_why(monkeypatch):
    if CPU_FP16:
        assert TrainingPrecision("fp16", "cpu").scaler is not None     # GradScaler on the CPU
    else:
        with pytest.raises(UserError, match="precision=fp16 is not supported on cpu"):
            TrainingPrecision("fp16", "cpu")
    # a torch without CPU float16 autocast: the same one sentence, whatever this torch can do
    monkeypatch.setattr(precision, "autocast_supported", lambda device_type, dtype: False)
    with pytest.raises(UserError, match=r"precision=fp16 is not supported on cpu by this torch .*use "
                                        r"precision=fp32 or bf16"):
        check_precision_on_device("fp16", "cpu")


def test_bf16_on_a_gpu_without_bfloat16_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert not autocast_supported("cuda", BF16)
    with pytest.raises(UserError, match="precision=bf16 needs a GPU that computes in bfloat16"):
        check_precision_on_device("bf16", "cuda")


def test_fp32_is_the_plain_float32_step():
    p = TrainingPrecision("fp32", "cpu")
    assert not p.enabled and p.scaler is None
    with p.autocast():
        assert not torch.is_autocast_enabled("cpu")


def test_cli_precision_fp16_without_cuda_works_on_the_cpu_or_gives_the_clear_error(tmp_path, capsys):
    code = main(["fit", "gru", "--data", "jsb", "--steps", "2", "--device", "cpu", "--set", "hidden=4",
                 "--set", "batch_size=4", "--set", "precision=fp16", "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err
    if CPU_FP16:
        assert code == 0, err
    else:
        assert code == 2 and "precision=fp16" in err and "Traceback" not in err
    assert main(["fit", "gru", "--data", "jsb", "--steps", "1", "--set", "precision=fp8",
                 "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "precision must be one of fp32, bf16, fp16" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------- the guard
def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _ctc_loss(cast):
    lp = torch.randn(7, 2, 5, generator=_g(1)).log_softmax(-1)
    return ctc_loss(cast(lp), torch.tensor([[1, 2, 2], [3, 4, 0]]), torch.tensor([7, 5]),
                    torch.tensor([3, 2]), reduction="none", impl="dp")


def _ctc_dp(cast):
    lp = torch.randn(7, 2, 5, generator=_g(1)).log_softmax(-1)
    lattice = Lattice.build(torch.tensor([[1, 2, 2], [3, 4, 0]]), torch.tensor([3, 2]), torch.tensor([7, 5]),
                            blank=0, collapse_repeats=True, dtype=torch.float32)
    return log_partition(lattice.emissions(cast(lp)), lattice)


def _ctc_distribution(cast):
    return CTC(cast(torch.randn(2, 6, 4, generator=_g(2))), collapse_repeats=False).log_prob(
        torch.tensor([[1, 2], [3, 3]]))


def _nade(impl):
    def run(cast):
        torch.manual_seed(0)
        nade = NADE(6, 5, bias=False, init_scale=0.5)
        x = torch.bernoulli(torch.full((3, 6), 0.5), generator=_g(3))
        b, c = torch.randn(3, 6, generator=_g(4)), torch.randn(3, 5, generator=_g(5))
        return nade.log_prob(x, visible_bias=cast(b), hidden_bias=cast(c), impl=impl)
    return run


def _rbm(gaussian=False):
    torch.manual_seed(0)
    return RBM(5, 4, "gaussian" if gaussian else "bernoulli", init_std=0.5)


def _biases():
    return torch.randn(3, 5, generator=_g(6)), torch.randn(3, 4, generator=_g(7))


def _rbm_log_partition(cast):
    vb, hb = _biases()
    return _rbm().log_partition("exact", visible_bias=cast(vb), hidden_bias=cast(hb)).value


def _gaussian_rbm_log_partition(cast):
    vb, hb = _biases()
    return _rbm(gaussian=True).log_partition("exact", visible_bias=cast(vb), hidden_bias=cast(hb)).value


def _rbm_free_energy(cast):
    vb, hb = _biases()
    v = torch.bernoulli(torch.full((3, 5), 0.5), generator=_g(8))
    return _rbm().free_energy(cast(v), cast(vb), cast(hb))


def _rbm_ais(cast):
    vb, hb = _biases()
    return _rbm().log_partition("ais", visible_bias=cast(vb), hidden_bias=cast(hb), chains=8, steps=30,
                                generator=_g(9)).value


def _rbm_cd(cast):
    vb, hb = _biases()
    v = torch.bernoulli(torch.full((3, 5), 0.5), generator=_g(8))
    return _rbm().cd_loss(cast(v), 2, visible_bias=cast(vb), hidden_bias=cast(hb), generator=_g(10))


def _gaussian_kl(cast):
    a, b, c, d = (torch.randn(4, 3, generator=_g(i)) for i in range(11, 15))
    return gaussian_kl(cast(a), cast(b.exp()), cast(c), cast(d.exp()))


def _gaussian_log_density(cast):
    z, mu, s = (torch.randn(4, 3, generator=_g(i)) for i in range(15, 18))
    return gaussian_log_density(cast(z), cast(mu), cast(s.exp()))


def _iwae(cast):
    return latent.iwae(cast(torch.randn(6, 3, generator=_g(18)) * 30 - 200)).values


def _halting(cast):
    return Halting().log_prob(torch.tensor([3, 1, 4]), cast(torch.randn(3, 4, generator=_g(19))))


def _bernoulli(cast):
    x = torch.bernoulli(torch.full((3, 4), 0.5), generator=_g(20))
    return BernoulliFrame(4).log_prob(cast(torch.randn(3, 4, generator=_g(21)) * 3), x)


def _gaussian_frame(cast):
    return GaussianFrame(4).log_prob(cast(torch.randn(3, 8, generator=_g(22))), torch.randn(3, 4, generator=_g(23)))


def _categorical(cast):
    return CategoricalFrame(7).log_prob(cast(torch.randn(3, 7, generator=_g(24)) * 4), torch.tensor([0, 3, 6]))


def _mixture(cast):
    frame = MixtureFrame(GaussianFrame(2), 3)
    return frame.log_prob(cast(torch.randn(3, frame.param_dim, generator=_g(25))), torch.randn(3, 2, generator=_g(26)))


#: (name, computation of inputs cast by ``cast``, whether it is a pure function of its inputs)
GUARDED = [
    ("ctc_loss", _ctc_loss, True), ("ctc_dp", _ctc_dp, True), ("ctc_distribution", _ctc_distribution, True),
    ("nade_cumsum", _nade("cumsum"), False), ("nade_segments", _nade("segments"), False),
    ("nade_autograd", _nade("autograd"), False),
    ("rbm_log_partition", _rbm_log_partition, False),
    ("gaussian_rbm_log_partition", _gaussian_rbm_log_partition, False),
    ("rbm_free_energy", _rbm_free_energy, False), ("rbm_ais", _rbm_ais, False), ("rbm_cd", _rbm_cd, False),
    ("gaussian_kl", _gaussian_kl, True), ("gaussian_log_density", _gaussian_log_density, True),
    ("iwae", _iwae, True), ("halting_length", _halting, True), ("bernoulli_frame", _bernoulli, True),
    ("gaussian_frame", _gaussian_frame, True), ("categorical_frame", _categorical, True),
    ("mixture_frame", _mixture, True),
]
#: the cases whose unguarded computation changes under CPU bf16 autocast (the others contain no
#: operation that CPU autocast lowers: NADE's fused loop uses mv/addr, which CUDA autocast does lower)
UNGUARDED_DIFFERS = [name for name, _, _ in GUARDED if name not in ("nade_cumsum", "nade_autograd")]


def _bf16_rounded(t):
    return t.to(BF16).float()


def _guarded_matches_float32(compute) -> bool:
    """Under bf16 autocast, with bf16 inputs: float32 out, equal to float32 maths on the same inputs."""
    reference = compute(_bf16_rounded)
    with _bf16_autocast():
        result = compute(lambda t: t.to(BF16))
        same_inputs_in_float32 = compute(lambda t: t)
    reference_full = compute(lambda t: t)
    return (result.dtype == torch.float32 and same_inputs_in_float32.dtype == torch.float32
            and torch.allclose(result, reference, rtol=1e-6, atol=1e-6)
            and torch.allclose(same_inputs_in_float32, reference_full, rtol=1e-6, atol=1e-6))


@pytest.mark.parametrize("name, compute, pure", GUARDED, ids=[c[0] for c in GUARDED])
def test_guarded_computations_stay_float32_under_bf16_autocast(name, compute, pure):
    assert _guarded_matches_float32(compute)
    if pure:       # float64 stays float64
        with _bf16_autocast():
            assert compute(lambda t: t.double()).dtype == torch.float64


@pytest.mark.parametrize("name", UNGUARDED_DIFFERS)
def test_without_the_guard_the_same_check_fails(name, monkeypatch):
    """Switching the guard off (it believes no autocast is active) breaks every case above."""
    compute = {n: c for n, c, _ in GUARDED}[name]
    monkeypatch.setattr(precision, "autocast_active", lambda: ())
    assert not _guarded_matches_float32(compute)


def test_the_guard_is_a_no_op_outside_autocast_and_works_as_a_context_manager():
    seen = []

    @full_precision
    def f(x, pair, *, table):
        seen.append((x.dtype, pair[0].dtype, table["y"].dtype, torch.is_autocast_enabled("cpu")))
        return x

    x = torch.ones(2, dtype=BF16)
    assert f(x, (x, 1), table={"y": x}) is x                        # outside autocast: untouched
    with _bf16_autocast():
        f(x, (x, 1), table={"y": x.double()})
        with full_precision():
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
    assert seen == [(BF16, BF16, BF16, False), (torch.float32, torch.float32, torch.float64, False)]


def test_hand_written_backwards_work_under_autocast():
    """NADE's fused autograd.Function and CTC's forward-backward: bf16 inputs, float32 maths,
    gradients of the inputs' type equal to the float32 gradients."""
    torch.manual_seed(0)
    nade = NADE(6, 5, bias=False, init_scale=0.5)
    x = torch.bernoulli(torch.full((3, 6), 0.5), generator=_g(3))
    b = torch.randn(3, 6, generator=_g(4)).to(BF16).requires_grad_()
    c = torch.randn(3, 5, generator=_g(5)).to(BF16).requires_grad_()
    with _bf16_autocast():
        lp = nade.log_prob(x, visible_bias=b, hidden_bias=c)
    lp.sum().backward()
    assert b.grad.dtype == BF16 and torch.isfinite(b.grad.float()).all()
    b32, c32 = b.detach().float().requires_grad_(), c.detach().float().requires_grad_()
    nade.log_prob(x, visible_bias=b32, hidden_bias=c32).sum().backward()
    torch.testing.assert_close(c.grad.float(), c32.grad, atol=1e-2, rtol=1e-2)

    lp = torch.randn(7, 2, 5, generator=_g(1)).log_softmax(-1).to(BF16).requires_grad_()
    with _bf16_autocast():
        loss = _ctc_loss(lambda t: lp).sum()
    loss.backward()
    assert loss.dtype == torch.float32 and lp.grad.dtype == BF16 and torch.isfinite(lp.grad.float()).all()


def test_lstm_runs_under_cpu_autocast():
    lstm = AutocastSafeLSTM(3, 4, batch_first=True)
    assert isinstance(lstm, torch.nn.LSTM)
    x = torch.randn(2, 5, 3, generator=_g(30))
    out, _ = lstm(x)
    with _bf16_autocast():
        out_autocast, (h, c) = lstm(x)
    assert out_autocast.dtype == torch.float32
    torch.testing.assert_close(out_autocast, out)
    assert set(lstm.state_dict()) == set(torch.nn.LSTM(3, 4).state_dict())


# ---------------------------------------------------------------------------------------- training
def _binary_dataset(dim=4, seed=0):
    g = _g(seed)

    def seqs(n):
        out = []
        for _ in range(n):
            t = int(torch.randint(3, 9, (1,), generator=g))
            x = torch.zeros(t, dim)
            x[torch.arange(t), torch.arange(t) % dim] = 1.0
            out.append((x + torch.bernoulli(torch.full((t, dim), 0.05), generator=g)) % 2)
        return out

    return Dataset("toy", DataSpec("binary", dim), {"train": seqs(24), "valid": seqs(6)})


def _speech_dataset():
    rng = np.random.default_rng(0)

    def examples(n):
        return [((0.1 * rng.standard_normal(int(rng.integers(1500, 3000)))).astype(np.float32),
                 torch.tensor(rng.integers(0, 4, int(rng.integers(1, 3))), dtype=torch.long))
                for _ in range(n)]

    return Dataset("toy-speech", DataSpec("categorical", 4), {"train": examples(8), "valid": examples(4)})


FAMILIES = [
    ("gru", {"hidden": 8}, _binary_dataset),
    ("rnn-nade", {"hidden": 8, "nade_hidden": 6}, _binary_dataset),
    ("rnn-rbm", {"hidden": 8, "rbm_hidden": 4, "cd_steps": 2}, _binary_dataset),
    ("rtrbm", {"hidden": 4, "cd_steps": 2, "pretrain_steps": 0}, _binary_dataset),
    ("vrnn", {"hidden": 8, "latent": 2, "features": 8}, _binary_dataset),
    ("ctc", {"hidden": 8, "conv_channels": 8, "layers": 1, "n_mels": 16, "stride": 2, "dropout": 0.0},
     _speech_dataset),
]


def _train_losses(run_dir):
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e["event"] == "train"]


def _fit(name, hyper, data, run_dir, precision_name, steps=6):
    torch.manual_seed(0)
    model = build_model(name, data.spec, dict(hyper))
    opts = {"batch_size": 4, "lr": 3e-3, "log_every": 1, "eval_every": steps, "precision": precision_name}
    summary = fit(model, data, run_dir, steps=steps, seed=1, options=opts, progress=False)
    return model, summary, _train_losses(run_dir)


@pytest.mark.parametrize("name, hyper, make_data", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_a_short_bf16_fit_of_each_family_is_close_to_float32(name, hyper, make_data, tmp_path):
    data = make_data()
    _, full, full_losses = _fit(name, hyper, data, tmp_path / "fp32", "fp32")
    model, low, low_losses = _fit(name, hyper, data, tmp_path / "bf16", "bf16")
    assert len(low_losses) == len(full_losses) == 6
    assert all(np.isfinite(low_losses)) and np.isfinite(low.best_valid)
    # the first step's loss differs only by bf16 rounding in the neural parts; later ones drift a little
    assert low_losses[0] == pytest.approx(full_losses[0], rel=0.02, abs=0.02)
    assert low_losses[-1] == pytest.approx(full_losses[-1], rel=0.1, abs=0.1)
    assert low.best_valid == pytest.approx(full.best_valid, rel=0.05, abs=0.05)
    assert all(p.dtype == torch.float32 for p in model.parameters())   # the weights stay float32


@pytest.mark.skipif(not CPU_FP16, reason="this torch has no CPU float16 autocast")
def test_fp16_scales_the_loss_and_clips_the_unscaled_gradients(tmp_path, monkeypatch):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def recording_clip(params, max_norm, *args, **kwargs):
        params = list(params)
        norms.append(float(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))))
        return clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", recording_clip)
    model, summary, losses = _fit("gru", {"hidden": 8}, _binary_dataset(), tmp_path, "fp16", steps=8)
    assert len(norms) == 8 and all(np.isfinite(losses)) and np.isfinite(summary.best_valid)
    finite = [n for n in norms if np.isfinite(n)]    # a step whose scaled gradients overflowed is skipped
    assert finite and max(finite) < 100.0, norms     # unscaled: not 2^16 times the true norm
    assert all(p.dtype == torch.float32 for p in model.parameters())
