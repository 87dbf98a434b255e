"""NADE sequence models: a static ``nade`` and the recurrent ``rnn-nade``.

``nade`` — frames i.i.d. from one NADE (Larochelle & Murray 2011):

.. math:: p(x_{1:T}, T) = P(T) \\prod_{t=1}^T \\mathrm{NADE}(x_t;\\, W, V, b, c).

A dataset of fixed-size binary vectors (binarised MNIST, ...) is a dataset of length-1 sequences,
for which this is exactly NADE; on longer sequences it is the "no temporal model" baseline with a
structured frame (compare ``independent``, whose frames are factorial). The length model is shared
with the other models (``none | halting | explicit``).

``rnn-nade`` — RNN-NADE (Boulanger-Lewandowski, Bengio & Vincent 2012, §4): a recurrent backbone
whose state after ``x_{1:t-1}`` sets the biases of the NADE for ``x_t``,

.. math::

    b_t = b + W_{ob}\\, o_t, \\qquad c_t = c + W_{oc}\\, o_t, \\qquad
    p(x_{1:T}) = \\prod_t \\mathrm{NADE}(x_t;\\, W, V, b_t, c_t),

with ``W``, ``V`` shared over time (they live in the :class:`~probseq.frames.nade.NADEFrame`) and
``[b_t, c_t]`` the readout of :class:`~probseq.models.recurrent.RecurrentFrameModel`. The paper's
backbone is a tanh RNN; here ``cell`` chooses ``rnn | gru | lstm`` (default ``gru``). The
likelihood is exact, computed in one RNN pass plus one O(B T D H) NADE pass per batch.

Both models accept ``ordering`` (``natural`` = low to high pitch, as in the paper; ``reversed``;
``random``), ``orderings=K`` (the exact mixture over ``K`` fixed orderings, the first being
``ordering``) and ``order_agnostic`` (train each frame under a fresh random ordering, Uria et al.
2014; evaluation stays exact for the ``K``-mixture). See :mod:`probseq.frames.nade`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.frames.nade import NADEFrame
from probseq.models.independent import IIDFrameModel
from probseq.models.recurrent import RecurrentFrameModel
from probseq.models.registry import register_model

__all__ = ["StaticNADE", "RNNNADE"]

_NADE_HYPER: dict[str, Any] = {
    "nade_hidden": 150,        # H, hidden units of the per-frame NADE
    "ordering": "natural",     # natural | reversed | random
    "orderings": 1,            # K: exact mixture over K fixed orderings
    "order_agnostic": False,   # train under a random ordering per frame (Uria et al. 2014)
    "seed": 0,                 # seeds the random orderings (saved as buffers anyway)
    "init_scale": 0.05,        # std of the initial NADE weights W, V
}


def _make_nade_frame(spec: DataSpec, cfg: dict[str, Any]) -> NADEFrame:
    return NADEFrame(spec.dim, int(cfg["nade_hidden"]), ordering=str(cfg["ordering"]),
                     n_orderings=int(cfg["orderings"]), order_agnostic=bool(cfg["order_agnostic"]),
                     seed=int(cfg["seed"]), init_scale=float(cfg["init_scale"]))


def _marginal_logits(dataset: Any, dim: int) -> Tensor | None:
    """Logit of each unit's frequency over the training frames (clamped away from 0 and 1)."""
    train = getattr(dataset, "splits", {}).get("train") if dataset is not None else None
    if not train:
        return None
    frames = torch.cat([torch.as_tensor(s).reshape(-1, dim).double() for s in train], 0)
    p = frames.nanmean(0).nan_to_num(0.5).clamp(1e-3, 1 - 1e-3)   # missing values (NaN) left out
    return torch.log(p) - torch.log1p(-p)


class _DropoutLinear(nn.Linear):
    """``Linear(dropout(x))``: keeps ``weight``/``bias`` (and checkpoint keys) of a plain Linear."""

    def __init__(self, in_features: int, out_features: int, p: float) -> None:
        super().__init__(in_features, out_features)
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(nn.functional.dropout(x, self.p, self.training) if self.p else x)


@register_model
class StaticNADE(IIDFrameModel):
    """Frames i.i.d. from one NADE; a fixed-size binary dataset is length-1 sequences. Exact.

    ``theta = [b (D), c (H)]``, the NADE's own biases.
    """

    name = "nade"
    data_kinds = ("binary",)
    validation_is_nll = True
    hyperparameters: ClassVar[dict[str, Any]] = {**_NADE_HYPER, "length": "none", "max_length": 1000}
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 3e-3, "batch_size": 32}
    contract_example = {"spec": DataSpec("binary", 4), "hyper": {"nade_hidden": 3, "length": "halting"}}

    def make_frame(self, spec: DataSpec) -> NADEFrame:
        return _make_nade_frame(spec, self.config)

    def prepare(self, dataset: Any) -> None:
        """Initialise the visible biases to the logits of the training marginals."""
        logits = _marginal_logits(dataset, self.spec.dim)
        if logits is not None:
            with torch.no_grad():
                self.frame_params[: self.spec.dim] = logits.to(self.frame_params.dtype)

    def loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        if not self.frame.order_agnostic or batch.has_missing:
            return super().loss(batch, generator=generator)
        self.validate_batch(batch)
        x = batch.padded_with_zeros()
        frame_loss = self.frame.loss(self._params(x), x, generator=generator)
        total = torch.where(batch.mask, frame_loss, torch.zeros_like(frame_loss)).sum()
        return (total - self._length_term(batch).sum()) / batch.n_frames

    def validation_loss(self, batch: Batch) -> float:
        """Exact NLL per frame (also under order-agnostic training, whose loss is random)."""
        with torch.no_grad():
            return float(-self.log_prob(batch).values.sum() / batch.n_frames)

@register_model
class RNNNADE(RecurrentFrameModel):
    """RNN-NADE (Boulanger-Lewandowski et al. 2012): an RNN sets each frame's NADE biases. Exact.

    Hyperparameters (beyond :class:`RecurrentFrameModel`'s ``hidden, layers, dropout, length,
    max_length``): ``cell`` (``rnn | gru | lstm``), ``nade_hidden``, ``ordering``, ``orderings``,
    ``order_agnostic``, ``seed``, ``init_scale``.
    """

    name = "rnn-nade"
    data_kinds = ("binary",)
    validation_is_nll = True
    #: the recipe (docs/training.md): a 300-unit LSTM whose recurrent weights are DropConnected
    #: during training (weight_drop 0.7), NADE weights started at std 0.2, dropout on the notes the
    #: RNN reads (0.4) and on its state (0.6); chosen on JSB validation NLL (benchmarks/RESULTS.md,
    #: issues 4 and 10) and used unchanged on the other piano-roll sets
    hyperparameters: ClassVar[dict[str, Any]] = {
        **RecurrentFrameModel.hyperparameters, **_NADE_HYPER, "cell": "lstm", "hidden": 300,
        "init_scale": 0.2,
        "input_dropout": 0.4,    # training only: drop each note the RNN reads (never a scored one)
        "output_dropout": 0.6,   # training only: dropout on the RNN state before the readout
        "weight_drop": 0.7,      # training only: DropConnect on the LSTM's recurrent weights
    }
    #: Adam 2e-3 on minibatches of 4 pieces, clip 1, weight decay 1e-5, halved after 3 validations
    #: without improvement, stopped after 10 (Boulanger-Lewandowski et al. 2012 halve on plateau too);
    #: validated and kept as the moving average of the weights (decay 0.99, about the last 100
    #: steps); pieces longer than 200 frames (Piano-midi.de, MuseData, Nottingham; no JSB chorale)
    #: are trained as windows of 200 frames
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "batch_size": 4, "clip": 1.0,
                                                   "weight_decay": 1e-5, "decay_patience": 3,
                                                   "patience": 10, "train_chunk": 200,
                                                   "average": 0.99}
    contract_example = {"spec": DataSpec("binary", 4),
                        "hyper": {"hidden": 5, "nade_hidden": 3, "length": "halting",
                                  "input_dropout": 0.0, "output_dropout": 0.0}}

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        for key in ("input_dropout", "output_dropout"):
            if not 0.0 <= float(self.config[key]) < 1.0:
                raise UserError(f"{key} must lie in [0, 1), got {self.config[key]}")
        old = self.readout
        self.readout = _DropoutLinear(old.in_features, old.out_features,
                                      float(self.config["output_dropout"]))

    def make_frame(self, spec: DataSpec) -> NADEFrame:
        return _make_nade_frame(spec, self.config)

    def readouts(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """As :meth:`RecurrentFrameModel.readouts`; in training mode with ``input_dropout > 0`` the
        RNN reads the frames with each note zeroed with that probability, while the returned frames
        (the ones scored) stay intact. In eval mode (evaluation, sampling) nothing is dropped."""
        p = float(self.config["input_dropout"])
        if not (self.training and p > 0):
            return super().readouts(batch)
        keep = torch.rand(batch.values.shape, device=batch.values.device) >= p
        _, params, head = super().readouts(Batch(batch.values * keep, batch.lengths))
        return batch.padded_with_zeros(), params, head

    def backbone_frames(self, frames: Batch) -> Batch:
        """In training mode with ``input_dropout > 0`` (time-windowed training), the frames with
        each note zeroed with that probability; the scored frames stay intact."""
        p = float(self.config["input_dropout"])
        if not (self.training and p > 0):
            return frames
        keep = torch.rand(frames.values.shape, device=frames.values.device) >= p
        return Batch(frames.values * keep, frames.lengths)

    def prepare(self, dataset: Any) -> None:
        """Start the readout's visible-bias part at the logits of the training marginals."""
        logits = _marginal_logits(dataset, self.spec.dim)
        if logits is not None:
            with torch.no_grad():
                self.readout.bias[: self.spec.dim] = logits.to(self.readout.bias.dtype)

    def loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        """Pooled NLL per frame; under ``order_agnostic`` each frame uses a fresh random ordering."""
        if not self.frame.order_agnostic or batch.has_missing:
            return super().loss(batch, generator=generator)
        self.validate_batch(batch)
        x, params, length_head = self.training_readouts(batch, generator)  # scheduled sampling
        frame_loss = self.frame.loss(params[:, :-1], x, generator=generator)
        total = torch.where(batch.mask, frame_loss, torch.zeros_like(frame_loss)).sum()
        length = self._length_log_prob(batch, params, length_head).sum()
        return (total - length) / batch.n_frames

    def frame_training_loss(self, params, x, mask, *, generator=None):
        """The exact NLL of the frames in ``mask``; under ``order_agnostic`` each frame's loss under
        a fresh random ordering (as :meth:`loss`)."""
        if not self.frame.order_agnostic:
            return super().frame_training_loss(params, x, mask, generator=generator)
        frame_loss = self.frame.loss(params, x, generator=generator)
        return torch.where(mask, frame_loss, torch.zeros_like(frame_loss)).sum()

    def validation_loss(self, batch: Batch) -> float:
        """Exact NLL per frame (also under order-agnostic training, whose loss is random)."""
        with torch.no_grad():
            return float(-self.log_prob(batch).values.sum() / batch.n_frames)
