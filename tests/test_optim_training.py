"""The trainer with optimizer=nag / optimizer=hf / init=..., and the addition problem's model."""

from __future__ import annotations

import json

import pytest
import torch

from probseq.cli import main
from probseq.data.registry import Dataset, load_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model
from probseq.optim import spectral_radius
from probseq.optim.init import apply_initialisation
from probseq.optim.training import closure_step, make_closure_optimizer
from probseq.train.fit import fit


def _binary_data(n=24, steps=8, dim=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    seqs = []
    for _ in range(n):
        x = torch.zeros(steps, dim)
        x[0] = (torch.rand(dim, generator=gen) < 0.5).float()
        for t in range(1, steps):                      # a learnable pattern: shift by one key
            x[t] = torch.roll(x[t - 1], 1)
        seqs.append(x)
    return Dataset("toy", DataSpec("binary", dim), {"train": seqs[:16], "valid": seqs[16:]})


def _train_losses(run_dir):
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e.get("event") == "train"]


def test_fit_with_hessian_free_decreases_the_loss(tmp_path, one_thread):
    data = _binary_data()
    torch.manual_seed(0)
    model = build_model("rnn", data.spec, {"hidden": 8})
    fit(model, data, tmp_path, steps=3, progress=False,
        options={"optimizer": "hf", "batch_size": 16, "log_every": 1, "hf_cg_iters": 30,
                 "hf_curvature_batch": 8, "hf_structural_damping": 0.3})
    losses = _train_losses(tmp_path)
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_fit_with_hessian_free_repeats_with_the_seed(tmp_path, one_thread):
    data = _binary_data()
    weights = []
    for run in ("a", "b"):
        model = build_model("gru", data.spec, {"hidden": 6})
        fit(model, data, tmp_path / run, steps=2, seed=3, progress=False,
            options={"optimizer": "hf", "batch_size": 16, "hf_cg_iters": 10, "init": "sparse"})
        weights.append(model.state_dict())
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def test_fit_with_nag_and_echo_state_initialisation(tmp_path, one_thread):
    data = _binary_data()
    model = build_model("rnn", data.spec, {"hidden": 20})
    fit(model, data, tmp_path, steps=6, progress=False,
        options={"optimizer": "nag", "lr": 0.05, "momentum": 0.9, "momentum_schedule": "sutskever",
                 "init": "echo_state", "batch_size": 16, "log_every": 1})
    losses = _train_losses(tmp_path)
    assert losses[-1] < losses[0]


def test_echo_state_option_sets_the_recurrent_spectral_radius():
    model = build_model("rnn", DataSpec("binary", 3), {"hidden": 30})
    apply_initialisation(model, "echo_state", seed=0)
    assert abs(spectral_radius(model.rnn.weight_hh_l0) - 1.2) < 1e-5
    assert float(model.rnn.bias_hh_l0.detach().abs().max()) == 0.0
    gru = build_model("gru", DataSpec("binary", 3), {"hidden": 20})
    apply_initialisation(gru, "sparse", seed=0)
    assert ((gru.readout.weight != 0).sum(1) == 15).all()


def test_bad_optimizer_options_are_user_errors(tmp_path):
    data = _binary_data()
    model = build_model("rnn", data.spec, {"hidden": 4})
    for bad in ({"optimizer": "newton"}, {"init": "orthogonal"}, {"momentum_schedule": "cubic"}):
        with pytest.raises(UserError):
            fit(model, data, tmp_path / "x", steps=1, progress=False, options=bad)


def test_hf_refuses_models_without_an_exact_loss():
    model = build_model("rnn-rbm", DataSpec("binary", 4), {})
    with pytest.raises(UserError, match="exact"):
        make_closure_optimizer(model, {"optimizer": "hf"})


def test_addition_problem_data_and_regression_model(one_thread):
    data = load_dataset("addition", length=12, n_train=64, n_valid=16, n_test=16, seed=1)
    example = data.split("train")[0]
    assert example.inputs.shape == (12, 2) and example.target.shape == (1,)
    assert int(example.inputs[:, 1].sum()) == 2
    first, second = example.inputs[:, 1].nonzero().flatten().tolist()
    assert first < 6 and second < 6
    values = example.inputs[[first, second], 0]
    assert float(example.target) == pytest.approx(0.5 + float(values.sum()) / 4, abs=1e-6)
    # same seed, same data; the test split does not depend on n_train
    again = load_dataset("addition", length=12, n_train=8, n_valid=16, n_test=16, seed=1)
    assert torch.equal(again.split("test")[3].inputs, data.split("test")[3].inputs)

    torch.manual_seed(0)
    model = build_model("rnn-regression", data.spec, {"hidden": 10})
    model.validate_examples(data.split("train"))
    with pytest.raises(UserError):
        model.validate_examples([torch.zeros(5, 2)])
    with pytest.raises(UserError):
        model.sample(2)
    batch = model.collate(data.split("train"))
    lp = model.log_prob(batch)
    assert lp.kind == "exact" and lp.values.shape == (64,)
    expected = torch.distributions.Normal(model.predict(batch), 1.0).log_prob(batch.targets).sum(-1)
    torch.testing.assert_close(lp.values, expected)
    opt = make_closure_optimizer(model, {"optimizer": "hf", "hf_cg_iters": 20, "hf_damping": 1.0,
                                         "hf_structural_damping": 0.5})
    with torch.no_grad():
        before = float(model.loss(batch))
    for _ in range(3):
        closure_step(opt, model, batch, generator=torch.Generator().manual_seed(0),
                     opts={"hf_curvature_batch": 32})
    with torch.no_grad():
        assert float(model.loss(batch)) < before
    metric = model.evaluate_metric("zero-one", data.split("test"), generator=torch.Generator(),
                                   batch_size=8)
    assert 0.0 <= metric["zero_one_loss"] <= 1.0 and metric["n_sequences"] == 16


def test_cli_fits_the_addition_problem_and_reports_the_zero_one_loss(tmp_path, capsys, one_thread):
    run = tmp_path / "add"
    assert main(["fit", "rnn-regression", "--data", "addition", "--steps", "4", "--quiet",
                 "--set", "length=10", "--set", "n_train=32", "--set", "n_valid=16",
                 "--set", "n_test=16", "--set", "hidden=8", "--set", "optimizer=nag",
                 "--set", "init=echo_state", "--set", "momentum_schedule=sutskever",
                 "--set", "batch_size=16", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--metric", "zero-one", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result) >= {"zero_one_loss", "target_mse", "tolerance"}
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["kind"] == "exact" and result["n_frames"] == 16


@pytest.mark.parametrize("name,hyper", [
    ("gru", {"hidden": 6, "length": "halting"}),
    ("lstm", {"hidden": 5, "length": "explicit", "max_length": 12}),
    ("rnn-nade", {"hidden": 6, "nade_hidden": 4, "length": "halting"}),
    ("rnn-nade", {"hidden": 6, "nade_hidden": 4, "orderings": 2}),
])
def test_curvature_outputs_give_the_training_loss(name, hyper):
    """L(z) at the model's own outputs is its loss (eval mode: no dropout), so HF optimises it."""
    data = _binary_data()
    torch.manual_seed(0)
    model = build_model(name, data.spec, hyper)
    model.eval()
    batch = model.collate(data.split("train")[:6])
    with torch.no_grad():
        torch.testing.assert_close(model.curvature_outputs(batch).value(), model.loss(batch))


def test_hessian_free_trains_rnn_nade_through_its_bernoulli_conditionals(one_thread):
    data = _binary_data()
    torch.manual_seed(0)
    model = build_model("rnn-nade", data.spec, {"hidden": 8, "nade_hidden": 5,
                                                "input_dropout": 0.0, "output_dropout": 0.0})
    outputs = model.curvature_outputs(model.collate(data.split("train")[:4]))
    assert outputs.outputs.shape == (4, 8 * 5)       # one logit per key and frame
    batch = model.collate(data.split("train"))
    opt = make_closure_optimizer(model, {"optimizer": "hf", "hf_cg_iters": 20})
    with torch.no_grad():
        before = float(model.loss(batch))
    for _ in range(2):
        closure_step(opt, model, batch, generator=torch.Generator().manual_seed(0), opts={})
    with torch.no_grad():
        assert float(model.loss(batch)) < before


@pytest.mark.slow
def test_cli_fits_an_rnn_on_jsb_with_hessian_free(tmp_path, one_thread):
    """The issue's check, `probseq fit rnn --data jsb --set optimizer=hf --steps 3` (a few seconds
    on an idle machine; the toy-data test above is the fast version)."""
    run = tmp_path / "hf"
    assert main(["fit", "rnn", "--data", "jsb", "--steps", "3", "--quiet", "--set", "optimizer=hf",
                 "--set", "hidden=8", "--set", "hf_cg_iters=10", "--set", "batch_size=16",
                 "--set", "log_every=1", "--out", str(run)]) == 0
    losses = _train_losses(run)
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_echo_state_needs_a_recurrent_layer():
    model = build_model("independent", DataSpec("binary", 3), {})
    with pytest.raises(UserError, match="echo_state"):
        apply_initialisation(model, "echo_state", seed=0)


@pytest.mark.parametrize("optimizer", ["hf", "nag"])
def test_resuming_a_closure_optimiser_run_repeats_the_uninterrupted_run(tmp_path, optimizer, one_thread):
    """The optimiser state (HF damping and CG warm start, NAG velocity and step count) is checkpointed."""
    data = _binary_data()
    options = {"optimizer": optimizer, "batch_size": 8, "hf_cg_iters": 8, "lr": 0.05,
               "momentum_schedule": "sutskever", "checkpoint_every": 1}
    torch.manual_seed(0)
    straight = build_model("rnn", data.spec, {"hidden": 5})
    fit(straight, data, tmp_path / "straight", steps=4, seed=1, options=options, progress=False)
    torch.manual_seed(0)
    resumed = build_model("rnn", data.spec, {"hidden": 5})
    fit(resumed, data, tmp_path / "resumed", steps=2, seed=1, options=options, progress=False)
    resumed = build_model("rnn", data.spec, {"hidden": 5})
    fit(resumed, data, tmp_path / "resumed", steps=4, seed=1, options=options, progress=False,
        resume=True)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0)
