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
from probseq.data.spec import DataSpec
from probseq.frames.base import FrameDistribution
from probseq.errors import UserError
from probseq.frames.factorial import make_factorial_frame
from probseq.lengths import make_length_model
from probseq.models.base import LogProb, SequenceModel
from probseq.models.registry import register_model

__all__ = ["RecurrentFrameModel", "RNNModel", "GRUModel", "LSTMModel", "register_cell", "cell_names"]

#: recurrent cells by name: ``factory(input_size, hidden_size, num_layers=, batch_first=True,
#: dropout=)`` returning a module with ``nn.GRU``'s calling convention (``mrnn`` registers itself
#: from :mod:`probseq.models.mrnn`)
_CELLS: dict[str, Any] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


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
        self.frame = self.make_frame(spec)
        self.length_model = make_length_model(str(cfg["length"]), data_kind=spec.kind,
                                              max_length=int(cfg["max_length"]))
        hidden, layers = int(cfg["hidden"]), int(cfg["layers"])
        input_dim = self.frame.input_dim + 1 + self.length_model.input_dim
        self.rnn = self.make_backbone(input_dim, hidden, layers,
                                      float(cfg["dropout"]) if layers > 1 else 0.0)
        n_states = 2 if self.cell_type == "lstm" else 1
        self.initial_hidden = nn.Parameter(torch.zeros(n_states, layers, 1, hidden))
        self.readout = nn.Linear(hidden, self.frame.param_dim + self.length_model.head_dim)

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
        dtype = self.readout.weight.dtype
        if encoded is None:
            encoded = torch.zeros(n, steps, self.frame.input_dim, dtype=dtype, device=self.readout.weight.device)
        flag = torch.full((n, steps, 1), 1.0 if begin else 0.0, dtype=dtype, device=self.readout.weight.device)
        parts = [encoded.to(dtype), flag]
        if self.length_model.input_dim:
            parts.append(self.length_model.step_features(remaining).to(dtype))
        return torch.cat(parts, -1)

    def _split_head(self, head: Tensor) -> tuple[Tensor, Tensor]:
        p = self.frame.param_dim
        return head[..., :p], head[..., p:]

    def readouts(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Teacher-forced pass: frame parameters and length heads for states ``s_0..s_T``.

        Returns ``(x, params, length_head)`` with ``x`` the zero-padded frames ``(B, T, ...)``,
        ``params`` ``(B, T+1, param_dim)`` and ``length_head`` ``(B, T+1, head_dim)``; entry ``t``
        belongs to the state after ``t`` frames, so ``params[:, t]`` parameterises ``x_{t+1}``.
        """
        x = batch.padded_with_zeros()
        n, steps = x.shape[:2]
        remaining = None
        if self.length_model.input_dim:
            remaining = batch.lengths.unsqueeze(1) - torch.arange(steps + 1, device=batch.lengths.device).unsqueeze(0)
        first = self._inputs(None, True, None if remaining is None else remaining[:, :1], n, 1)
        rest = self._inputs(self.frame.encode(x), False,
                            None if remaining is None else remaining[:, 1:], n, steps)
        outputs, _ = self.rnn(torch.cat([first, rest], 1), self._hidden0(n))
        params, length_head = self._split_head(self.readout(outputs))
        return x, params, length_head

    # ---------------------------------------------------------------- likelihood
    def frame_log_prob(self, params: Tensor, x: Tensor, mask: Tensor, *, estimator: str,
                       samples: int | None, generator: torch.Generator | None
                       ) -> tuple[Tensor, Tensor | None]:
        """``sum_t log p(x_t | theta_t)`` per sequence, and its standard error (None if exact).

        Frame distributions whose likelihood needs an estimator (RBM) override this.
        """
        lp = self.frame.log_prob(params, x)
        return torch.where(mask, lp, torch.zeros_like(lp)).sum(1), None

    def log_prob(self, batch: Batch, *, estimator: str | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None) -> LogProb:
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


@register_model
class RNNModel(RecurrentFrameModel):
    """Elman (tanh) RNN baseline with a factorial output; exact likelihood."""

    name = "rnn"
    cell = "rnn"
    contract_example = {"spec": DataSpec("real", 3), "hyper": {"hidden": 6, "length": "explicit",
                                                               "max_length": 12}}


@register_model
class GRUModel(RecurrentFrameModel):
    """GRU baseline (Cho et al. 2014) with a factorial output; exact likelihood."""

    name = "gru"
    cell = "gru"
    contract_example = {"spec": DataSpec("binary", 4), "hyper": {"hidden": 6, "length": "halting"}}


@register_model
class LSTMModel(RecurrentFrameModel):
    """LSTM baseline (Hochreiter & Schmidhuber 1997) with a factorial output; exact likelihood."""

    name = "lstm"
    cell = "lstm"
    contract_example = {"spec": DataSpec("categorical", 5), "hyper": {"hidden": 6,
                                                                      "length": "end-symbol"}}
