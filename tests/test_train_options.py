"""Trainer options: plateau decay, the lr floor, time budgets, windows, transposition, fresh data,
training until validation stops improving, and exact resumption with all of them on."""

from __future__ import annotations

import json
import math

import pytest
import torch

from probseq.data.registry import Dataset, load_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model
from probseq.train.checkpoint import safe_load
from probseq.train.data_order import EpochPlan, transposition_range
from probseq.train.fit import NOMINAL_EPOCHS, fit
from probseq.train.schedules import PlateauState, step_factor

SPEC = DataSpec("binary", 6)


def _rolls(n, seed, lo=5, hi=30):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        t = int(torch.randint(lo, hi, (1,), generator=g))
        x = torch.zeros(t, 6)
        x[torch.arange(t), (torch.arange(t) % 3) + 1] = 1.0     # keys 1..3 only: room to transpose
        out.append(x)
    return out


def _dataset(media="pianoroll"):
    return Dataset("toy", SPEC, {"train": _rolls(24, 0), "valid": _rolls(6, 1), "test": _rolls(6, 2)},
                   meta={"media": media})


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("gru", SPEC, {"hidden": 6})


def _scored_by(model, score):
    """Make ``model`` validate by ``score(batch)`` instead of its NLL."""
    model.validation_is_nll = False
    model.validation_loss = score
    return model


def _events(run_dir, kind):
    return [e for e in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
            if e["event"] == kind]


# ------------------------------------------------------------------ schedules
def test_plateau_state_decays_after_decay_patience_stalls_and_resets_on_improvement():
    p = PlateauState()
    assert p.update(1.0, 1, min_delta=0.0, decay_patience=2)
    assert not p.update(1.0, 2, min_delta=0.0, decay_patience=2) and p.decays == 0
    assert not p.update(1.5, 3, min_delta=0.0, decay_patience=2) and p.decays == 1
    assert p.scale(0.5) == 0.5
    assert p.update(0.9, 4, min_delta=0.0, decay_patience=2)
    assert (p.bad_evals, p.bad_since_decay, p.decays, p.best_step) == (0, 0, 1, 4)
    assert not p.update(0.85, 5, min_delta=0.1, decay_patience=2)     # not better by min_delta


def test_stop_rules():
    p = PlateauState(bad_evals=3)
    assert p.should_stop(patience=3, lr=1.0, lr_decay=0.5, min_lr=0.0) == "patience"
    assert p.should_stop(patience=0, lr=1.0, lr_decay=0.5, min_lr=0.0) is None
    p = PlateauState(decays=6)
    assert p.should_stop(patience=0, lr=1.0, lr_decay=0.5, min_lr=0.0) is None     # at the floor
    p.decays = 7
    assert p.should_stop(patience=0, lr=1.0, lr_decay=0.5, min_lr=0.0) == "lr_floor"
    assert PlateauState(decays=2).should_stop(patience=0, lr=1.0, lr_decay=0.5, min_lr=0.3) == "lr_floor"


def test_linear_step_factor_reaches_zero_at_the_last_step():
    assert step_factor("linear", 0, 10) == 1.0 and step_factor("linear", 10, 10) == 0.0
    assert step_factor("linear", 5, 10) == pytest.approx(0.5)
    assert step_factor("constant", 7, None) == 1.0


# ------------------------------------------------------------------ the fit loop
def test_plateau_decay_halves_the_learning_rate_when_validation_stalls(tmp_path):
    model = _scored_by(_model(), lambda batch: 1.0)        # never improves after the first
    summary = fit(model, _dataset(), tmp_path, steps=100, progress=False,
                  options={"lr": 0.01, "batch_size": 4, "eval_every": 1, "decay_patience": 2,
                           "patience": 0, "log_every": 1})
    lrs = {e["step"]: e["lr"] for e in _events(tmp_path, "train")}
    # validation after every step; the first sets the best, stalls after steps 2, 3 -> halve
    assert lrs[3] == pytest.approx(0.01) and lrs[4] == pytest.approx(0.005)
    assert lrs[5] == pytest.approx(0.005) and lrs[6] == pytest.approx(0.0025)
    assert [e["step"] for e in _events(tmp_path, "lr_decay")][:2] == [3, 5]
    assert summary.stop_reason == "lr_floor"               # the 7th halving goes below lr / 64
    assert summary.steps == 1 + 2 * 7 and summary.final_lr == pytest.approx(0.01 / 64)


def test_without_steps_training_runs_until_validation_stops_improving(tmp_path):
    scores = iter([3.0, 2.0, 1.0] + [1.5] * 100)
    model = _scored_by(_model(), lambda batch: next(scores))
    summary = fit(model, _dataset(), tmp_path, progress=False,
                  options={"batch_size": 8, "eval_every": 1, "patience": 4, "decay_patience": 0})
    assert summary.stop_reason == "patience" and summary.stopped_early   # one validation batch
    assert summary.best_step == 3 and summary.steps == 7


def test_linear_schedule_without_steps_trains_for_the_nominal_epochs(tmp_path):
    summary = fit(_model(), _dataset(), tmp_path, progress=False,
                  options={"batch_size": 12, "lr_schedule": "linear", "patience": 0})
    assert summary.steps == NOMINAL_EPOCHS * 2 and summary.stop_reason == "steps"


def test_a_minutes_budget_stops_training_and_validates_once_more(tmp_path, monkeypatch):
    import types

    clock = {"t": 0.0}
    # a clock of the fit loop's own: only probseq.train.fit sees it (time.perf_counter stays real)
    monkeypatch.setattr("probseq.train.fit.time", types.SimpleNamespace(perf_counter=lambda: clock["t"]))

    def clocked_model(seed):
        model = _model(seed)
        real_loss = model.loss

        def slow_loss(batch, generator=None):
            clock["t"] += 6.0                              # every step takes 6 "seconds"
            return real_loss(batch, generator=generator)

        model.loss = slow_loss
        return model

    opts = {"batch_size": 4, "eval_every": 100}
    summary = fit(clocked_model(0), _dataset(), tmp_path, minutes=1.0, progress=False, options=opts)
    assert summary.stop_reason == "minutes" and summary.steps == 10
    assert [e["step"] for e in _events(tmp_path, "valid")] == [10]     # the budget validates once more
    ckpt = safe_load(tmp_path / "checkpoint.pt")
    assert ckpt["progress"]["elapsed_s"] == pytest.approx(60.0)
    # resuming with the same budget does nothing; a larger one continues, counting the time spent
    again = fit(clocked_model(1), _dataset(), tmp_path, minutes=1.0, resume=True, progress=False,
                options=opts)
    assert again.steps == 10
    more = fit(clocked_model(1), _dataset(), tmp_path, minutes=2.0, resume=True, progress=False,
               options=opts)
    assert more.steps == 20 and more.stop_reason == "minutes"


def test_resume_after_a_kill_continues_identically_with_every_option_on(tmp_path):
    opts = {"lr": 0.02, "batch_size": 4, "checkpoint_every": 3, "eval_every": 2, "train_chunk": 7,
            "transpose": 2, "decay_patience": 2, "patience": 0}
    stalled = lambda batch: 1.0                            # noqa: E731  (so the rate decays)
    straight = _scored_by(_model(), stalled)
    sa = fit(straight, _dataset(), tmp_path / "a", steps=30, options=opts, progress=False)

    crashing = _scored_by(_model(), stalled)

    def crash(step, total):
        if step == 16:
            raise KeyboardInterrupt

    crashing.on_train_step = crash
    with pytest.raises(KeyboardInterrupt):
        fit(crashing, _dataset(), tmp_path / "b", steps=30, options=opts, progress=False)
    sb = fit(_scored_by(_model(seed=5), stalled), _dataset(), tmp_path / "b", steps=30, options=opts,
             resume=True, progress=False)
    a = safe_load(tmp_path / "a" / "checkpoint.pt")
    b = safe_load(tmp_path / "b" / "checkpoint.pt")
    for key in a["model"]:
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=0, atol=0)
    pa, pb = dict(a["progress"]), dict(b["progress"])
    pa.pop("elapsed_s"), pb.pop("elapsed_s")
    assert pa == pb and pa["plateau"]["decays"] > 0        # the plateau state came back too
    assert sa.final_lr == sb.final_lr and sa.best_valid == sb.best_valid


# ------------------------------------------------------------------ what each step trains on
def test_windows_have_the_right_length_cover_each_sequence_and_move_between_epochs():
    seqs = [torch.randn(t, 3) for t in (5, 23, 40, 9)]
    plans = [EpochPlan(seqs, seed=0, epoch=e, train_chunk=9) for e in range(4)]
    for plan in plans:
        pieces = sorted(plan.pieces, key=lambda p: (p.index, p.start))
        for i, s in enumerate(seqs):
            mine = [p for p in pieces if p.index == i]
            assert torch.equal(torch.cat([plan.materialise(p) for p in mine]), s)   # exact cover
            assert all(len(plan.materialise(p)) <= 9 for p in mine)
            inner = [p for p in mine if p.start > 0 and p.stop < len(s)]
            assert all(p.stop - p.start == 9 for p in inner)
    offsets = {min(p.stop for p in plan.pieces if p.index == 2) for plan in plans}
    assert len(offsets) > 1, "the window borders never moved"
    assert EpochPlan(seqs, seed=0, epoch=1, train_chunk=9).pieces == plans[1].pieces   # repeatable


def test_shards_partition_the_epoch():
    plan = EpochPlan([torch.zeros(t, 2) for t in range(3, 20)], seed=3, epoch=0, train_chunk=4)
    shards = [plan.shard(r, 3) for r in range(3)]
    assert sorted(sum(shards, []), key=repr) == sorted(plan.pieces, key=repr)


def test_transposition_keeps_notes_on_the_keyboard_and_is_a_pure_shift():
    x = torch.zeros(4, 10)
    x[0, 1] = x[1, 7] = x[3, 4] = 1
    assert transposition_range(x, 5) == (-1, 2)
    seqs = [x.clone() for _ in range(200)]
    plan = EpochPlan(seqs, seed=0, epoch=0, transpose=5)
    shifts = {p.shift for p in plan.pieces}
    assert shifts == {-1, 0, 1, 2}                          # every allowed shift, nothing else
    for p in plan.pieces[:20]:
        y = plan.materialise(p)
        assert y.sum() == x.sum() and torch.equal(y, torch.roll(x, p.shift, dims=1))


def test_fit_trains_on_transposed_windows(tmp_path):
    model = _model()
    seen = []
    real_loss = model.loss

    def recording_loss(batch, generator=None):
        seen.append(batch)
        return real_loss(batch, generator=generator)

    model.loss = recording_loss
    fit(model, _dataset(), tmp_path, steps=12, progress=False,
        options={"batch_size": 4, "train_chunk": 6, "transpose": 2})
    assert max(int(b.lengths.max()) for b in seen) <= 6
    used_keys = torch.cat([b.values[b.mask] for b in seen]).any(0)
    assert used_keys[0] or used_keys[4] or used_keys[5], "no piece was transposed"


def test_option_dataset_mismatches_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not a piano roll"):
        fit(_model(), _dataset(media="video"), tmp_path, steps=1, options={"transpose": 2}, progress=False)
    with pytest.raises(UserError, match="no generator"):
        fit(_model(), _dataset(), tmp_path, steps=1, options={"fresh": True}, progress=False)
    with pytest.raises(UserError, match="lr_decay"):
        fit(_model(), _dataset(), tmp_path, steps=1, options={"lr_decay": 2.0}, progress=False)


def test_fresh_bouncing_balls_are_new_on_every_step_and_repeatable(tmp_path):
    data = load_dataset("bouncing-balls", n_train=2, n_valid=2, n_test=1, n_frames=4, size=6)
    a, b = data.fresh(2, 11), data.fresh(2, 11)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(data.fresh(2, 12)[0], a[0])
    assert a[0].shape == data.split("train")[0].shape
    model = build_model("gru", data.spec, {"hidden": 4})
    seen = []
    real_loss = model.loss
    model.loss = lambda batch, generator=None: seen.append(batch.values.clone()) or real_loss(batch)
    fit(model, data, tmp_path, steps=3, progress=False, options={"batch_size": 2, "fresh": True})
    train = torch.stack(data.split("train"))
    for values in seen:
        assert not any(torch.equal(v, t) for v in values for t in train)
    assert not torch.equal(seen[0], seen[1]) and not math.isnan(float(seen[2].sum()))


def test_a_fixed_length_linear_recipe_is_never_stopped_early(tmp_path):
    model = _scored_by(_model(), lambda batch: 1.0)        # validation never improves
    summary = fit(model, _dataset(), tmp_path, steps=12, progress=False,
                  options={"batch_size": 4, "eval_every": 1, "patience": 2, "decay_patience": 1,
                           "lr_schedule": "linear", "lr": 0.01, "log_every": 1})
    assert summary.steps == 12 and summary.stop_reason == "steps" and not _events(tmp_path, "lr_decay")
    lrs = [e["lr"] for e in _events(tmp_path, "train")]
    assert lrs == pytest.approx([0.01 * (1 - s / 12) for s in range(12)])


def test_cli_minutes_budget_is_recorded_and_resume_takes_a_new_budget(tmp_path, capsys, one_thread):
    from probseq.cli import main

    out = tmp_path / "run"
    assert main(["fit", "gru", "--data", "jsb", "--minutes", "0.0001", "--set", "hidden=4",
                 "--out", str(out), "--quiet"]) == 0
    assert "time budget spent" in capsys.readouterr().out
    info = json.loads((out / "run.json").read_text())
    assert info["minutes"] == 0.0001 and info["steps"] is None and info["epochs"] is None
    progress = safe_load(out / "checkpoint.pt")["progress"]
    first, spent = progress["step"], progress["elapsed_s"]
    assert main(["fit", "gru", "--data", "jsb", "--resume", "--minutes", str(spent / 60 + 0.0001),
                 "--out", str(out), "--quiet"]) == 0
    assert safe_load(out / "checkpoint.pt")["progress"]["step"] > first
    assert main(["fit", "gru", "--data", "jsb", "--minutes", "-1", "--out", str(tmp_path / "bad"),
                 "--quiet"]) == 2
