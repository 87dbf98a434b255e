"""Long recordings: training windows chosen by a frame budget, and truncated BPTT with carried state.

A recurrent model trained on a whole 100,000-frame recording keeps every step's activations for
the backward pass, so memory grows with ``batch x longest sequence`` (a GRU: about 24 KB per frame,
so ~2.4 GB for one such sequence; RNN-NADE: ~70 KB per frame). Two options bound it:

``train_chunk = auto`` (the trainer's default; a model's recipe may fix a number instead)
    When ``batch_size x longest training sequence`` exceeds ``train_frames`` (default
    :data:`TRAIN_FRAME_BUDGET`), training uses windows of ``L = train_frames // batch_size``
    frames; otherwise whole sequences, as before. The trainer prints one line saying so.

``carry_state = auto | true | false``
    With windows, consecutive windows of the same sequence are trained **in order**, the detached
    final state of window ``k`` being the initial state of window ``k + 1``: truncated
    backpropagation through time (Williams & Peng 1990; Sutskever 2013, §2.5.5), as language
    models are trained (Zaremba et al. 2014). The forward pass then sees the whole past of every
    frame; only the gradient is cut at window borders. ``auto`` carries on a long recording
    (``batch_size x longest > train_frames``, whether the windows come from ``train_chunk=auto`` or
    from a recipe's ``train_chunk``, such as RNN-NADE's 200) when the model can carry its state;
    ``true`` carries whenever there are windows, and refuses a model that cannot. Without
    carrying, each window is a sequence of its own starting from the model's initial state, in
    random order (:mod:`~probseq.train.data_order`), as before: the recipes' windows on the
    Boulanger-Lewandowski piano rolls (pieces of at most ~4,300 frames) are unchanged.

Which models carry: those with :attr:`~probseq.models.base.SequenceModel.carries_training_state`
(the recurrent backbones ``rnn``, ``gru``, ``lstm``, ``mrnn``, ``rnn-nade``, ``rnn-rbm``, and
``rtrbm``), with ``length=none`` and teacher forcing. ``trbm`` (stochastic hidden taps), ``vrnn``,
``vhred`` and models with a length model train windows afresh, and the trainer says so.

The data order of carried training (:class:`StreamPlan`) is ``B = batch_size`` parallel
**streams** (lanes). Each epoch, the training sequences are shuffled; a sequence longer than the
lane length ``max(L, ceil(N / B))`` (``N`` frames in all) is cut into near-equal contiguous
*segments*, each of which starts from the model's initial state (the price of running one long
recording as ``B`` parallel streams); segments go, in random order, to the least-loaded lane.
Step ``s`` of the epoch trains on window ``s`` of every lane that still has one: each lane walks
its segments window by window (``L`` frames; the last window of a segment may be shorter and
never carries its state on). So every frame is trained on exactly once per epoch, in order within
its segment. The plan is a pure function of ``(seed, epoch)``; the carried states are saved in
the checkpoint, so ``--resume`` continues exactly (a checkpoint without them, written by a run
that did not carry, restarts its streams' next windows from the initial state).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Sequence

import torch

from probseq.data.window import TimeWindow
from probseq.errors import UserError
from probseq.train.data_order import Piece, derived_generator, transpose_keys, transposition_range

__all__ = ["TRAIN_FRAME_BUDGET", "WindowChoice", "choose_windows", "StreamWindow", "StreamPlan",
           "StreamBatch", "CarriedStates"]

_STREAMS = 2   # salt of the stream plan's seed stream (data_order uses 0 and 1)

#: frames (``batch_size x window``) one training step may hold under ``train_chunk=auto``:
#: measured peak resident memory of one step (CPU, float32): GRU 128 (D = 50) ~24 KB per frame,
#: RNN-NADE recipe (D = 88) ~70 KB per frame, so 32,768 frames are ~0.8 GB and ~2.3 GB
#: (benchmarks/RESULTS.md, "Long recordings")
TRAIN_FRAME_BUDGET = 32768


@dataclass(frozen=True)
class WindowChoice:
    """What the trainer trains on: windows of ``chunk`` frames (0: whole sequences), carried or not."""

    chunk: int
    carry: bool
    #: one line for the user (printed and logged) when windows are used, else ``None``
    notice: str | None = None


def _frame_lengths(examples: Sequence[Any]) -> list[int] | None:
    if not all(isinstance(e, torch.Tensor) and e.dim() == 2 for e in examples):
        return None
    return [int(e.shape[0]) for e in examples]


def choose_windows(model, opts: dict[str, Any], examples: Sequence[Any], *, batch_size: int,
                   distributed: bool = False) -> WindowChoice:
    """Resolve ``train_chunk`` (``auto`` or a number) and ``carry_state`` for this model and data.

    Raises:
        UserError: ``carry_state=true`` for a model or set-up that cannot carry (one sentence why).
    """
    chunk_opt, carry_opt = opts["train_chunk"], opts["carry_state"]
    budget = int(opts["train_frames"])
    lengths = _frame_lengths(examples) if not opts["fresh"] else None
    longest = max(lengths, default=0) if lengths else 0
    auto = chunk_opt == "auto"
    long = bool(lengths) and batch_size * longest > budget      # a long recording
    if auto:
        chunk = max(1, budget // batch_size) if long else 0
    else:
        chunk = int(chunk_opt)
    if chunk == 0 or longest <= chunk:
        if carry_opt is True and chunk == 0 and not auto:
            raise UserError("carry_state=true carries the state between training windows; set train_chunk "
                            "to a window length (or auto)")
        return WindowChoice(chunk, False)
    problem = model.carry_problem()
    if problem is None and distributed:
        problem = "carried training runs in one process (start it without torchrun)"
    if problem is None and opts["optimizer"] not in ("adam", "sgd"):
        problem = f"optimizer {opts['optimizer']} evaluates each batch several times"
    if problem is None and any(bool(torch.isnan(e).any()) for e in examples if e.is_floating_point()):
        problem = "the training data has missing values, which are trained on whole windows afresh"
    carry = (long if carry_opt == "auto" else bool(carry_opt)) and problem is None
    if carry_opt is True and problem is not None:
        raise UserError(f"carry_state=true cannot be used here: {problem}")
    why = (f"train_chunk=auto: batch {batch_size} x window <= train_frames={budget}" if auto
           else f"train_chunk={chunk}")
    if carry:
        how = "the recurrent state carried from each window to the next (truncated BPTT)"
    elif problem is None:
        how = "each window starting from the model's initial state (carry_state=true carries the state)"
    else:
        how = f"each window starting from the model's initial state: {problem}"
    notice = (f"the longest training sequence has {longest:,} frames: training on windows of {chunk:,} "
              f"frames ({why}), {how}")
    return WindowChoice(chunk, carry, notice)


@dataclass(frozen=True)
class StreamWindow:
    """Window ``piece`` of lane ``lane``; ``fresh``: it starts a segment (the model's initial
    state); ``carries``: the lane's next window continues the same segment from this one's state."""

    lane: int
    piece: Piece
    fresh: bool
    carries: bool


class StreamPlan:
    """The carried-state data order of one epoch (see the module docstring).

    ``len(plan)`` is ``steps x lanes`` (the trainer counts its position in examples, ``lanes`` per
    step); :meth:`windows_at` gives step ``s``'s windows, one per lane that has one, in lane order.
    """

    def __init__(self, examples: Sequence[Any], *, seed: int, epoch: int, lanes: int, window: int,
                 transpose: int = 0) -> None:
        if lanes < 1 or window < 1:
            raise UserError("carried training needs a positive batch size and window length")
        self.examples, self.lanes_count, self.window = examples, lanes, window
        gen = derived_generator(seed, epoch, _STREAMS)
        lengths = [len(e) for e in examples]
        lane_length = max(window, math.ceil(sum(lengths) / lanes))
        segments: list[Piece] = []
        for i in torch.randperm(len(examples), generator=gen).tolist():
            shift = 0
            if transpose:
                lo, hi = transposition_range(examples[i], transpose)
                shift = int(torch.randint(lo, hi + 1, (), generator=gen))
            parts = math.ceil(lengths[i] / lane_length)
            bounds = [round(k * lengths[i] / parts) for k in range(parts + 1)]
            segments.extend(Piece(i, a, b, shift) for a, b in zip(bounds[:-1], bounds[1:]) if b > a)
        loads = [0] * lanes
        self.lanes: list[list[StreamWindow]] = [[] for _ in range(lanes)]
        for seg in segments:
            lane = min(range(lanes), key=lambda k: (loads[k], k))
            loads[lane] += seg.stop - seg.start
            for a in range(seg.start, seg.stop, window):
                b = min(a + window, seg.stop)
                self.lanes[lane].append(StreamWindow(lane, Piece(seg.index, a, b, seg.shift),
                                                     fresh=a == seg.start, carries=b < seg.stop))
        self.steps = max((len(w) for w in self.lanes), default=0)

    def __len__(self) -> int:
        return self.steps * self.lanes_count

    def windows_at(self, step: int) -> list[StreamWindow]:
        """The windows of step ``step`` of the epoch, one per lane that still has one."""
        return [lane[step] for lane in self.lanes if step < len(lane)]

    def materialise(self, piece: Piece) -> torch.Tensor:
        return transpose_keys(self.examples[piece.index][piece.start:piece.stop], piece.shift)


@dataclass
class StreamBatch:
    """A collated batch of stream windows (row ``i`` is ``windows[i]``)."""

    batch: Any
    windows: list[StreamWindow]


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detach(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{k: _detach(v) for k, v in _fields(value).items()})
    return value


def _fields(state: Any) -> dict[str, Any]:
    if not is_dataclass(state):
        raise TypeError(f"a carried window state must be a dataclass, got {type(state).__name__}")
    return {f.name: getattr(state, f.name) for f in fields(state)}


class CarriedStates:
    """The detached state each lane carries into its next window (truncated BPTT).

    :meth:`loss` builds the batch's initial state (the model's fresh state for rows that start a
    segment, the carried one for the others), computes :meth:`~probseq.models.base.SequenceModel.window_loss`
    and keeps, detached, the final state of every row whose lane continues its segment.
    """

    def __init__(self) -> None:
        self.by_lane: dict[int, Any] = {}

    def loss(self, model, stream: StreamBatch, *, generator: torch.Generator | None = None) -> torch.Tensor:
        batch, windows = stream.batch, stream.windows
        fresh = model.window_state(batch)
        rows = []
        for i, w in enumerate(windows):
            if not w.fresh and w.lane in self.by_lane:
                rows.append(self.by_lane[w.lane])
            else:   # a segment's start (or a checkpoint written without carried states)
                rows.append(model.window_state_rows(fresh, torch.tensor([i], device=batch.lengths.device)))
        state = model.join_window_states(rows)
        loss, after = model.window_loss(TimeWindow(batch, 0, batch.lengths), state, generator=generator)
        width = batch.max_length
        self.by_lane = {}
        for i, w in enumerate(windows):
            if w.carries:
                if int(batch.lengths[i]) != width:
                    raise RuntimeError("a window that carries its state must be the batch's widest")
                self.by_lane[w.lane] = _detach(model.window_state_rows(
                    after, torch.tensor([i], device=batch.lengths.device)))
        return loss

    def state_dict(self) -> dict[str, Any]:
        """Plain tensors and numbers (checkpoints load with ``weights_only=True``)."""
        return {lane: _fields(state) for lane, state in self.by_lane.items()}

    def load_state_dict(self, saved: dict[Any, Any], template: Any) -> None:
        """Restore from :meth:`state_dict`; ``template``: a window state of the model (its class
        and device; checkpoints are read onto the CPU)."""
        device = next((v.device for v in _fields(template).values() if isinstance(v, torch.Tensor)), None)

        def to_device(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                return value.to(device) if device is not None else value
            if isinstance(value, (tuple, list)):
                return type(value)(to_device(v) for v in value)
            return value

        self.by_lane = {int(lane): replace(template, **{k: to_device(v) for k, v in values.items()})
                        for lane, values in saved.items()}
