"""The temporal RBM (Sutskever & Hinton 2007; Sutskever 2013, §3.2-3.4).

**Model.** Every step is an RBM over ``(v_t, h_t)`` (Bernoulli hiddens; Bernoulli visibles for
binary data, Gaussian for real data, :class:`~probseq.frames.rbm.RBM`) whose biases depend on the
last ``m`` visible *and stochastic hidden* states (``m`` = ``delay``):

.. math::

    P(v_{1:T}, h_{1:T}) = \\prod_{t=1}^T P(v_t, h_t \\mid v_{t-m:t-1}, h_{t-m:t-1}), \\qquad
    P(v_t, h_t \\mid \\cdot) = \\frac{\\exp(-E(v_t, h_t; b_t, c_t))}{Z(b_t, c_t)},

    b_t = b_V + \\sum_{k=1}^m A_k v_{t-k}, \\qquad
    c_t = b_H + \\sum_{k=1}^m B_k h_{t-k} + \\sum_{k=1}^m C_k v_{t-k},

with ``A_k`` (``D x D``, visible-visible, ``vv``), ``B_k`` (``H x H``, hidden-hidden, ``hh``) and
``C_k`` (``H x D``, visible-hidden, ``vh``); each set can be switched off (``--set vv=false`` ...).
Before ``t = 1`` the history is the learned initial states ``v_{1-k}`` (``initial_visible[k-1]``)
and ``h_{1-k} = sigmoid(initial_hidden[k-1])`` (fixed real vectors, not sampled).

**Mean-field filtering** (thesis eq. 3.5). ``P(h_t | v_{1:t})`` is intractable (the past hiddens
are coupled); the TRBM approximates it by the factorial distribution obtained by replacing every
past hidden state by its filtered mean:

.. math:: \\bar h_t = \\sigma\\big(W^\\top (v_t / \\sigma_v) + \\bar c_t\\big), \\qquad
          \\bar c_t = b_H + \\textstyle\\sum_k B_k \\bar h_{t-k} + \\sum_k C_k v_{t-k}.

**Learning** (thesis eqs. 3.7-3.10). With the filtered means held fixed (detached: unlike the
RTRBM there is no backpropagation through time), each step contributes the CD-k gradient of its
conditional RBM ``log P(v_t | b_t, \\bar c_t)``; autograd of the surrogate
``sum_t [F_t(v_t) - F_t(\\tilde v_t)]`` with detached negatives ``\\tilde v_t`` gives
``dA_k = sum_t (v_t - \\tilde v_t) v_{t-k}^T`` (Bernoulli; divided by ``sigma^2`` for Gaussian
visibles), ``dB_k = sum_t (\\bar h_t - \\tilde h_t) \\bar h_{t-k}^T``,
``dC_k = sum_t (\\bar h_t - \\tilde h_t) v_{t-k}^T`` with ``\\tilde h_t = p(h | \\tilde v_t)``,
and the usual RBM terms for ``W``, ``b_V``, ``b_H``. ``tests/test_trbm.py`` checks these written
out by hand against the autograd gradient.

**Likelihood** (:mod:`probseq.models._trbm_likelihood`). What ``log_prob`` returns must be named
exactly. ``ais`` (the default; ``is`` for tiny models), ``raise`` and ``is`` estimate the TRBM's
own ``log P(v_{1:T})`` by importance sampling over hidden trajectories, with each step's
``log P(v_t | .)`` from AIS (no known bias direction), RAISE (biased downward) or enumeration (a
stochastic lower bound). ``filtered`` scores the mean-field filtering distribution
``Q(v_{1:T}) = prod_t P(v_t | b_t, \\bar c_t)``, a proper distribution but **not** ``P``: kind
``approximation``, never reported as an estimate of ``log P``.

**Prediction** (``predict_next``, ``--metric mse``): for frame ``t``, the biases ``(b_t, \\bar c_t)``
from the data ``v_{<t}`` and the filtered means ``\\bar h_{<t}``, then the damped mean-field
estimate of ``E[v_t]`` under that RBM (:meth:`~probseq.frames.rbm.RBM.mean_field`,
``mean_field_steps``) — the same rule as the RTRBM's, so the two compare like for like.

**Sampling** (thesis Alg. 1): for ``t = 1..T``, ``sample_steps`` rounds of Gibbs sampling in the
RBM with biases from the sampled history, keeping the hidden sample ``h_t ~ P(h_t | v_t, \\cdot)``
with the frame. ``sampler=rtrbm`` instead keeps the mean ``\\bar h_t`` (the "RTRBM procedure" the
thesis uses for comparisons; it samples exactly the distribution ``Q`` that ``log_prob`` scores).
A prefix (``--prime``) is absorbed by mean-field filtering.

**Denoising** (:meth:`TRBM.denoise`, thesis fig. 3.2; :mod:`probseq.models.trbm_denoising`):
online filtering of the noisy frames, then reconstruction.

**Stacking** (§3.4): :class:`~probseq.models.stacked_trbm.StackedTRBM`, a second TRBM trained
greedily on the first one's filtered hidden means (:mod:`probseq.models.stacked_trbm`).

**Training recipe** ``preset=thesis`` (as for the RTRBM, §3.10): static CD pre-training of ``W`` and
the biases (``pretrain_steps``, default 2000 with the preset), SGD with momentum 0.9 and a linearly
decaying learning rate, CD-``cd_steps`` then CD-``cd_steps_late`` after ``cd_switch`` of the steps.

**Real-valued frames (motion)**: the default ``delay`` is 3 (Taylor, Hinton & Roweis 2007; 1 for
binary frames), and ``prepare`` starts the visible-visible taps ``A_k`` and ``b_V`` from the
least-squares autoregression chosen on the validation split, with ``sigma`` set to its residual
standard deviation (:mod:`probseq.models._autoregressive`; ``ar_init``, ``sigma``); CD training
keeps the ridge prior the start was chosen with on the taps (``ar_train=prior``; ``free``,
``fixed``); the recipe validates by the next-frame squared error at the start and every 50 steps
and keeps the best weights, so a run never ends worse on validation than its start. Samples draw
the visible noise when ``sigma`` was fitted and are noise-free means otherwise (``sample_visible``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.frames.rbm import RBM, check_scorable_frames
from probseq.models._autoregressive import (AutoregressivePrior, check_ar_train, resolve_sample_visible,
                                            start_from_autoregression)
from probseq.models._rbm_common import (VALIDATION_HYPERPARAMETERS, check_validation_criterion,
                                        initialise_from_frames, likelihood_validation_loss,
                                        prediction_loss, resolve_estimator, scores_likelihood,
                                        thesis_cd_steps)
from probseq.models._trbm_likelihood import (TRBM_ESTIMATORS, TRBM_QUICK_AIS, default_trbm_estimator,
                                             trbm_log_prob)
from probseq.models.base import LogProb, SequenceModel
from probseq.models.capabilities import instance_capability
from probseq.models.registry import register_model
from probseq.models.trbm_denoising import denoise

__all__ = ["TRBM"]

PRESETS = ("none", "thesis")
SAMPLERS = ("trbm", "rtrbm")
#: delay taps for real-valued frames (Taylor, Hinton & Roweis 2007 condition on n = 3 past frames)
_MOTION_DELAY = 3
#: the recipe for real-valued frames (motion): validated by the next-frame error, keep the best
_MOTION_TRAINING = {"lr": 1e-3, "keep": "best", "patience": 20, "eval_every": 50, "validate_at_start": True}
_THESIS_TRAINING = {"optimizer": "sgd", "momentum": 0.9, "lr_schedule": "linear", "lr": 0.01}


@dataclass
class _History:
    """Sampling state: the last ``m`` visible frames and hidden states, newest first."""

    visible: list[Tensor]          # m tensors (n, D): v_{t-1}, ..., v_{t-m}
    hidden: list[Tensor]           # m tensors (n, H): h_{t-1}, ..., h_{t-m}
    pending_hidden: Tensor | None  # h_t drawn together with the frame by draw_frame


@register_model
class TRBM(SequenceModel):
    """Temporal RBM; see the module docstring for the maths, the estimators and the recipes.

    Hyperparameters:
        hidden: ``H``. delay: ``m``, the number of delay taps. vv / vh / hh: include the
        visible-visible, visible-hidden and hidden-hidden connections. cd_steps: ``k`` of CD-k.
        sample_steps: Gibbs rounds per sampled frame. sampler: ``trbm`` (stochastic hidden
        history, Alg. 1) or ``rtrbm`` (mean-field history). mean_field_steps: iterations of the
        prediction. ais_chains / ais_steps / exact_max_units: the likelihood estimators (per-step
        AIS chains x intermediate distributions: quick by default, ``--estimator ais-20x1000``
        for a tighter estimate).
        sigma / learn_sigma: Gaussian visibles. init_std: weight scale. preset, cd_steps_late,
        cd_switch, pretrain_steps, pretrain_cd, pretrain_lr: the thesis recipe.
    """

    name = "trbm"
    estimators = TRBM_ESTIMATORS
    data_kinds = ("binary", "real")
    hyperparameters: ClassVar[dict[str, Any]] = {
        "hidden": 100, "delay": None, "vv": True, "vh": True, "hh": True,
        "cd_steps": 10, "sample_steps": 100, "sampler": "trbm", "mean_field_steps": 20,
        **TRBM_QUICK_AIS, "exact_max_units": 12,
        "sigma": None, "learn_sigma": False, "init_std": 0.01,
        "ar_init": None, "ar_train": "prior", "sample_visible": "auto",
        "preset": "none", "cd_steps_late": 25, "cd_switch": 0.5,
        "pretrain_steps": None, "pretrain_cd": 5, "pretrain_lr": 0.01, **VALIDATION_HYPERPARAMETERS,
    }
    contract_example = {"spec": DataSpec("binary", 4),
                        "hyper": {"hidden": 3, "delay": 2, "cd_steps": 2, "sample_steps": 5,
                                  "init_std": 0.5}}

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        cfg = self.config
        check_validation_criterion(cfg)
        if cfg["preset"] not in PRESETS:
            raise UserError(f"unknown preset {cfg['preset']!r}; expected one of {', '.join(PRESETS)}")
        if cfg["sampler"] not in SAMPLERS:
            raise UserError(f"unknown sampler {cfg['sampler']!r}; expected one of {', '.join(SAMPLERS)}")
        real = spec.kind == "real"
        if cfg["delay"] is None:
            cfg["delay"] = _MOTION_DELAY if real else 1
        if cfg["ar_init"] is None:
            cfg["ar_init"] = real and bool(cfg["vv"])
        for key in ("hidden", "delay", "cd_steps", "sample_steps"):
            if int(cfg[key]) < 1:
                raise UserError(f"{key} must be a positive integer, got {cfg[key]}")
        d, h, m = spec.dim, int(cfg["hidden"]), int(cfg["delay"])
        std = float(cfg["init_std"])
        self.delay = m
        self.rbm = RBM(d, h, "gaussian" if real else "bernoulli",
                       sigma=1.0 if cfg["sigma"] is None else float(cfg["sigma"]),
                       learn_sigma=bool(cfg["learn_sigma"]), init_std=std)
        self.sample_visible_mean = resolve_sample_visible(
            str(cfg["sample_visible"]), real, calibrated=bool(cfg["ar_init"]) and cfg["sigma"] is None)
        if bool(cfg["ar_init"]) and not (real and bool(cfg["vv"])):
            raise UserError("ar_init needs real-valued frames and the visible-visible connections (vv=true)")
        self.use_vv, self.use_vh, self.use_hh = bool(cfg["vv"]), bool(cfg["vh"]), bool(cfg["hh"])
        #: ``[A_1 ... A_m]`` (D, m D); ``[C_1 ... C_m]`` (H, m D); ``[B_1 ... B_m]`` (H, m H)
        self.vv_weight = nn.Parameter(torch.randn(d, m * d) * std) if self.use_vv else None
        self.vh_weight = nn.Parameter(torch.randn(h, m * d) * std) if self.use_vh else None
        self.hh_weight = nn.Parameter(torch.randn(h, m * h) * std) if self.use_hh else None
        #: ``v_0, v_{-1}, ...`` and the logits of ``h_0, h_{-1}, ...`` (learned initial states)
        self.initial_visible = nn.Parameter(torch.zeros(m, d)) if (self.use_vv or self.use_vh) else None
        self.initial_hidden = nn.Parameter(torch.zeros(m, h)) if self.use_hh else None
        self.cd_steps = int(cfg["cd_steps"])
        #: the autoregression ``prepare`` started the taps from (``None`` before, or without ``ar_init``)
        self.autoregressive_fit = None
        #: the prior kept on the taps during CD (``ar_train``, :mod:`probseq.models._autoregressive`)
        check_ar_train(str(cfg["ar_train"]))
        self.ar_prior = (AutoregressivePrior(d, self.delay * d) if self.vv_weight is not None else None)
        if self.vv_weight is not None and cfg["ar_train"] == "fixed":
            self.vv_weight.requires_grad_(False)
        self.exact_by_default = self.rbm.exact_units() <= int(cfg["exact_max_units"])

    @instance_capability("estimate")
    def likelihood_kind(self) -> str:
        """The default estimator's kind: ``is`` (a ``bound``) for a TRBM small enough to enumerate,
        else ``ais`` (an ``estimate``, the family's answer)."""
        return "bound" if self.exact_by_default else "estimate"

    @instance_capability({"lr": 1e-3})
    def training_defaults(self) -> dict[str, Any]:
        """The recipe: ``preset=thesis`` (SGD with momentum, linear decay), the motion recipe for
        real-valued frames, else the family's ``{"lr": 1e-3}``."""
        if self.config["preset"] == "thesis":
            return dict(_THESIS_TRAINING)
        if self.spec.kind == "real":
            return dict(_MOTION_TRAINING)
        return {"lr": 1e-3}

    # ---------------------------------------------------------------- history and biases
    def _taps(self, seq: Tensor, initial: Tensor) -> Tensor:
        """``[s_{t-1}, ..., s_{t-m}]`` for every ``t``: ``(B, T, m * F)`` from ``seq`` ``(B, T, F)``.

        ``initial[k-1]`` stands for ``s_{1-k}``.
        """
        n, steps, _ = seq.shape
        m = self.delay
        ext = torch.cat([initial.flip(0).to(seq.dtype).expand(n, -1, -1), seq], 1)  # s_{1-m} .. s_T
        return torch.cat([ext[:, m - k: m - k + steps] for k in range(1, m + 1)], -1)

    def _visible_part(self, vtaps: Tensor | None) -> tuple[Tensor, Tensor]:
        """``b_t`` and the data-only part of ``c_t`` (``b_H + sum_k C_k v_{t-k}``) from visible taps."""
        vb, hb = self.rbm.visible_bias, self.rbm.hidden_bias
        if vtaps is not None and self.vv_weight is not None:
            vb = vb + vtaps @ self.vv_weight.t()
        if vtaps is not None and self.vh_weight is not None:
            hb = hb + vtaps @ self.vh_weight.t()
        return vb, hb

    def _initial_hidden_states(self) -> Tensor:
        return torch.sigmoid(self.initial_hidden)

    def data_biases(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The parts of every step's biases that the frames alone fix, for frames ``x`` ``(B, T, D)``.

        Returns ``(b, static_c)``: the visible biases ``b_t = b_V + sum_k A_k v_{t-k}`` ``(B, T, D)``
        (or ``(D,)`` without ``vv`` and ``vh``) and ``static_c_t = b_H + sum_k C_k v_{t-k}``
        ``(B, T, H)``; the hidden-hidden part ``sum_k B_k h_{t-k}`` depends on the hidden trajectory
        (:meth:`hidden_trajectory`).
        """
        n, steps, _ = x.shape
        vtaps = self._taps(x, self.initial_visible) if self.initial_visible is not None else None
        vb, static_c = self._visible_part(vtaps)
        return vb, static_c.expand(n, steps, -1)

    def filter(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean-field filtering (eq. 3.5) of zero-padded frames ``x`` ``(B, T, D)``.

        Returns ``(b, c, hbar)``: the visible biases ``(B, T, D)`` (or ``(D,)`` without ``vv``)
        and hidden biases ``(B, T, H)`` of the filtered conditional RBMs, and the filtered means
        ``hbar`` ``(B, T, H)`` (detached). ``b`` and ``c`` carry gradients to every parameter,
        with ``hbar`` held fixed (the TRBM's learning rule). The recursion runs without autograd;
        the differentiable biases are then one vectorised product over all steps.
        """
        vb, static_c = self.data_biases(x)
        drive = self.rbm.hidden_drive(x)                                     # (B, T, H)
        if self.hh_weight is None:
            c = static_c
            return vb, c, torch.sigmoid(drive + c).detach()
        with torch.no_grad():
            _, hbar = self.hidden_trajectory(static_c, drive)
        htaps = self._taps(hbar, self._initial_hidden_states())
        return vb, static_c + htaps @ self.hh_weight.t(), hbar

    def hidden_trajectory(self, static_c: Tensor, drive: Tensor, *, sample: bool = False,
                          generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """The recursion through the hidden-hidden taps (``hh`` on), one step at a time.

        For ``t = 1..T``: ``c_t = static_c_t + sum_k B_k h_{t-k}`` and ``h_t = sigma(drive_t + c_t)``
        (the filtered mean, eq. 3.5), or ``h_t ~ Bernoulli(sigma(drive_t + c_t))`` with
        ``sample=True`` (one hidden trajectory, drawn from ``generator``); ``h_{1-k}`` are the
        learned initial states. ``static_c`` ``(B, T, H)`` is ``b_H + sum_k C_k v_{t-k}``, ``drive``
        ``(B, T, H)`` is ``W^T (v_t / sigma)``. Returns ``(c, h)``, both ``(B, T, H)``; call it
        without autograd (the learning rule holds the hidden means fixed).
        """
        n = static_c.shape[0]
        history = list(self._initial_hidden_states().expand(n, -1, -1).unbind(1))  # h_0, h_{-1}, ...
        weight = self.hh_weight.t()
        biases, states = [], []
        for s_t, d_t in zip(static_c.unbind(1), drive.unbind(1)):
            c_t = s_t + torch.cat(history, -1) @ weight
            h_t = torch.sigmoid(d_t + c_t)
            if sample:
                h_t = torch.bernoulli(h_t, generator=generator)
            biases.append(c_t)
            states.append(h_t)
            history = [h_t] + history[:-1]
        return torch.stack(biases, 1), torch.stack(states, 1)

    # ---------------------------------------------------------------- likelihood
    def check_estimator(self, estimator: str | None) -> str:
        if estimator is None:
            return default_trbm_estimator(self.exact_by_default)
        return resolve_estimator(self, estimator, self.exact_by_default)

    def _check_frames(self, batch: Batch) -> None:
        self.validate_batch(batch)
        check_scorable_frames(batch.values[batch.mask], self.rbm.gaussian)

    def log_prob(self, batch: Batch, *, estimator: str | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None, ais_steps: int | None = None) -> LogProb:
        """``log P(v_{1:T})`` by ``ais``/``raise``/``is``, or the filtering approximation ``filtered``
        (:mod:`probseq.models._trbm_likelihood`); ``samples``: hidden trajectories (chains for ``filtered``)."""
        method = self.check_estimator(estimator)
        self._check_frames(batch)
        return trbm_log_prob(self, batch, self.frames_of(batch), method, samples=samples, generator=generator,
                             ais_steps=ais_steps)

    # ---------------------------------------------------------------- training
    def loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        """The CD-k surrogate per frame of every filtered conditional RBM (filtered means detached)."""
        self.validate_batch(batch)
        x = self.frames_of(batch)
        mask = batch.mask
        vb, c, _ = self.filter(x)
        vb_real = vb[mask] if vb.dim() > 1 else vb
        surrogate = self.rbm.cd_loss(x[mask], self.cd_steps, visible_bias=vb_real, hidden_bias=c[mask],
                                     generator=generator)
        return surrogate.sum() / batch.n_frames + self.tap_prior_penalty()

    def carry_problem(self) -> str:
        return ("trbm's hidden delay taps are stochastic, so it carries no deterministic state from one "
                "window to the next (rtrbm does)")

    def tap_prior_penalty(self) -> Tensor:
        """The prior on the visible taps per frame (``ar_train=prior``; 0 before ``prepare`` and otherwise)."""
        if self.ar_prior is None:
            return self.rbm.weight.new_zeros(())
        return self.ar_prior.penalty(self.vv_weight)

    def on_train_step(self, step: int, total_steps: int) -> None:
        self.cd_steps = thesis_cd_steps(self.config, step, total_steps, self.cd_steps)

    def validation_loss(self, batch: Batch) -> float:
        """The estimated NLL per frame for 0/1 frames (the default estimator with ``valid_chains``
        trajectories and a fixed seed, :func:`~probseq.models._rbm_common.likelihood_validation_loss`),
        else the squared error (real) or cross-entropy (binary) of the next-frame predictions."""
        if scores_likelihood(self, self.rbm, batch):
            return likelihood_validation_loss(self, batch)
        with torch.no_grad():
            x = self.frames_of(batch)
            return float(prediction_loss(self.rbm, x, self._predict(x), batch.mask))

    def prepare(self, dataset: Any) -> None:
        """Visible biases from the data and static CD pre-training, as for the RTRBM
        (:func:`~probseq.models._rbm_common.initialise_from_frames`); the learned initial visible
        states start at the training mean."""
        frames = torch.cat([torch.as_tensor(e, dtype=self.rbm.weight.dtype) for e in dataset.split("train")])
        mean = initialise_from_frames(self.rbm, frames, self.config)
        if self.initial_visible is not None:
            with torch.no_grad():
                self.initial_visible.copy_(mean.expand_as(self.initial_visible))
        if self.config["ar_init"]:
            self.autoregressive_fit = start_from_autoregression(
                self.rbm, self.vv_weight, dataset, self.delay, set_sigma=self.config["sigma"] is None,
                prior=self.ar_prior if self.config["ar_train"] == "prior" else None)

    @property
    def autoregressive_start(self) -> bool:
        """Whether ``prepare`` starts the visible taps from a ridge autoregression (``ar_init``):
        ``evaluate --metric mse`` then reports that start as a baseline
        (:func:`~probseq.evaluate.prediction.starting_point_errors`)."""
        return bool(self.config["ar_init"])

    # ---------------------------------------------------------------- prediction and denoising
    def _predict(self, x: Tensor) -> Tensor:
        vb, c, _ = self.filter(x)
        return self.rbm.mean_field(vb, c, steps=int(self.config["mean_field_steps"]))

    def predict_next(self, batch: Batch) -> Tensor:
        """Mean-field ``E[v_t]`` of the filtered conditional RBM of step ``t`` (module docstring)."""
        self.validate_batch(batch)
        with torch.no_grad():
            return self._predict(self.frames_of(batch))

    def denoise(self, noisy: Tensor) -> Tensor:
        """Online denoising by filtering then reconstruction (thesis fig. 3.2); ``(B, T, D)`` -> same.

        See :func:`probseq.models.trbm_denoising.denoise`.
        """
        return denoise(self, noisy)

    @torch.no_grad()
    def filtered_hidden(self, batch: Batch) -> list[Tensor]:
        """The filtered means ``hbar`` of each sequence, ``(T_i, H)`` (the data for a stacked layer)."""
        self.validate_batch(batch)
        _, _, hbar = self.filter(self.frames_of(batch))
        return [hbar[i, : int(n)] for i, n in enumerate(batch.lengths)]

    # ---------------------------------------------------------------- sampling hooks
    def initial_state(self, n, *, target_length=None):
        d, h, m = self.rbm.n_visible, self.rbm.n_hidden, self.delay
        dtype = self.rbm.weight.dtype
        vis = (self.initial_visible.detach() if self.initial_visible is not None
               else torch.zeros(m, d, dtype=dtype))
        hid = (self._initial_hidden_states().detach() if self.initial_hidden is not None
               else torch.zeros(m, h, dtype=dtype))
        return _History([v.expand(n, -1) for v in vis], [c.expand(n, -1) for c in hid], None)

    def step_biases(self, state: _History) -> tuple[Tensor, Tensor]:
        """``(b_t, c_t)`` ``(n, D)``, ``(n, H)`` of the next frame's RBM from the sampling history."""
        n = state.visible[0].shape[0]
        vtaps = torch.cat(state.visible, -1) if self.initial_visible is not None else None
        vb, hb = self._visible_part(vtaps)
        if self.hh_weight is not None:
            hb = hb + torch.cat(state.hidden, -1) @ self.hh_weight.t()
        return vb.expand(n, -1), hb.expand(n, -1)

    #: ``probseq infill``: clamped block Gibbs per frame given the past (:mod:`probseq.missing.infill`)
    infill_method = "gibbs"

    def next_frame_rbm(self, state):
        """The next frame's RBM and its biases ``(rbm, b_t (n, D), c_t (n, H))``, for infilling."""
        vb, hb = (b.detach() for b in self.step_biases(state))
        return self.rbm, vb, hb

    def draw_frame(self, state, *, temperature=1.0, generator=None):
        vb, hb = (b.detach() for b in self.step_biases(state))
        v = self.rbm.sample(steps=int(self.config["sample_steps"]), visible_bias=vb, hidden_bias=hb,
                            temperature=temperature, generator=generator,
                            mean_visible=self.sample_visible_mean)
        pending = None
        if self.config["sampler"] == "trbm":
            pending, _ = self.rbm.sample_hidden(v, hb, temperature=temperature, generator=generator)
        return v, _History(state.visible, state.hidden, pending)

    def advance(self, state, frame):
        frame = frame.to(self.rbm.weight.dtype)
        if state.pending_hidden is not None:
            h_t = state.pending_hidden
        else:
            _, hb = self.step_biases(state)
            h_t = torch.sigmoid(self.rbm.hidden_logits(frame, hb))
        return self.next_history(state, frame, h_t)

    def next_history(self, state: _History, visible: Tensor, hidden: Tensor) -> _History:
        """The sampling history after a frame ``visible`` ``(n, D)`` with hidden state ``hidden`` ``(n, H)``."""
        return _History([visible] + state.visible[:-1], [hidden] + state.hidden[:-1], None)

