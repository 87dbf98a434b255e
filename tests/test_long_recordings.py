"""Long recordings: windows chosen by a frame budget, and truncated BPTT with carried state.

Oracles: the stream plan covers every frame once per epoch in order; on contiguous windows the
carried-state training loss equals the whole-sequence loss (the forward pass; the gradients differ
by truncation); a run resumed mid-stream repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from probseq.cli import main
from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model
from probseq.train.checkpoint import safe_load
from probseq.train.fit import fit, training_options
from probseq.train.streams import CarriedStates, StreamBatch, StreamPlan, choose_windows


def _sequences(lengths, dim=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t, dim, generator=g) for t in lengths]


@pytest.mark.parametrize("lengths, lanes, window", [([1000], 4, 64), ([37, 5, 120, 64, 9], 3, 16),
                                                    ([10, 10], 5, 3), ([50], 1, 50), ([7, 300], 2, 1)])
def test_streams_cover_every_frame_once_per_epoch_in_order(lengths, lanes, window):
    seqs = _sequences(lengths, dim=1)
    for epoch in range(3):
        plan = StreamPlan(seqs, seed=4, epoch=epoch, lanes=lanes, window=window)
        assert len(plan) == plan.steps * lanes
        seen = [torch.zeros(t, dtype=torch.long) for t in lengths]
        previous: dict[int, object] = {}
        for step in range(plan.steps):
            windows = plan.windows_at(step)
            assert [w.lane for w in windows] == sorted({w.lane for w in windows})   # one per lane, in order
            for w in windows:
                p = w.piece
                assert 0 < p.stop - p.start <= window
                seen[p.index][p.start:p.stop] += 1
                if not w.fresh:          # continues the lane's previous window exactly
                    before = previous[w.lane]
                    assert before.carries and before.piece.index == p.index and before.piece.stop == p.start
                if w.carries:            # only full windows pass their state on
                    assert p.stop - p.start == window
                previous[w.lane] = w
        assert all(bool((s == 1).all()) for s in seen)   # every frame exactly once
    again = StreamPlan(seqs, seed=4, epoch=2, lanes=lanes, window=window)
    assert again.lanes == plan.lanes                     # a pure function of (seed, epoch)


def test_one_long_sequence_is_split_into_balanced_streams():
    plan = StreamPlan(_sequences([1000], dim=1), seed=0, epoch=0, lanes=4, window=100)
    loads = [sum(w.piece.stop - w.piece.start for w in lane) for lane in plan.lanes]
    assert loads == [250] * 4 and plan.steps == 3
    assert [w.fresh for w in plan.lanes[0]] == [True, False, False]


def test_transposition_is_one_shift_per_sequence_and_epoch():
    roll = torch.zeros(90, 12)
    roll[:, 5] = 1
    plan = StreamPlan([roll], seed=1, epoch=0, lanes=3, window=10, transpose=3)
    shifts = {w.piece.shift for lane in plan.lanes for w in lane}
    assert len(shifts) == 1


def _carried_loss_mean(model, seqs, lanes, window):
    """The frame-weighted mean of the carried-state window losses over one epoch."""
    plan = StreamPlan(seqs, seed=0, epoch=0, lanes=lanes, window=window)
    carried, total, frames = CarriedStates(), 0.0, 0
    for step in range(plan.steps):
        windows = plan.windows_at(step)
        batch = model.collate([plan.materialise(w.piece) for w in windows])
        loss = carried.loss(model, StreamBatch(batch, windows))
        total += float(loss.detach()) * batch.n_frames
        frames += batch.n_frames
    assert frames == sum(len(s) for s in seqs)
    return total / frames


@pytest.mark.parametrize("name, kind", [("gru", "real"), ("lstm", "real"), ("rnn-nade", "binary")])
def test_carried_windows_give_the_whole_sequence_loss(name, kind):
    torch.manual_seed(0)
    hyper = {"hidden": 5}
    if name == "rnn-nade":
        hyper.update(nade_hidden=4, input_dropout=0.0, output_dropout=0.0, weight_drop=0.0)
    model = build_model(name, DataSpec(kind, 3), hyper).double().eval()
    seqs = [s.double() for s in _sequences([30, 30])]
    if kind == "binary":
        seqs = [(s > 0).double() for s in seqs]
    with torch.no_grad():
        whole = float(model.loss(model.collate(seqs)))
    for window in (1, 7, 30):               # two lanes, no sequence cut: contiguous windows
        assert _carried_loss_mean(model, seqs, 2, window) == pytest.approx(whole, rel=1e-12, abs=1e-12)
    # starting every window afresh is a different objective (the oracle can fail)
    fresh = [w for s in seqs for w in s.split(7)]
    with torch.no_grad():
        assert float(model.loss(model.collate(fresh))) != pytest.approx(whole, rel=1e-6)


def test_gradients_are_truncated_at_window_borders():
    torch.manual_seed(0)
    model = build_model("gru", DataSpec("real", 2), {"hidden": 4}).double()
    seq = _sequences([12], dim=2)[0].double()
    plan = StreamPlan([seq], seed=0, epoch=0, lanes=1, window=6)
    carried = CarriedStates()
    first = plan.windows_at(0)
    carried.loss(model, StreamBatch(model.collate([plan.materialise(w.piece) for w in first]), first))
    state = carried.by_lane[0]
    assert not state.output.requires_grad and not state.hidden.requires_grad


def _long_dataset():
    return Dataset("toy", DataSpec("real", 3), {"train": _sequences([400, 90, 250], seed=2)})


def _gru(seed=0):
    torch.manual_seed(seed)
    return build_model("gru", DataSpec("real", 3), {"hidden": 6})


def test_a_run_resumed_mid_stream_repeats_an_uninterrupted_one(tmp_path):
    opts = {"batch_size": 2, "train_frames": 100, "checkpoint_every": 100, "keep": "last"}
    straight = _gru()
    fit(straight, _long_dataset(), tmp_path / "a", steps=9, options=opts, progress=False)

    crashing = _gru()

    def ctrl_c(step, total):
        if step == 4:
            raise KeyboardInterrupt

    crashing.on_train_step = ctrl_c
    with pytest.raises(KeyboardInterrupt):
        fit(crashing, _long_dataset(), tmp_path / "b", steps=9, options=opts, progress=False)
    ckpt = safe_load(tmp_path / "b" / "checkpoint.pt")
    assert ckpt["progress"]["position"] % 2 == 0 and ckpt["carried"]      # mid-epoch, states carried
    fit(_gru(seed=7), _long_dataset(), tmp_path / "b", steps=9,
        options=opts, resume=True, progress=False)
    final = safe_load(tmp_path / "b" / "checkpoint.pt")["model"]
    for key, value in safe_load(tmp_path / "a" / "checkpoint.pt")["model"].items():
        torch.testing.assert_close(final[key], value, rtol=0, atol=0)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "windows" and "carried" in e["message"] for e in log)


def _choice(name, hyper=None, **options):
    model = build_model(name, DataSpec("real", 3), hyper or {})
    opts = training_options(model, options)
    return choose_windows(model, opts, _long_dataset().split("train"), batch_size=int(opts["batch_size"]))


def test_auto_windows_only_when_batch_times_longest_exceeds_the_budget():
    assert _choice("gru").chunk == 0 and _choice("gru").notice is None        # 32 x 400 < 32,768
    choice = _choice("gru", batch_size=4, train_frames=1000)
    assert (choice.chunk, choice.carry) == (250, True) and "carried" in choice.notice
    explicit = _choice("gru", train_chunk=100)            # a recipe's or user's windows: afresh
    assert (explicit.chunk, explicit.carry) == (100, False) and "carry_state=true" in explicit.notice
    assert _choice("gru", train_chunk=100, carry_state="true").carry
    recipe = _choice("gru", train_chunk=100, batch_size=4, train_frames=1000)   # a long recording
    assert (recipe.chunk, recipe.carry) == (100, True)
    assert not _choice("gru", train_chunk=100, batch_size=4, train_frames=1000, carry_state=False).carry


def test_models_that_cannot_carry_say_so_in_one_line():
    trbm = _choice("trbm", {"hidden": 4}, batch_size=4, train_frames=1000)
    assert trbm.chunk == 250 and not trbm.carry and "stochastic" in trbm.notice
    halting = _choice("gru", {"length": "halting"}, batch_size=4, train_frames=1000)
    assert not halting.carry and "length=halting" in halting.notice
    with pytest.raises(UserError, match="carry_state=true cannot be used here: trbm"):
        _choice("trbm", {"hidden": 4}, batch_size=4, train_chunk=50, carry_state=True)
    with pytest.raises(UserError, match="set train_chunk"):
        _choice("gru", train_chunk=0, carry_state=True)
    with pytest.raises(UserError, match="train_chunk must be auto"):
        _choice("gru", train_chunk="long")


def test_the_cli_says_when_it_trains_on_windows(tmp_path, capsys):
    data = tmp_path / "long.npz"
    np.savez(data, take=np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32))
    run = tmp_path / "run"
    assert main(["fit", "gru", "--data", "arrays", "--data-file", str(data), "--steps", "2", "--threads", "1",
                 "--set", "hidden=4", "--set", "batch_size=2", "--set", "train_frames=400",
                 "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "training on windows of 200 frames" in err and "carried" in err


@pytest.mark.parametrize("name, hyper", [("mrnn", {"hidden": 4}),
                                         ("rnn-rbm", {"hidden": 4, "rbm_hidden": 3, "cd_steps": 1}),
                                         ("rtrbm", {"hidden": 3, "cd_steps": 1})])
def test_every_carrying_family_trains_carried_windows(tmp_path, name, hyper):
    g = torch.Generator().manual_seed(0)
    seqs = [(torch.rand(t, 4, generator=g) < 0.3).float() for t in (120, 40)]
    data = Dataset("toy", DataSpec("binary", 4), {"train": seqs})
    torch.manual_seed(0)
    model = build_model(name, DataSpec("binary", 4), hyper)
    summary = fit(model, data, tmp_path, steps=4, progress=False,
                  options={"batch_size": 2, "train_frames": 100, "keep": "last"})
    assert summary.steps == 4
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "windows" and "carried" in e["message"] for e in log)


def test_the_rtrbm_state_after_a_window_is_the_whole_sequence_state():
    torch.manual_seed(0)
    model = build_model("rtrbm", DataSpec("binary", 4), {"hidden": 3}).double()
    x = (torch.rand(1, 20, 4) < 0.4).double()
    c_full, _ = model.hidden_biases(x)
    batch = model.collate([x[0, :8]])
    from probseq.data.window import TimeWindow

    _, after = model.window_loss(TimeWindow(batch, 0, batch.lengths), model.window_state(batch))
    torch.testing.assert_close(after.bias, c_full[:, 8])


@pytest.mark.parametrize("name, kind", [("lstm", "real"), ("rtrbm", "binary")])
def test_carried_states_go_through_a_weights_only_checkpoint(tmp_path, name, kind):
    torch.manual_seed(0)
    model = build_model(name, DataSpec(kind, 3), {"hidden": 4})
    seqs = [(torch.rand(30, 3) < 0.5).float()]
    plan = StreamPlan(seqs, seed=0, epoch=0, lanes=1, window=10)
    carried = CarriedStates()
    windows = plan.windows_at(0)
    carried.loss(model, StreamBatch(model.collate([plan.materialise(w.piece) for w in windows]), windows))
    torch.save(carried.state_dict(), tmp_path / "c.pt")
    restored = CarriedStates()
    with torch.no_grad():
        template = model.window_state(model.collate([seqs[0][:1]]))
    restored.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True), template)
    a, b = carried.by_lane[0], restored.by_lane[0]
    assert type(a) is type(b)
    for x, y in zip(state_tensors(a), state_tensors(b)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def state_tensors(state):
    """The tensors of a window state, in field order (tuples flattened)."""
    out = []
    for value in vars(state).values():
        out.extend(value if isinstance(value, tuple) else [value] if isinstance(value, torch.Tensor) else [])
    return out
