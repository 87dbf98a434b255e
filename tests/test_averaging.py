"""The trainer's weight average (``average=d``): the EMA itself against its formula, what the
trainer validates and keeps, and exact resumption."""

from __future__ import annotations

import json

import pytest
import torch

from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.evaluate.chunking import bounded_validation_loss
from probseq.models.registry import build_model
from probseq.testing.ddp import toy_dataset
from probseq.train.averaging import WeightAverage
from probseq.train.checkpoint import safe_load
from probseq.train.fit import fit

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = DataSpec("binary", 4)


def _model():
    torch.manual_seed(0)
    return build_model("gru", SPEC, {"hidden": 6})


def test_the_average_follows_the_ema_recursion_and_leaves_buffers_alone():
    model = torch.nn.Linear(3, 2)
    model.register_buffer("ordering", torch.tensor([2, 0, 1]))
    average = WeightAverage(model, 0.75)
    expected = None
    for step in range(5):
        with torch.no_grad():
            model.weight.add_(torch.full_like(model.weight, float(step + 1)))
        average.update(model)
        w = model.weight.detach().clone()
        expected = w if expected is None else 0.75 * expected + 0.25 * w
    last = model.weight.detach().clone()
    with average.applied(model):
        torch.testing.assert_close(model.weight.detach(), expected)
        assert model.ordering.tolist() == [2, 0, 1]
    torch.testing.assert_close(model.weight.detach(), last)     # restored after the block
    restored = WeightAverage(torch.nn.Linear(3, 2), 0.75)
    restored.load_state_dict(average.state_dict())
    assert restored.n_averaged == 5
    torch.testing.assert_close(restored.state_dict()["average.weight"], expected)


def test_average_must_be_a_decay():
    with pytest.raises(UserError, match="average"):
        fit(_model(), toy_dataset(SPEC), "unused", steps=1, options={"average": 1.0}, progress=False)


def test_the_trainer_validates_and_keeps_the_averaged_weights(tmp_path):
    data = toy_dataset(SPEC)
    opts = {"batch_size": 4, "lr": 0.05, "average": 0.8, "eval_every": 3, "log_every": 1, "patience": 0}
    model = _model()
    fit(model, data, tmp_path / "avg", steps=9, options=opts, progress=False)
    events = [json.loads(x) for x in (tmp_path / "avg" / "log.jsonl").read_text().splitlines()]
    valid = [e for e in events if e.get("event") == "valid"]
    end = events[-1]
    best = next(e for e in valid if e["step"] == end["best_step"])
    # model.pt holds the weights that scored the best logged validation: the averaged ones
    kept = _model()
    kept.load_state_dict(safe_load(tmp_path / "avg" / "model.pt")["state_dict"])
    assert bounded_validation_loss(kept, data.split("valid"), batch_size=4) == pytest.approx(best["valid_loss"], rel=1e-6)
    # and they are not the last iterate: the same run without the average ends elsewhere
    plain = _model()
    fit(plain, data, tmp_path / "plain", steps=9, options={**opts, "average": 0.0, "keep": "last"}, progress=False)
    assert any(not torch.allclose(a, b) for a, b in zip(kept.state_dict().values(), plain.state_dict().values()))


def test_a_resumed_run_carries_the_average(tmp_path):
    data = toy_dataset(SPEC)
    opts = {"batch_size": 4, "lr": 0.05, "average": 0.8, "keep": "last", "patience": 0, "checkpoint_every": 1}
    whole = _model()
    fit(whole, data, tmp_path / "whole", steps=8, options=opts, progress=False)
    parts = _model()
    fit(parts, data, tmp_path / "parts", steps=4, options=opts, progress=False)
    parts = _model()
    fit(parts, data, tmp_path / "parts", steps=8, options=opts, progress=False, resume=True)
    for key, value in whole.state_dict().items():
        torch.testing.assert_close(parts.state_dict()[key], value, rtol=0, atol=0, msg=key)
