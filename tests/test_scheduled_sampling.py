"""Scheduled sampling (Bengio et al. 2015): the schedules' values, teacher forcing as its eps = 1
limit, the likelihood untouched, and the unscored-context training objective."""

from __future__ import annotations

import json
import math

import pytest
import torch

from probseq.cli import main
from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model
from probseq.testing.enumerate import random_batch
from probseq.models.objectives.scheduled_sampling import make_schedule, scheduled_readouts

pytestmark = pytest.mark.usefixtures("one_thread")


def test_linear_schedule():
    s = make_schedule("linear", k=1.0, c=0.1, floor=0.2)
    assert [s.teacher_forcing(i, 100) for i in (0, 5, 8, 100)] == pytest.approx([1.0, 0.5, 0.2, 0.2])
    default = make_schedule("linear", floor=0.25)  # from 1 to the floor over the run
    assert default.teacher_forcing(0, 40) == 1.0
    assert default.teacher_forcing(20, 40) == pytest.approx(0.625)
    assert default.teacher_forcing(40, 40) == pytest.approx(0.25)


def test_exponential_schedule():
    s = make_schedule("exponential", k=0.9)
    assert s.teacher_forcing(3, 10) == pytest.approx(0.729)
    assert make_schedule("exponential").teacher_forcing(500, 500) == pytest.approx(0.01)


def test_inverse_sigmoid_schedule():
    s = make_schedule("inverse_sigmoid", k=10.0)
    for i in (0, 7, 30):
        assert s.teacher_forcing(i, 100) == pytest.approx(10 / (10 + math.exp(i / 10)))
    default = make_schedule("inverse_sigmoid")
    assert default.teacher_forcing(500, 1000) == pytest.approx(0.5, abs=1e-6)
    values = [default.teacher_forcing(i, 1000) for i in range(0, 1001, 50)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_none_is_teacher_forcing_and_bad_options_are_user_errors():
    assert make_schedule("none").teacher_forcing(10**6, 10) == 1.0
    for kwargs in ({"kind": "cosine"}, {"kind": "exponential", "k": 1.5},
                   {"kind": "inverse_sigmoid", "k": 0.5}, {"kind": "linear", "floor": 2.0}):
        with pytest.raises(UserError):
            make_schedule(**kwargs)
    with pytest.raises(UserError, match="scheduled_sampling"):
        build_model("gru", DataSpec("binary", 3), {"scheduled_sampling": "sometimes"})


CASES = [("gru", DataSpec("binary", 3), {"hidden": 5, "length": "explicit", "max_length": 9}),
         ("lstm", DataSpec("categorical", 4), {"hidden": 5, "length": "end-symbol"}),
         ("mrnn", DataSpec("categorical", 4), {"hidden": 5, "length": "halting"}),
         ("rnn-nade", DataSpec("binary", 3), {"hidden": 5, "nade_hidden": 3, "length": "halting",
                                               "input_dropout": 0.0, "output_dropout": 0.0})]


@pytest.mark.parametrize("name,spec,hyper", CASES, ids=[c[0] for c in CASES])
def test_with_eps_one_the_step_by_step_pass_is_teacher_forcing(name, spec, hyper):
    torch.manual_seed(0)
    model = build_model(name, spec, {**hyper, "scheduled_sampling": "linear"}).double().eval()
    batch = random_batch(spec, [5, 2, 7], dtype=torch.float64)
    x, params, head = model.readouts(batch)
    x1, params1, head1 = scheduled_readouts(model, batch, 1.0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(x1, x)
    valid = batch.mask.clone()
    valid = torch.cat([torch.ones(3, 1, dtype=torch.bool), valid], 1)  # states s_0..s_T
    torch.testing.assert_close(params1[valid], params[valid])
    torch.testing.assert_close(head1[valid], head[valid])
    # and the training loss through the scheduled path equals the teacher-forced loss
    model.train()
    model.teacher_forcing = 1.0 - 1e-12   # takes the scheduled path; every coin says "true frame"
    scheduled = model.loss(batch, generator=torch.Generator().manual_seed(1))
    model.teacher_forcing = 1.0
    forced = model.loss(batch)
    torch.testing.assert_close(scheduled, forced)


def test_own_samples_change_the_loss_not_the_likelihood():
    torch.manual_seed(1)
    spec = DataSpec("categorical", 4)
    model = build_model("gru", spec, {"hidden": 6, "scheduled_sampling": "exponential", "ss_k": 0.5})
    batch = random_batch(spec, [6, 6, 4])
    model.eval()
    exact = model.log_prob(batch)
    forced = model.loss(batch)
    model.train()
    model.on_train_step(40, 100)        # eps = 0.5^40: nearly always the model's own samples
    assert model.teacher_forcing < 1e-9
    sampled = model.loss(batch, generator=torch.Generator().manual_seed(0))
    assert not torch.isclose(sampled, forced)
    again = model.log_prob(batch)        # log_prob never uses scheduled sampling
    assert again.kind == "exact" and torch.allclose(again.values, exact.values)
    sampled.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_train_context_scores_the_rest_given_the_context():
    """loss = -[log p(x_{1:T}) - log p(x_{1:c})] / (T - c) for every sequence (length not modelled)."""
    torch.manual_seed(2)
    spec = DataSpec("categorical", 5)
    model = build_model("mrnn", spec, {"hidden": 6, "train_context": 3}).double().eval()
    batch = random_batch(spec, [8, 5])
    full = model.log_prob(batch).values
    prefix = model.log_prob(Batch(batch.values[:, :3], torch.tensor([3, 3]))).values
    expected = -(full - prefix).sum() / (8 - 3 + 5 - 3)
    torch.testing.assert_close(model.loss(batch), expected)


def test_fit_with_scheduled_sampling_and_evaluate_exact(tmp_path, capsys):
    run = tmp_path / "ss"
    assert main(["fit", "gru", "--data", "jsb", "--steps", "2", "--quiet", "--set", "hidden=8",
                 "--set", "scheduled_sampling=inverse_sigmoid", "--set", "ss_k=2",
                 "--set", "batch_size=4", "--out", str(run)]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["hyperparameters"]["scheduled_sampling"] == "inverse_sigmoid"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--split", "valid", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "exact" and result["estimator"] == "exact"
