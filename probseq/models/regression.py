"""``rnn-regression``: a recurrent network read out once, after the last input.

.. math::

    h_t = \\tanh(W_{hv} v_t + W_{hh} h_{t-1} + b_h), \\qquad \\hat y = W_{oh} h_{T} + b_o, \\qquad
    p(y \\mid v_{1:T}) = \\mathcal N(y;\\, \\hat y,\\, \\sigma^2 I),

(``cell=gru|lstm`` replace the tanh cell), the network of Martens & Sutskever (2011) and Sutskever
(2013, §4.3, ch. 7) for the pathological long-range problems (:mod:`probseq.data.sets.addition`).
The model is *conditional*: it scores a target given its input sequence, exactly (kind
``exact``, one "frame" per example); the noise level ``sigma`` is a fixed hyperparameter, so the
training loss is the squared error :math:`\\|y - \\hat y\\|^2 / (2\\sigma^2)` plus a constant. There is
nothing to sample unconditionally. ``probseq evaluate RUN --metric zero-one`` reports the
fraction of examples whose absolute error reaches ``tolerance`` (0.04, Hochreiter &
Schmidhuber's criterion) and the mean squared error.

It exposes :meth:`curvature_outputs` for Hessian-free training (outputs :math:`\\hat y`, hidden
states for structural damping).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from probseq.data.regression import RegressionBatch, RegressionExample
from probseq.data.spec import DataSpec
from probseq.device import model_device
from probseq.errors import UserError
from probseq.models.base import LogProb, SequenceModel
from probseq.models.registry import register_model
from probseq.precision import AutocastSafeLSTM, full_precision

__all__ = ["RecurrentRegression"]

_CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": AutocastSafeLSTM}


@register_model
class RecurrentRegression(SequenceModel):
    """A recurrent network with a Gaussian read-out after the last input; exact conditional likelihood.

    Hyperparameters: ``hidden`` (state size), ``cell`` (``rnn | gru | lstm``), ``target_dim`` (``K``),
    ``noise_std`` (:math:`\\sigma`), ``tolerance`` (the zero-one metric's threshold).
    """

    name = "rnn-regression"
    conditional: ClassVar[bool] = True
    likelihood_kind = "exact"
    estimators = ("exact",)
    data_kinds = ("real",)
    hyperparameters: ClassVar[dict[str, Any]] = {
        "hidden": 100, "cell": "rnn", "target_dim": 1, "noise_std": 1.0, "tolerance": 0.04,
    }
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "batch_size": 100}
    extra_metrics: ClassVar[tuple[str, ...]] = ("zero-one",)

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        cfg = self.config
        if cfg["cell"] not in _CELLS:
            raise UserError(f"unknown cell {cfg['cell']!r} for rnn-regression; expected one of "
                            f"{', '.join(_CELLS)}")
        if float(cfg["noise_std"]) <= 0 or int(cfg["target_dim"]) < 1 or int(cfg["hidden"]) < 1:
            raise UserError("rnn-regression needs hidden >= 1, target_dim >= 1 and noise_std > 0")
        self.rnn = _CELLS[cfg["cell"]](spec.dim, int(cfg["hidden"]), batch_first=True)
        self.readout = nn.Linear(int(cfg["hidden"]), int(cfg["target_dim"]))

    # ---------------------------------------------------------------- data
    def collate(self, examples: list[Any]) -> RegressionBatch:
        batch = RegressionBatch.from_examples(examples, dtype=self.readout.weight.dtype)
        return batch.to(model_device(self))

    def validate_examples(self, examples: list[Any], where: str = "the data") -> None:
        k = int(self.config["target_dim"])
        for i, example in enumerate(examples):
            if not isinstance(example, RegressionExample):
                raise UserError(f"example {i} of {where} is not an (inputs, target) pair; "
                                "rnn-regression fits sequence-to-target data such as 'addition'")
            x, y = torch.as_tensor(example.inputs), torch.as_tensor(example.target)
            if x.dim() != 2 or x.shape[1] != self.spec.dim or x.shape[0] < 1:
                raise UserError(f"example {i} of {where} has inputs of shape {tuple(x.shape)}; "
                                f"the model expects (time, {self.spec.dim})")
            if y.shape != (k,):
                raise UserError(f"example {i} of {where} has a target of shape {tuple(y.shape)}; "
                                f"the model expects ({k},)")
            if not (torch.isfinite(x).all() and torch.isfinite(y).all()):
                raise UserError(f"example {i} of {where} contains NaN or infinite values")

    # ---------------------------------------------------------------- network
    def states(self, batch: RegressionBatch) -> Tensor:
        """Hidden states ``(B, T, H)`` of the top layer (those past each length are never read)."""
        states, _ = self.rnn(batch.inputs)
        return states

    def _predict(self, batch: RegressionBatch) -> tuple[Tensor, Tensor]:
        states = self.states(batch)
        last = states.gather(1, (batch.lengths - 1).view(-1, 1, 1).expand(-1, 1, states.shape[-1]))
        return self.readout(last.squeeze(1)), states

    def predict(self, batch: RegressionBatch) -> Tensor:
        """:math:`\\hat y`, ``(B, K)``."""
        return self._predict(batch)[0]

    @full_precision
    def _log_density(self, prediction: Tensor, targets: Tensor) -> Tensor:
        sigma = float(self.config["noise_std"])
        k = targets.shape[-1]
        sq = (targets - prediction).pow(2).sum(-1)
        return -0.5 * sq / sigma ** 2 - k * (math.log(sigma) + 0.5 * math.log(2 * math.pi))

    # ---------------------------------------------------------------- likelihood and training
    def log_prob(self, batch: RegressionBatch, *, estimator=None, samples=None, generator=None) -> LogProb:
        """Exact :math:`\\log p(y \\mid v_{1:T})` of every example, ``(B,)``."""
        estimator = self.check_estimator(estimator)
        return LogProb(self._log_density(self.predict(batch), batch.targets), "exact", estimator)

    def loss(self, batch: RegressionBatch, *, generator=None) -> Tensor:
        return -self.log_prob(batch).values.sum() / batch.n_frames

    def curvature_outputs(self, batch: RegressionBatch):
        """``z = y_hat`` ``(B, K)``, ``L(z)`` the loss (squared error: convex), the hidden states."""
        from probseq.optim.curvature import CurvatureOutputs

        prediction, states = self._predict(batch)
        mask = batch.mask.unsqueeze(-1).to(states.dtype)
        return CurvatureOutputs(prediction,
                                lambda z: -self._log_density(z, batch.targets).sum() / batch.n_frames,
                                states * mask)

    # ---------------------------------------------------------------- metrics
    def evaluate_metric(self, metric: str, examples: list[Any], *, generator: torch.Generator,
                        batch_size: int) -> dict[str, Any]:
        """``zero-one``: the fraction of examples with ``max_k |y_k - y_hat_k| >= tolerance``, and the MSE."""
        if metric not in self.extra_metrics:
            raise UserError(f"model 'rnn-regression' has no metric {metric!r}; it has "
                            f"{', '.join(self.extra_metrics)}")
        tolerance = float(self.config["tolerance"])
        wrong, squared, n = 0, 0.0, 0
        self.eval()
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                batch = self.collate(examples[start:start + batch_size])
                error = (self.predict(batch) - batch.targets).abs()
                wrong += int((error.max(-1).values >= tolerance).sum())
                squared += float(error.pow(2).mean(-1).sum())
                n += batch.batch_size
        return {"n_sequences": n, "zero_one_loss": wrong / n, "tolerance": tolerance,
                "target_mse": squared / n}

    def sample(self, n: int, **kwargs) -> Any:
        raise UserError("model 'rnn-regression' is conditional: it predicts a target from an input "
                        "sequence and has no sequences of its own to sample")
