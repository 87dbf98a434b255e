"""The fit loop: files, logs, early stopping, exact resumption after a crash, repeatability."""

from __future__ import annotations

import json

import pytest
import torch

from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model
from probseq.train.checkpoint import safe_load
from probseq.train.fit import fit, training_options

SPEC = DataSpec("binary", 4)


def _toy_dataset(seed=0):
    g = torch.Generator().manual_seed(seed)

    def seqs(n):
        out = []
        for _ in range(n):
            t = int(torch.randint(3, 9, (1,), generator=g))
            x = torch.zeros(t, 4)
            x[torch.arange(t), torch.arange(t) % 4] = 1.0   # a rotating one-hot pattern
            flip = torch.bernoulli(torch.full((t, 4), 0.05), generator=g)
            out.append((x + flip) % 2)
        return out

    return Dataset("toy", SPEC, {"train": seqs(40), "valid": seqs(10), "test": seqs(10)})


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("gru", SPEC, {"hidden": 8})


def test_fit_writes_weights_checkpoint_and_json_log(tmp_path):
    model = _model()
    summary = fit(model, _toy_dataset(), tmp_path, steps=30, options={"lr": 0.02, "eval_every": 10,
                                                                        "batch_size": 8}, progress=False)
    assert summary.steps == 30
    for name in ("model.pt", "checkpoint.pt", "log.jsonl"):
        assert (tmp_path / name).is_file()
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert {"start", "train", "valid", "end"} <= {e["event"] for e in events}
    valid = [e["valid_loss"] for e in events if e["event"] == "valid"]
    assert valid[-1] < valid[0], "validation loss did not improve on a learnable pattern"
    weights = safe_load(tmp_path / "model.pt")["state_dict"]
    best = min(valid)
    assert summary.best_valid == pytest.approx(best)
    model.load_state_dict(weights)   # model.pt holds the best validation weights


def test_resume_after_a_crash_equals_an_uninterrupted_run(tmp_path):
    opts = {"lr": 0.02, "batch_size": 8, "checkpoint_every": 5, "eval_every": 7}
    straight = _model()
    fit(straight, _toy_dataset(), tmp_path / "a", steps=25, options=opts, progress=False)

    crashing = _model()
    calls = {"n": 0}

    def crash(step, total):
        calls["n"] += 1
        if step == 13:
            raise KeyboardInterrupt

    crashing.on_train_step = crash
    with pytest.raises(KeyboardInterrupt):
        fit(crashing, _toy_dataset(), tmp_path / "b", steps=25, options=opts, progress=False)
    resumed = _model(seed=123)       # a fresh process would rebuild the model with other weights
    fit(resumed, _toy_dataset(), tmp_path / "b", steps=25, options=opts, resume=True, progress=False)
    final_a = safe_load(tmp_path / "a" / "checkpoint.pt")["model"]
    final_b = safe_load(tmp_path / "b" / "checkpoint.pt")["model"]
    for key in final_a:
        torch.testing.assert_close(final_b[key], final_a[key], rtol=0, atol=0)


def test_same_seed_same_run(tmp_path):
    opts = {"lr": 0.02, "batch_size": 8}
    a, b = _model(), _model()
    fit(a, _toy_dataset(), tmp_path / "a", steps=12, seed=3, options=opts, progress=False)
    fit(b, _toy_dataset(), tmp_path / "b", steps=12, seed=3, options=opts, progress=False)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_early_stopping_stops(tmp_path):
    summary = fit(_model(), _toy_dataset(), tmp_path, steps=2000,
                  options={"lr": 0.05, "batch_size": 8, "eval_every": 5, "patience": 2}, progress=False)
    assert summary.stopped_early and summary.steps < 2000


@pytest.mark.parametrize("keep", ["best", "last"])
def test_keep_chooses_the_best_validation_or_the_final_weights(tmp_path, keep):
    opts = {"lr": 0.05, "batch_size": 8, "eval_every": 3, "patience": 0, "keep": keep}
    model = _model()
    calls = []

    def worsening_score(batch):
        """A validation score that only gets worse, so the best weights are those of step 3."""
        calls.append(batch)
        return float(len(calls))

    model.validation_loss = worsening_score
    summary = fit(model, _toy_dataset(), tmp_path, steps=60, options=opts, progress=False)
    saved = safe_load(tmp_path / "model.pt")["state_dict"]
    final = safe_load(tmp_path / "checkpoint.pt")["model"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(saved[name], value)          # model.pt holds the kept weights
    differs = any(not torch.equal(final[k], v) for k, v in model.state_dict().items())
    assert summary.best_step == 3
    assert differs == (keep == "best")                          # last = the final step's weights


@pytest.mark.parametrize("at_start", [True, False])
def test_validate_at_start_keeps_the_starting_weights_when_training_only_worsens_them(tmp_path, at_start):
    """``validate_at_start``: step 0 is validated and competes for keep=best; without it, the best
    of the later validations is kept even when every one of them is worse than the start."""
    opts = {"lr": 0.05, "batch_size": 8, "eval_every": 3, "patience": 0, "validate_at_start": at_start}
    model = _model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    scored_steps = []

    def score(batch):
        """A validation score that is lowest for the untrained weights and grows with every change."""
        scored_steps.append(batch)
        return sum(float((v - start[k]).abs().sum()) for k, v in model.state_dict().items())

    model.validation_loss = score
    summary = fit(model, _toy_dataset(), tmp_path, steps=12, options=opts, progress=False)
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    valid_steps = [e["step"] for e in events if e["event"] == "valid"]
    assert valid_steps == ([0] if at_start else []) + [3, 6, 9, 12]
    kept_start = all(torch.equal(model.state_dict()[k], v) for k, v in start.items())
    assert kept_start == at_start
    assert summary.best_step == (0 if at_start else 3)
    saved = safe_load(tmp_path / "model.pt")["state_dict"]
    for name, value in model.state_dict().items():
        torch.testing.assert_close(saved[name], value)
    assert training_options(_model())["validate_at_start"] is False      # opt-in (model recipes turn it on)
    assert training_options(_model(), {"validate_at_start": "true"})["validate_at_start"] is True


def test_divergence_is_reported_clearly(tmp_path):
    model = _model()
    model.loss = lambda batch, generator=None: torch.tensor(float("nan"), requires_grad=True)
    with pytest.raises(UserError, match="diverged"):
        fit(model, _toy_dataset(), tmp_path, steps=3, progress=False)


def test_training_options_are_checked():
    with pytest.raises(UserError, match="unknown training option"):
        training_options(_model(), {"learning_rate": "0.1"})
    with pytest.raises(UserError, match="not a valid float"):
        training_options(_model(), {"lr": "fast"})
    assert training_options(_model(), {"lr": "0.5"})["lr"] == 0.5
    with pytest.raises(UserError, match="keep must be best or last"):
        training_options(_model(), {"keep": "middle"})
