"""Autoregressive recurrent models: a backbone that sets the parameters of a frame distribution.

.. math::

    p(x_{1:T}, T) = P(T \\mid \\cdot) \\prod_{t=1}^{T} p(x_t \\mid \\theta_t), \\qquad
    \\theta_t = W_o\\, o_t + b_o, \\qquad o_t = \\mathrm{RNN}(u_1, \\dots, u_t),

with inputs ``u_1 = [0, 1, g(tau)]`` (a begin flag) and ``u_{t+1} = [enc(x_t), 0, g(tau - t)]`` (the
remaining-steps features ``g`` only for the explicit length model; Goodfellow et al. 2016, §10.2.4).
The state after ``x_{1:t}`` is ``s_t = o_{t+1}``; it gives both the next frame's parameters and the
halting / end-symbol logit. Training is teacher forcing: all ``T + 1`` inputs go through the RNN in
one call (``nn.GRU`` and friends are vectorised over time), so a batch costs one RNN pass.

:class:`RecurrentFrameModel` is generic in its frame distribution: the baselines ``rnn``, ``gru``
and ``lstm`` use a factorial one (Bernoulli / Gaussian / categorical, exact likelihood); RNN-NADE
and RNN-RBM reuse the class with a NADE or RBM frame (Boulanger-Lewandowski et al. 2012).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from probseq.data.batch import Batch
from probseq.data.window import TimeWindow
from probseq.data.spec import DataSpec
from probseq.frames.base import FrameDistribution
from probseq.errors import UserError
from probseq.frames.factorial import make_factorial_frame
from probseq.lengths import make_length_model
from probseq.missing.scoring import sequential_observed_log_prob, sequential_training_loss
from probseq.models.base import LogProb, SequenceModel
from probseq.models.registry import register_model
from probseq.precision import AutocastSafeLSTM
from probseq.models.objectives.scheduled_sampling import make_schedule, scheduled_readouts

__all__ = ["RecurrentFrameModel", "RNNModel", "GRUModel", "LSTMModel", "register_cell", "cell_names"]

#: recurrent cells by name: ``factory(input_size, hidden_size, num_layers=, batch_first=True,
#: dropout=)`` returning a module with ``nn.GRU``'s calling convention (``mrnn`` registers itself
#: from :mod:`probseq.models.mrnn`)
_CELLS: dict[str, Any] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": AutocastSafeLSTM}


def register_cell(name: str, factory: Any) -> None:
    """Make ``cell=name`` available to every recurrent backbone (``nn.GRU``'s calling convention)."""
    _CELLS[name] = factory


def cell_names() -> list[str]:
    """The names ``cell=`` accepts."""
    from probseq.models.registry import model_names

    model_names()  # imports every model module, so cells registered by them are listed
    return sorted(_CELLS)


@dataclass
class _RecurrentState:
    hidden: Any            # the RNN's hidden state (a tuple for LSTM)
    output: Tensor         # (n, H): o_{t+1}, the summary of x_{1:t}
    steps: int             # t, frames consumed so far
    target: Tensor | None  # (n,) tau for the explicit length model


def _narrow_state(state: _RecurrentState, n: int) -> _RecurrentState:
    """The state of the first ``n`` sequences (RNN hidden states are ``(layers, B, H)``)."""
    if state.output.shape[0] == n:
        return state
    hidden = (tuple(h[:, :n] for h in state.hidden) if isinstance(state.hidden, tuple)
              else state.hidden[:, :n])
    return _RecurrentState(hidden, state.output[:n], state.steps,
                           None if state.target is None else state.target[:n])


class RecurrentFrameModel(SequenceModel):
    """An RNN/GRU/LSTM backbone driving a frame distribution, with a shared length model.

    Hyperparameters:
        hidden: RNN state size. layers: stacked RNN layers. dropout: between layers.
        length: ``none | halting | end-symbol | explicit`` (:mod:`probseq.lengths`).
        max_length: support of the explicit length model ``P(tau)``.
        cell: ``rnn | gru | lstm``, for subclasses that list it among their hyperparameters
        (RNN-NADE, RNN-RBM); otherwise the class attribute :attr:`cell` fixes it.
    """

    #: the recurrent cell when ``"cell"`` is not a hyperparameter of the model
    cell: ClassVar[str] = "gru"
    hyperparameters: ClassVar[dict[str, Any]] = {
        "hidden": 128, "layers": 1, "dropout": 0.0, "length": "none", "max_length": 1000,
        # training objective only (evaluation is always the teacher-forced exact likelihood):
        # scheduled sampling (probseq.models.objectives.scheduled_sampling) and unscored context frames
        "scheduled_sampling": "none", "ss_k": 0.0, "ss_c": 0.0, "ss_min": 0.0, "train_context": 0,
        # training only: DropConnect on the hidden-to-hidden weights (Wan et al. 2013; the
        # weight-dropped LSTM of Merity et al. 2018), one mask per training step
        "weight_drop": 0.0,
    }
    #: Adam at 1e-2 with gradient clipping: on JSB a 128-unit GRU reaches ~8.6 nats/frame in 300 steps
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-2}

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        cfg = self.config
        self.cell_type = str(cfg.get("cell", type(self).cell))
        if self.cell_type not in _CELLS:
            cell_names()  # imports the model modules that register further cells
        if self.cell_type not in _CELLS:
            raise UserError(f"unknown cell {self.cell_type!r} for {self.name}; expected one of "
                            f"{', '.join(cell_names())}")
        self.schedule = make_schedule(str(cfg["scheduled_sampling"]), k=float(cfg["ss_k"]),
                                      c=float(cfg["ss_c"]), floor=float(cfg["ss_min"]))
        if int(cfg["train_context"]) < 0:
            raise UserError(f"train_context must not be negative, got {cfg['train_context']}")
        if not 0.0 <= float(cfg["weight_drop"]) < 1.0:
            raise UserError(f"weight_drop must lie in [0, 1), got {cfg['weight_drop']}")
        #: eps_i of scheduled sampling for the current training step (1 = teacher forcing)
        self.teacher_forcing = 1.0
        self.frame = self.make_frame(spec)
        self.length_model = make_length_model(str(cfg["length"]), data_kind=spec.kind,
                                              max_length=int(cfg["max_length"]))
        hidden, layers = int(cfg["hidden"]), int(cfg["layers"])
        input_dim = self.frame.input_dim + 1 + self.length_model.input_dim
        self.rnn = self.make_backbone(input_dim, hidden, layers,
                                      float(cfg["dropout"]) if layers > 1 else 0.0)
        self._check_weight_drop(explicit="weight_drop" in hyper)
        n_states = 2 if self.cell_type == "lstm" else 1
        self.initial_hidden = nn.Parameter(torch.zeros(n_states, layers, 1, hidden))
        self.readout = nn.Linear(hidden, self.frame.param_dim + self.length_model.head_dim)

    def _check_weight_drop(self, *, explicit: bool) -> None:
        """``weight_drop`` needs torch's recurrent layers (a ``W_hh`` to drop) and teacher-forced
        training (scheduled sampling runs the network one step at a time, and the dropped
        connections must be the same at every step). A value the user set is refused there with
        one sentence; a model's default (the RNN-NADE recipe) is switched off instead, so that
        ``--set cell=mrnn`` or scheduled sampling still work with the rest of the recipe."""
        cfg = self.config
        if float(cfg["weight_drop"]) == 0:
            return
        problem = None
        if not isinstance(self.rnn, nn.RNNBase):
            problem = (f"weight_drop needs one of torch's recurrent layers (rnn, gru, lstm); the "
                       f"{self.cell_type} cell has no hidden-to-hidden weight matrix to drop")
        elif str(cfg["scheduled_sampling"]) != "none":
            problem = ("weight_drop and scheduled_sampling cannot be combined: scheduled sampling runs "
                       "the network one step at a time, and the dropped connections must be the same "
                       "at every step")
        if problem is None:
            return
        if explicit:
            raise UserError(problem)
        cfg["weight_drop"] = 0.0

    # ---------------------------------------------------------------- pieces
    def make_backbone(self, input_dim: int, hidden: int, layers: int, dropout: float) -> nn.Module:
        """The recurrent network over the inputs (``nn.GRU``'s calling convention, batch first)."""
        return _CELLS[self.cell_type](input_dim, hidden, num_layers=layers, batch_first=True,
                                      dropout=dropout)

    def make_frame(self, spec: DataSpec) -> FrameDistribution:
        """The per-step distribution; subclasses with NADE or RBM frames override this."""
        return make_factorial_frame(spec.kind, spec.dim)

    def _hidden0(self, n: int):
        h = self.initial_hidden.expand(-1, -1, n, -1).contiguous()
        return (h[0], h[1]) if self.cell_type == "lstm" else h[0]

    def _inputs(self, encoded: Tensor | None, begin: bool, remaining: Tensor | None, n: int,
                steps: int) -> Tensor:
        """Backbone inputs ``[enc(x), begin flag, g(remaining)]`` for ``steps`` time steps."""
        dtype, device = self.readout.weight.dtype, self.readout.weight.device
        if encoded is None:
            encoded = torch.zeros(n, steps, self.frame.input_dim, dtype=dtype, device=device)
        flag = torch.full((n, steps, 1), 1.0 if begin else 0.0, dtype=dtype, device=device)
        parts = [encoded.to(dtype), flag]
        if self.length_model.input_dim:
            parts.append(self.length_model.step_features(remaining).to(dtype))
        return torch.cat(parts, -1)

    def _split_head(self, head: Tensor) -> tuple[Tensor, Tensor]:
        p = self.frame.param_dim
        return head[..., :p], head[..., p:]

    def backbone_states(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Teacher-forced pass of the backbone: ``(x, states)``, the zero-padded frames and the top
        layer's states ``(B, T+1, H)`` (entry ``t`` is the state after ``t`` frames)."""
        x = batch.padded_with_zeros()
        n, steps = x.shape[:2]
        remaining = None
        if self.length_model.input_dim:
            steps_done = torch.arange(steps + 1, device=batch.lengths.device)
            remaining = batch.lengths.unsqueeze(1) - steps_done.unsqueeze(0)
        first = self._inputs(None, True, None if remaining is None else remaining[:, :1], n, 1)
        rest = self._inputs(self.frame.encode(x), False,
                            None if remaining is None else remaining[:, 1:], n, steps)
        outputs, _ = self._run_backbone(torch.cat([first, rest], 1), self._hidden0(n))
        return x, outputs

    def _run_backbone(self, inputs: Tensor, hidden):
        """``self.rnn(inputs, hidden)``; in training with ``weight_drop = p > 0`` the recurrent
        weights ``W_hh`` of every layer are replaced for this call by ``m * W_hh / (1 - p)`` with
        ``m ~ Bernoulli(1 - p)`` elementwise (DropConnect: the same dropped connections at every
        time step, Merity et al. 2018), so the expected recurrent weights are unchanged."""
        p = float(self.config["weight_drop"])
        if not (self.training and p > 0):
            return self.rnn(inputs, hidden)
        dropped = {name: nn.functional.dropout(w, p, training=True)
                   for name, w in self.rnn.named_parameters() if name.startswith("weight_hh")}
        return torch.func.functional_call(self.rnn, dropped, (inputs, hidden))

    def readouts(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher-forced pass: frame parameters and length heads for states ``s_0..s_T``.

        Returns ``(x, params, length_head)`` with ``x`` the zero-padded frames ``(B, T, ...)``,
        ``params`` ``(B, T+1, param_dim)`` and ``length_head`` ``(B, T+1, head_dim)``; entry ``t``
        belongs to the state after ``t`` frames, so ``params[:, t]`` parameterises ``x_{t+1}``.
        """
        x, states = self.backbone_states(batch)
        params, length_head = self._split_head(self.readout(states))
        return x, params, length_head

    def curvature_outputs(self, batch: Batch):
        """The loss as ``L(z)`` for Hessian-free optimisation (:mod:`probseq.optim.curvature`).

        ``z`` is the readout ``(B, T+1, param_dim + head_dim)`` (frame parameters and length head),
        ``L(z)`` the training loss (NLL per frame) computed from it, and the hidden states of the
        top recurrent layer ``(B, T+1, H)`` (zero past each sequence's end) feed structural
        damping. ``L`` is convex in ``z`` for Bernoulli and categorical frames, so the
        Gauss-Newton matrix is positive semi-definite there.
        """
        from probseq.optim.curvature import CurvatureOutputs

        self.validate_batch(batch)
        x = batch.padded_with_zeros()                    # scored intact, even under input dropout
        reader = getattr(self, "backbone_frames", None)
        _, states = self.backbone_states(reader(batch) if reader is not None else batch)
        z = self.readout(states)
        keep = (torch.arange(z.shape[1], device=batch.lengths.device).unsqueeze(0)
                <= batch.lengths.unsqueeze(1))
        hidden = states * keep.unsqueeze(-1).to(states.dtype)
        logits_of = getattr(self.frame, "curvature_logits", None)
        logits = logits_of(self._split_head(z)[0][:, :-1], x) if logits_of is not None else None
        if logits is not None:
            return self._bernoulli_curvature_outputs(batch, x, z, logits, hidden)

        def loss(outputs: Tensor) -> Tensor:
            p, head = self._split_head(outputs)
            frames, _ = self.frame_log_prob(p[:, :-1], x, batch.mask, estimator="exact",
                                            samples=None, generator=None)
            total = frames + self._length_log_prob(batch, p, head)
            return -total.sum() / batch.n_frames

        return CurvatureOutputs(z, loss, hidden)

    def _bernoulli_curvature_outputs(self, batch: Batch, x: Tensor, z: Tensor, logits: Tensor,
                                     hidden: Tensor):
        """Frames whose likelihood is a product of Bernoulli conditionals (NADE): the outputs are
        those logits ``(B, T, D)`` (a convex loss, as Boulanger-Lewandowski et al. 2012 trained
        RNN-NADE with HF) and the length head, flattened side by side."""
        from probseq.optim.curvature import CurvatureOutputs

        n, steps, dim = logits.shape
        head = self._split_head(z)[1]
        outputs = torch.cat([logits.reshape(n, -1), head.reshape(n, -1)], 1)

        def loss(flat: Tensor) -> Tensor:
            a = flat[:, : steps * dim].reshape(n, steps, dim)
            lp = (x * a - torch.nn.functional.softplus(a)).sum(-1)
            total = torch.where(batch.mask, lp, torch.zeros_like(lp)).sum(1)
            if self.length_model.head_dim:
                h = flat[:, steps * dim:].reshape(head.shape)
                params = self._split_head(z.detach())[0]   # halting/explicit: the head alone
                total = total + self._length_log_prob(batch, params, h)
            return -total.sum() / batch.n_frames

        return CurvatureOutputs(outputs, loss, hidden)

    # ---------------------------------------------------------------- likelihood
    def frame_log_prob(self, params: Tensor, x: Tensor, mask: Tensor, *, estimator: str,
                       samples: int | None, generator: torch.Generator | None
                       ) -> tuple[Tensor, Tensor | None]:
        """``sum_t log p(x_t | theta_t)`` per sequence, and its standard error (None if exact).

        Frame distributions whose likelihood needs an estimator (RBM) override this.
        """
        lp = self.frame.log_prob(params, x)
        return torch.where(mask, lp, torch.zeros_like(lp)).sum(1), None

    #: missing values: the observed part's likelihood by a particle filter, training on the
    #: observed part with the missing inputs drawn from the model (:mod:`probseq.missing.scoring`)
    supports_missing: ClassVar[bool] = True
    infill_method: ClassVar[str] = "particles"

    def log_prob(self, batch: Batch, *, estimator: str | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None) -> LogProb:
        if batch.has_missing:
            self.validate_batch(batch)
            return sequential_observed_log_prob(self, batch, estimator=estimator, samples=samples,
                                                generator=generator)
        estimator = self.check_estimator(estimator)
        self.validate_batch(batch)
        x, params, length_head = self.readouts(batch)
        frames, stderr = self.frame_log_prob(params[:, :-1], x, batch.mask, estimator=estimator,
                                             samples=samples, generator=generator)
        return LogProb(frames + self._length_log_prob(batch, params, length_head),
                       self.frame.likelihood_kind if stderr is None else "estimate",
                       estimator, stderr)

    def _length_log_prob(self, batch: Batch, params: Tensor, length_head: Tensor) -> Tensor:
        lm = self.length_model
        stop = lm.stop_logits(length_head[:, 1:], params[:, 1:]) if lm.head_dim else None
        return lm.log_prob(batch.lengths, stop)

    def predict_next(self, batch: Batch) -> Tensor:
        self.validate_batch(batch)
        with torch.no_grad():
            _, params, _ = self.readouts(batch)
            return self.frame.mean(params[:, :-1])

    # ---------------------------------------------------------------- training objective
    def state_readouts(self, states: Tensor) -> tuple[Tensor, Tensor]:
        """Frame parameters and length head from backbone outputs ``(..., H)``."""
        return self._split_head(self.readout(states))

    def on_train_step(self, step: int, total_steps: int) -> None:
        self.teacher_forcing = self.schedule.teacher_forcing(step, total_steps)

    def training_readouts(self, batch: Batch, generator: torch.Generator | None = None
                          ) -> tuple[Tensor, Tensor, Tensor]:
        """:meth:`readouts` for the training loss: teacher-forced, or under scheduled sampling (in
        training mode, ``teacher_forcing < 1``) with the model's own samples fed back in
        (:func:`~probseq.models.objectives.scheduled_sampling.scheduled_readouts`). Never used by ``log_prob``."""
        if self.training and self.teacher_forcing < 1.0:
            return scheduled_readouts(self, batch, self.teacher_forcing, generator)
        return self.readouts(batch)

    def scored_mask(self, batch: Batch) -> Tensor:
        """``(B, T)`` frames the training loss scores: all but the first ``train_context`` of each
        sequence (the text protocol: 250-character windows, the first 50 only set up the state)."""
        context = int(self.config["train_context"])
        if context == 0:
            return batch.mask
        return batch.mask & (torch.arange(batch.max_length, device=batch.lengths.device) >= context)

    def loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        """``-[sum of scored log p(x_t | fed history) + length term] / scored frames``.

        With teacher forcing and ``train_context = 0`` this is the pooled NLL per frame, the
        base class's loss; scheduled sampling and ``train_context`` change only this objective.
        """
        if batch.has_missing:
            self.validate_batch(batch)
            return sequential_training_loss(self, batch, generator=generator)
        if int(self.config["train_context"]) == 0 and not (self.training and self.teacher_forcing < 1.0):
            return super().loss(batch, generator=generator)
        self.validate_batch(batch)
        x, params, length_head = self.training_readouts(batch, generator)
        scored = self.scored_mask(batch)
        frames, _ = self.frame_log_prob(params[:, :-1], x, scored, estimator=self.estimators[0],
                                        samples=None, generator=generator)
        total = frames.sum() + self._length_log_prob(batch, params, length_head).sum()
        return -total / scored.sum().clamp_min(1)

    # ---------------------------------------------------------------- time windows
    #: the state carried between windows is the sampler's: the RNN state and ``o_t``
    supports_time_windows: ClassVar[bool] = True

    def window_state(self, batch: Batch) -> _RecurrentState:
        """``s_0``: the state after the begin input, before any frame (:mod:`probseq.data.window`)."""
        target = batch.lengths if self.length_model.input_dim else None
        return self.initial_state(batch.batch_size, target_length=target)

    def backbone_frames(self, frames: Batch) -> Batch:
        """The frames the backbone reads: the scored ones (RNN-NADE drops notes while training)."""
        return frames

    def window_readouts(self, window: TimeWindow, state: _RecurrentState
                        ) -> tuple[Tensor, Tensor, Tensor, _RecurrentState]:
        """:meth:`readouts` for the frames ``start + 1 .. start + W`` of ``window``, from the state
        ``s_start`` after the frames before it.

        Returns ``(x, params, length_head, state)``: the zero-padded frames ``(n, W, ...)``,
        ``params`` ``(n, W + 1, param_dim)`` and ``length_head`` ``(n, W + 1, head_dim)`` for the
        states ``s_start .. s_{start+W}`` (entry ``j`` parameterises frame ``start + j + 1``), and
        ``s_{start+W}`` to carry to the next window (meaningful for the sequences that run past it).
        Cost and memory O(n W) instead of O(B T).
        """
        n, width = window.batch_size, window.width
        state = _narrow_state(state, n)
        x = window.frames.padded_with_zeros()
        read = self.backbone_frames(window.frames).padded_with_zeros()
        remaining = None
        if self.length_model.input_dim:
            remaining = window.lengths.unsqueeze(1) - window.steps().unsqueeze(0)
        inputs = self._inputs(self.frame.encode(read), False, remaining, n, width)
        outputs, hidden = self._run_backbone(inputs, state.hidden)
        params, length_head = self._split_head(self.readout(torch.cat([state.output.unsqueeze(1),
                                                                       outputs], 1)))
        after = _RecurrentState(hidden, outputs[:, -1], window.start + width, state.target)
        return x, params, length_head, after

    def log_prob_window(self, window: TimeWindow, state: _RecurrentState, *,
                        estimator: str | None = None, samples: int | None = None,
                        generator: torch.Generator | None = None) -> tuple[LogProb, _RecurrentState]:
        """The window's frame terms plus its share of the length term (see the base class)."""
        estimator = self.check_estimator(estimator)
        self.validate_batch(window.frames)
        x, params, length_head, state = self.window_readouts(window, state)
        frames, stderr = self.frame_log_prob(params[:, :-1], x, window.frames.mask, estimator=estimator,
                                             samples=samples, generator=generator)
        lm = self.length_model
        stop = lm.stop_logits(length_head[:, 1:], params[:, 1:]) if lm.head_dim else None
        return LogProb(frames + window.length_log_prob(lm, stop),
                       self.frame.likelihood_kind if stderr is None else "estimate",
                       estimator, stderr), state

    # ---------------------------------------------------------------- truncated BPTT
    #: consecutive training windows continue from the carried RNN state (:mod:`probseq.train.streams`)
    carries_training_state: ClassVar[bool] = True

    def carry_problem(self) -> str | None:
        """A length model scores whole sequences (its terms need each window's place in its
        sequence), and scheduled sampling and ``train_context`` are whole-sequence objectives, so
        with any of them each window starts afresh."""
        cfg = self.config
        if self.length_model.name != "none":
            return f"length={self.length_model.name} scores whole sequences (carrying needs length=none)"
        if str(cfg["scheduled_sampling"]) != "none":
            return "scheduled sampling runs whole sequences"
        if int(cfg["train_context"]):
            return "train_context scores windows that each start afresh"
        return None

    def frame_training_loss(self, params: Tensor, x: Tensor, mask: Tensor, *,
                            generator: torch.Generator | None = None) -> Tensor:
        """``sum`` over the frames in ``mask`` of the training loss of ``x_t`` given ``theta_t``:
        the exact NLL; frames whose loss is a surrogate (RBM: CD-k; order-agnostic NADE) override it."""
        lp, _ = self.frame_log_prob(params, x, mask, estimator=self.estimators[0], samples=None,
                                    generator=generator)
        return -lp.sum()

    def window_loss(self, window: TimeWindow, state: _RecurrentState, *,
                    generator: torch.Generator | None = None) -> tuple[Tensor, _RecurrentState]:
        """The training loss per frame of the window's frames given ``state`` (``length=none``,
        teacher forcing): with contiguous windows and carried states, the frame-weighted mean
        equals :meth:`loss` of the whole sequences (Williams & Peng 1990: truncated BPTT)."""
        self.validate_batch(window.frames)
        x, params, _, after = self.window_readouts(window, state)
        total = self.frame_training_loss(params[:, :-1], x, window.frames.mask, generator=generator)
        return total / window.frames.n_frames, after

    def join_window_states(self, states: list[_RecurrentState]) -> _RecurrentState:
        first = states[0]
        hidden = (tuple(torch.cat(parts, 1) for parts in zip(*(s.hidden for s in states)))
                  if isinstance(first.hidden, tuple) else torch.cat([s.hidden for s in states], 1))
        target = None if first.target is None else torch.cat([s.target for s in states])
        return _RecurrentState(hidden, torch.cat([s.output for s in states]), first.steps, target)

    def window_state_rows(self, state: _RecurrentState, index: Tensor) -> _RecurrentState:
        return self.select_states(state, index)

    # ---------------------------------------------------------------- sampling hooks
    def _step(self, state: _RecurrentState, inputs: Tensor) -> _RecurrentState:
        out, hidden = self.rnn(inputs, state.hidden)
        return _RecurrentState(hidden, out[:, -1], state.steps, state.target)

    def _remaining(self, state: _RecurrentState) -> Tensor | None:
        if not self.length_model.input_dim:
            return None
        return (state.target - state.steps).unsqueeze(1)

    def initial_state(self, n, *, target_length=None):
        state = _RecurrentState(self._hidden0(n), None, 0, target_length)
        return self._step(state, self._inputs(None, True, self._remaining(state), n, 1))

    def draw_frame(self, state, *, temperature=1.0, generator=None):
        params, _ = self._split_head(self.readout(state.output))
        return self.frame.sample(params, temperature=temperature, generator=generator), state

    def advance(self, state, frame):
        n = frame.shape[0]
        state = _RecurrentState(state.hidden, state.output, state.steps + 1, state.target)
        encoded = self.frame.encode(frame).unsqueeze(1)
        return self._step(state, self._inputs(encoded, False, self._remaining(state), n, 1))

    def stop_logit(self, state):
        if not self.length_model.head_dim:
            return None
        params, head = self._split_head(self.readout(state.output))
        return self.length_model.stop_logits(head, params)

    def frame_params_of(self, state):
        return self._split_head(self.readout(state.output))[0]

    def select_states(self, state, index):
        hidden = (tuple(h[:, index] for h in state.hidden) if isinstance(state.hidden, tuple)
                  else state.hidden[:, index])
        return _RecurrentState(hidden, state.output[index], state.steps,
                               None if state.target is None else state.target[index])


@register_model
class RNNModel(RecurrentFrameModel):
    """Elman (tanh) RNN baseline with a factorial output; exact likelihood."""

    name = "rnn"
    cell = "rnn"
    validation_is_nll = True
    contract_example = {"spec": DataSpec("real", 3), "hyper": {"hidden": 6, "length": "explicit",
                                                               "max_length": 12}}


@register_model
class GRUModel(RecurrentFrameModel):
    """GRU baseline (Cho et al. 2014) with a factorial output; exact likelihood."""

    name = "gru"
    cell = "gru"
    validation_is_nll = True
    contract_example = {"spec": DataSpec("binary", 4), "hyper": {"hidden": 6, "length": "halting"}}


@register_model
class LSTMModel(RecurrentFrameModel):
    """LSTM baseline (Hochreiter & Schmidhuber 1997) with a factorial output; exact likelihood."""

    name = "lstm"
    cell = "lstm"
    validation_is_nll = True
    contract_example = {"spec": DataSpec("categorical", 5), "hyper": {"hidden": 6,
                                                                      "length": "end-symbol"}}
