"""Independent frames: the baseline every sequence model must beat.

.. math:: p(x_{1:T}, T) = P(T) \\prod_{t=1}^T p(x_t \\mid \\theta),

one learned parameter vector ``theta`` shared by all time steps (for piano-rolls: a Bernoulli per
key, fitted to the training set's note frequencies). With ``length=halting`` the constant halting
probability makes ``P(T)`` geometric; with ``length=explicit`` it is a free categorical.

:class:`IIDFrameModel` holds what every such model shares (the likelihood, the length term, the
sampling hooks, the prediction); :class:`IndependentFrames` uses a factorial frame, and
:class:`~probseq.models.nade.StaticNADE` a NADE.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.frames.base import FrameDistribution
from probseq.frames.factorial import make_factorial_frame
from probseq.lengths import make_length_model
from probseq.missing.scoring import iid_observed_log_prob, iid_training_loss
from probseq.models.base import LogProb, SequenceModel
from probseq.models.registry import register_model

__all__ = ["IIDFrameModel", "IndependentFrames"]


class IIDFrameModel(SequenceModel):
    """Frames i.i.d. from one frame distribution with learned parameters ``theta``; exact likelihood.

    Subclasses choose the distribution in :meth:`make_frame`; ``theta`` is ``frame_params``
    ``(P,)``, the length head ``length_head`` (the length model's inputs besides ``theta``).
    """

    hyperparameters: ClassVar[dict[str, Any]] = {"length": "none", "max_length": 1000}

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        self.frame = self.make_frame(spec)
        self.length_model = make_length_model(str(self.config["length"]), data_kind=spec.kind,
                                              max_length=int(self.config["max_length"]))
        self.frame_params = nn.Parameter(torch.zeros(self.frame.param_dim))
        self.length_head = nn.Parameter(torch.zeros(self.length_model.head_dim))

    def make_frame(self, spec: DataSpec) -> FrameDistribution:
        raise NotImplementedError

    def _params(self, x: Tensor) -> Tensor:
        """``theta`` for every frame of ``x`` ``(B, T, ...)``: ``(B, T, P)``."""
        return self.frame_params.expand(*x.shape[:2], -1)

    def _length_term(self, batch: Batch) -> Tensor:
        """``log P(T_i)`` per sequence (zeros without a length model)."""
        stop = None
        if self.length_model.head_dim:
            n, steps = batch.values.shape[:2]
            stop = self.length_model.stop_logits(self.length_head.expand(n, steps, -1),
                                                 self.frame_params.expand(n, steps, -1))
        return self.length_model.log_prob(batch.lengths, stop)

    #: missing values: the observed part's marginal, exact for factorial frames (and for NADE frames
    #: whose observed dimensions come first), estimated otherwise (:mod:`probseq.missing.scoring`)
    supports_missing: ClassVar[bool] = True
    infill_method: ClassVar[str] = "frames"

    def log_prob(self, batch: Batch, *, estimator=None, samples=None, generator=None) -> LogProb:
        if batch.has_missing:
            self.validate_batch(batch)
            x = batch.padded_with_zeros()
            return iid_observed_log_prob(self, batch, self._params(x), self._length_term(batch),
                                         estimator=estimator, samples=samples, generator=generator)
        estimator = self.check_estimator(estimator)
        self.validate_batch(batch)
        x = batch.padded_with_zeros()
        lp = self.frame.log_prob(self._params(x), x)
        total = torch.where(batch.mask, lp, torch.zeros_like(lp)).sum(1)
        return LogProb(total + self._length_term(batch), "exact", estimator)

    def loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        """The pooled NLL per frame; with missing values, of the observed part (its terms only)."""
        if batch.has_missing:
            self.validate_batch(batch)
            x = batch.padded_with_zeros()
            return iid_training_loss(self, batch, self._params(x), self._length_term(batch),
                                     generator=generator)
        return super().loss(batch, generator=generator)

    # the time-window hooks (probseq.data.window): frames are independent, so there is no state
    supports_time_windows: ClassVar[bool] = True

    def window_state(self, batch: Batch) -> None:
        return None

    def carry_problem(self) -> str:
        return f"model {self.name!r} has independent frames, so windows lose no context"

    def log_prob_window(self, window, state, *, estimator=None, samples=None, generator=None):
        """The window's frame terms plus its share of the length term; no state to carry."""
        estimator = self.check_estimator(estimator)
        frames = window.frames
        self.validate_batch(frames)
        x = frames.padded_with_zeros()
        lp = self.frame.log_prob(self._params(x), x)
        total = torch.where(frames.mask, lp, torch.zeros_like(lp)).sum(1)
        stop = None
        if self.length_model.head_dim:
            n, width = x.shape[:2]
            stop = self.length_model.stop_logits(self.length_head.expand(n, width, -1),
                                                 self.frame_params.expand(n, width, -1))
        return LogProb(total + window.length_log_prob(self.length_model, stop), "exact", estimator), None

    def predict_next(self, batch: Batch) -> Tensor:
        """The frame distribution's mean, the same for every step."""
        self.validate_batch(batch)
        with torch.no_grad():
            mean = self.frame.mean(self.frame_params.unsqueeze(0))[0]
        return mean.expand_as(batch.values).clone()

    # sampling hooks: the state is just the number of sequences
    def initial_state(self, n, *, target_length=None):
        return n

    def draw_frame(self, state, *, temperature=1.0, generator=None):
        params = self.frame_params.detach().expand(state, -1)
        return self.frame.sample(params, temperature=temperature, generator=generator), state

    def advance(self, state, frame):
        return state

    def frame_params_of(self, state):
        return self.frame_params.expand(state, -1)

    def select_states(self, state, index):
        return int(index.shape[0])

    def stop_logit(self, state):
        if not self.length_model.head_dim:
            return None
        return self.length_model.stop_logits(self.length_head.expand(state, -1),
                                             self.frame_params.expand(state, -1))


@register_model
class IndependentFrames(IIDFrameModel):
    """Frames i.i.d. from one factorial distribution; exact likelihood."""

    name = "independent"
    validation_is_nll = True
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 0.05}
    contract_example = {"spec": DataSpec("binary", 4), "hyper": {"length": "halting"}}

    def make_frame(self, spec: DataSpec) -> FrameDistribution:
        return make_factorial_frame(spec.kind, spec.dim)

    def prepare(self, dataset) -> None:
        """Start from the maximum-likelihood frame parameters of the training set.

        Bernoulli: logits of the per-unit frequencies, smoothed as ``(k + 1/2) / (n + 1)`` so that
        a key never played in training keeps a finite probability; Gaussian: per-dimension mean and
        log standard deviation; categorical: log of the smoothed symbol frequencies. Training then
        only fits the length model (and polishes nothing else: these are the optimum).
        """
        frames = torch.cat([torch.as_tensor(s) for s in dataset.split("train")]).to(torch.float64)
        seen = (~torch.isnan(frames)).sum(0) if frames.is_floating_point() else frames.shape[0]
        with torch.no_grad():          # missing values (NaN) are left out of every statistic
            if self.spec.kind == "binary":
                p = (frames.nansum(0) + 0.5) / (seen + 1.0)
                self.frame_params.copy_(torch.log(p) - torch.log1p(-p))
            elif self.spec.kind == "real":
                mean = frames.nanmean(0).nan_to_num(0.0)
                var = ((frames - mean) ** 2).nanmean(0).nan_to_num(1.0)
                std = var.sqrt().clamp_min(1e-3)
                self.frame_params.copy_(torch.cat([mean, std.log()]))
            else:
                counts = torch.bincount(frames.long(), minlength=self.spec.dim).to(torch.float64)
                self.frame_params.copy_(torch.log((counts + 0.5) / (counts.sum() + 0.5 * self.spec.dim)))
