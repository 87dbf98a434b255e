"""The trainer's stages (issue 20 point 9) and its time-based validation schedule (issue 19).

* Ctrl-C leaves a checkpoint marked ``interrupted`` that ``resume`` clears and continues exactly;
* ``log.jsonl`` is closed however the run ends (a validation that raises, an interruption);
* a finite but absurd loss warns (:class:`TrainingDivergedWarning`) and is logged, during training
  and at the end (best validation loss 2.3e20), and a healthy run does not warn;
* ``valid_budget``: which epoch ends validate under a fake clock, worked out by hand from the rule
  of :mod:`probseq.train.validation_budget`; the seconds in ``log.jsonl`` and in ``probseq plot``.
"""

from __future__ import annotations

import json
import types
import warnings

import pytest
import torch

from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.evaluate.run_plots import plot_runs, read_training_log, time_label
from probseq.models.registry import build_model
from probseq.train.checkpoint import safe_load
from probseq.train.divergence import DivergenceWatch, TrainingDivergedWarning
from probseq.train.fit import fit, training_options
from probseq.train.validation_budget import ValidationTime, validation_fits

SPEC = DataSpec("binary", 4)


def _sequences(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        t = int(torch.randint(3, 9, (1,), generator=g))
        x = torch.zeros(t, 4)
        x[torch.arange(t), torch.arange(t) % 4] = 1.0
        out.append((x + torch.bernoulli(torch.full((t, 4), 0.05), generator=g)) % 2)
    return out


def _dataset():
    return Dataset("toy", SPEC, {"train": _sequences(24, 0), "valid": _sequences(6, 1), "test": _sequences(6, 2)})


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("gru", SPEC, {"hidden": 6})


def _events(run_dir, kind=None):
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [r for r in records if kind is None or r["event"] == kind]


# ------------------------------------------------------------------ interruption
def test_an_interrupted_run_is_checkpointed_as_interrupted_and_resume_continues_it_exactly(tmp_path):
    opts = {"lr": 0.02, "batch_size": 8, "checkpoint_every": 100, "eval_every": 4}
    straight = _model()
    fit(straight, _dataset(), tmp_path / "a", steps=15, options=opts, progress=False)

    crashing = _model()

    def ctrl_c(step, total):
        if step == 9:
            raise KeyboardInterrupt

    crashing.on_train_step = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        fit(crashing, _dataset(), tmp_path / "b", steps=15, options=opts, progress=False)
    ckpt = safe_load(tmp_path / "b" / "checkpoint.pt")
    assert ckpt["progress"]["stop_reason"] == "interrupted" and ckpt["progress"]["step"] == 9
    assert _events(tmp_path / "b")[-1]["event"] == "interrupted"

    summary = fit(_model(seed=7), _dataset(), tmp_path / "b", steps=15, options=opts, resume=True,
                  progress=False)
    assert summary.steps == 15 and summary.stop_reason == "steps"
    final = safe_load(tmp_path / "b" / "checkpoint.pt")
    assert final["progress"]["stop_reason"] is None
    reference = safe_load(tmp_path / "a" / "checkpoint.pt")["model"]
    for key, value in reference.items():
        torch.testing.assert_close(final["model"][key], value, rtol=0, atol=0)


# ------------------------------------------------------------------ the log is closed
@pytest.fixture
def opened_logs(monkeypatch):
    """Every file the trainer opens, so that a test can check they were closed."""
    import builtins

    files = []

    def recording_open(*args, **kwargs):
        f = builtins.open(*args, **kwargs)
        files.append(f)
        return f

    monkeypatch.setattr("probseq.train.trainer.open", recording_open, raising=False)
    return files


def test_the_log_is_closed_when_validation_raises(tmp_path, opened_logs):
    model = _model()
    model.validation_is_nll = False
    model.validation_loss = lambda batch: float("nan")
    with pytest.raises(UserError, match="validation loss became nan"):
        fit(model, _dataset(), tmp_path, steps=6, options={"batch_size": 8, "eval_every": 2}, progress=False)
    assert opened_logs and all(f.closed for f in opened_logs)
    assert _events(tmp_path)[-1] == {"step": 2, "event": "stop", "reason": "non-finite validation loss",
                                     "valid_loss": "nan"}


def test_the_log_is_closed_when_training_is_interrupted(tmp_path, opened_logs):
    model = _model()

    def ctrl_c(step, total):
        if step == 2:
            raise KeyboardInterrupt

    model.on_train_step = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        fit(model, _dataset(), tmp_path, steps=6, options={"batch_size": 8}, progress=False)
    assert opened_logs and all(f.closed for f in opened_logs)


# ------------------------------------------------------------------ divergence
def test_the_divergence_rule():
    watch = DivergenceWatch()
    assert not watch.diverged(60.0)                    # the first loss is the reference
    assert not watch.diverged(6e7) and watch.diverged(6.1e7)    # 60 + 1e6 * 60
    assert watch.diverged(-2e10)                       # absurd whatever the start
    near_zero = DivergenceWatch(reference=0.01)        # a CD surrogate starts near 0: scale 1 nat
    assert not near_zero.diverged(-5e5) and not near_zero.diverged(9e5) and near_zero.diverged(1.1e6)
    negative = DivergenceWatch(reference=-50.0)        # a Gaussian NLL can be negative
    assert not negative.diverged(4e7) and negative.diverged(5.1e7)
    assert DivergenceWatch(reference=1e20).diverged(1e20)      # absurd from the first step


def test_a_finite_but_absurd_training_loss_warns_once_and_is_logged(tmp_path):
    model = _model()
    real_loss = model.loss
    calls = {"n": 0}

    def exploding_loss(batch, generator=None):
        calls["n"] += 1
        loss = real_loss(batch, generator=generator)
        return loss * 1e12 if calls["n"] >= 4 else loss     # finite, but a trillion times too big

    model.loss = exploding_loss
    with pytest.warns(TrainingDivergedWarning, match="training diverged at step 4") as caught:
        summary = fit(model, _dataset(), tmp_path, steps=8, options={"batch_size": 8, "eval_every": 4},
                      progress=False)
    assert sum(issubclass(w.category, TrainingDivergedWarning) for w in caught) >= 1
    assert summary.steps == 8 and summary.diverged            # the run went on, and says so
    events = _events(tmp_path, "divergence")
    assert [e["step"] for e in events if "loss" in e] == [4]


def test_a_run_ending_with_an_absurd_best_validation_loss_does_not_end_in_silence(tmp_path):
    model = _model()
    model.validation_is_nll = False
    model.validation_loss = lambda batch: 2.3e20
    with pytest.warns(TrainingDivergedWarning, match="best validation loss is 2.3e\\+20"):
        summary = fit(model, _dataset(), tmp_path, steps=4, options={"batch_size": 8}, progress=False)
    assert summary.best_valid == pytest.approx(2.3e20) and summary.diverged
    assert _events(tmp_path, "divergence")[-1]["valid_loss"] == pytest.approx(2.3e20)


def test_a_healthy_run_does_not_warn(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrainingDivergedWarning)
        summary = fit(_model(), _dataset(), tmp_path, steps=6, options={"batch_size": 8}, progress=False)
    assert not summary.diverged and not _events(tmp_path, "divergence")


# ------------------------------------------------------------------ the validation budget
def test_validation_fits_its_share_of_the_run():
    spent = ValidationTime()
    assert validation_fits(0.1, spent, 0.0)              # the first validation: its cost is unknown
    spent.record(2.0)                                    # V = v = 2
    assert not validation_fits(0.1, spent, 37.0)         # 4 > 0.1 / 0.9 * 35
    assert validation_fits(0.1, spent, 38.0)             # 4 <= 0.1 / 0.9 * 36
    assert validation_fits(1.0, spent, 2.0)              # 1: every epoch end
    assert not validation_fits(0.0, spent, 1e9)          # 0: nothing after the first
    assert ValidationTime.from_dict(None) == ValidationTime()      # a checkpoint from before
    assert spent.split(10.0) == {"train_s": 8.0, "valid_s": 2.0}


def _clocked(monkeypatch, seed=0, crash_at=None):
    """A model whose training steps take 1 s and validations 1 s of a fake clock that only the fit
    loop sees; ``crash_at``: Ctrl-C before that step."""
    clock = {"t": 0.0, "validations": 0}
    monkeypatch.setattr("probseq.train.fit.time", types.SimpleNamespace(perf_counter=lambda: clock["t"]))
    model = _model(seed)
    real_loss = model.loss

    def timed_loss(batch, generator=None):
        clock["t"] += 1.0
        return real_loss(batch, generator=generator)

    def timed_validation(batch):
        clock["t"] += 1.0
        clock["validations"] += 1
        return 1.0 / (clock["validations"])               # always improving: no stop, no decay

    def ctrl_c(step, total):
        if step == crash_at:
            raise KeyboardInterrupt

    model.loss, model.validation_loss, model.validation_is_nll = timed_loss, timed_validation, False
    model.on_train_step = ctrl_c
    return model, clock


# batch 12 of 24 sequences: an epoch is 2 steps. With b = 0.2, b / (1 - b) = 1/4, and an epoch end
# validates when V + v <= (W - V) / 4, W - V being the steps so far: at 2 (the first), then
# 2 <= 8/4 at step 8, 3 <= 12/4 at 12, 4 <= 16/4 at 16; 20 is the last step
BUDGETED = {"batch_size": 12, "valid_budget": 0.2, "patience": 0, "log_every": 1}
EXPECTED = [2, 8, 12, 16, 20]


def test_epoch_end_validation_keeps_within_its_budget(tmp_path, monkeypatch):
    model, clock = _clocked(monkeypatch)
    summary = fit(model, _dataset(), tmp_path, steps=20, options=BUDGETED, progress=False)
    assert [e["step"] for e in _events(tmp_path, "valid")] == EXPECTED
    assert clock["validations"] == len(EXPECTED)           # one validation batch each
    end = _events(tmp_path, "end")[-1]
    assert (end["train_s"], end["valid_s"]) == (20.0, 5.0)   # 20 steps of 1 s, 5 validations of 1 s
    assert end["validations"] == 5 and end["valid_skipped"] == 5     # epoch ends 4, 6, 10, 14, 18
    assert (summary.train_s, summary.valid_s) == (20.0, 5.0)
    assert [(e["train_s"], e["valid_s"]) for e in _events(tmp_path, "valid")][:2] == [(2.0, 1.0), (8.0, 2.0)]


def test_a_budget_of_one_validates_every_epoch_and_eval_every_is_a_fixed_schedule(tmp_path, monkeypatch):
    model, _ = _clocked(monkeypatch)
    fit(model, _dataset(), tmp_path / "all", steps=10, options={**BUDGETED, "valid_budget": 1.0}, progress=False)
    assert [e["step"] for e in _events(tmp_path / "all", "valid")] == [2, 4, 6, 8, 10]
    model, _ = _clocked(monkeypatch)
    fit(model, _dataset(), tmp_path / "n", steps=10, options={**BUDGETED, "eval_every": 3}, progress=False)
    assert [e["step"] for e in _events(tmp_path / "n", "valid")] == [3, 6, 9, 10]


def test_a_resumed_run_keeps_counting_validation_time(tmp_path, monkeypatch):
    model, _ = _clocked(monkeypatch, crash_at=9)
    with pytest.raises(KeyboardInterrupt):
        fit(model, _dataset(), tmp_path, steps=20, options=BUDGETED, progress=False)
    assert safe_load(tmp_path / "checkpoint.pt")["validation_time"]["validations"] == 2
    model, _ = _clocked(monkeypatch, seed=3)
    summary = fit(model, _dataset(), tmp_path, steps=20, options=BUDGETED, resume=True, progress=False)
    assert sorted({e["step"] for e in _events(tmp_path, "valid")}) == EXPECTED
    assert (summary.train_s, summary.valid_s) == (20.0, 5.0)


def test_valid_budget_is_checked():
    with pytest.raises(UserError, match="valid_budget"):
        training_options(_model(), {"valid_budget": "1.5"})
    with pytest.raises(UserError, match="valid_budget"):
        training_options(_model(), {"valid_budget": "nan"})


def test_plot_shows_the_time_spent_training_and_validating(tmp_path, monkeypatch):
    model, _ = _clocked(monkeypatch)
    fit(model, _dataset(), tmp_path / "run", steps=20, options=BUDGETED, progress=False)
    log = read_training_log(tmp_path / "run")
    assert (log.train_s, log.valid_s) == (20.0, 5.0)
    assert time_label(log) == "train 20 s, valid 5 s (20%)"
    import matplotlib

    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")     # text as text, to read it back
    out = plot_runs(tmp_path / "curves.svg", [("gru", log)])
    assert "train 20 s, valid 5 s (20%)" in out.read_text()
