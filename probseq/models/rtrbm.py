"""The recurrent temporal RBM (Sutskever, Hinton & Taylor 2008; Sutskever 2013, §3.7-3.10).

Each step is an RBM over ``v_t`` whose hidden bias depends on a *deterministic* mean-field state:

.. math::

    P(v_{1:T}) = \\prod_{t=1}^{T} P_t(v_t), \\qquad
    P_t(v_t) \\propto \\sum_{h_t} \\exp\\big(-E(v_t, h_t; b_V, c_t)\\big),

    c_1 = b_{\\text{init}}, \\qquad c_t = b_H + W' r_{t-1}\\ (t > 1), \\qquad
    r_t = \\sigma\\big(W^\\top (v_t / \\sigma_v) + c_t\\big),

so ``r_t = E[h_t | v_{1:t}]``, the hidden posterior of step ``t``'s RBM (inference, thesis Alg. 4,
is one deterministic forward pass). ``W`` ``(D, H)``, ``b_V``, ``b_H`` belong to the step RBM
(:class:`~probseq.frames.rbm.RBM`, Bernoulli visibles for binary data, Gaussian for real data);
``W'`` ``(H, H)`` is ``recurrent_weight`` and ``b_init`` ``initial_hidden_bias``.

**Sampling** (thesis Alg. 3): for ``t = 1..T``: Gibbs-sample ``v_t`` from the RBM with hidden bias
``c_t`` (``sample_steps`` rounds), then ``r_t = sigma(W^T v_t + c_t)``.

**Gradient** (thesis eqs. 3.23-3.25): ``dL/dtheta`` of ``L = sum_t log P_t(v_t)`` is the sum of each
step's RBM gradient with ``r_{t-1}`` held fixed plus backpropagation through time of
``dL/dr_t``; with ``delta_t = dL/dc_t`` the recursion is

.. math::

    \\delta_t = (r_t - E_{P_t}[h_t]) + \\frac{\\partial L}{\\partial r_t} \\odot r_t (1 - r_t),
    \\qquad \\frac{\\partial L}{\\partial r_{t-1}} = W'^\\top \\delta_t,

``dL/dW' = sum_{t>1} delta_t r_{t-1}^T``, ``dL/db_H = sum_{t>1} delta_t``, ``dL/db_init = delta_1``,
``dL/dW = sum_t [v_t r_t^T - E_{P_t}[v h^T] + v_t (dL/dr_t * r_t (1 - r_t))^T]``,
``dL/db_V = sum_t (v_t - E_{P_t}[v])``. probseq gets exactly this from autograd of the CD surrogate
``sum_t [F_t(v_t) - F_t(v~_t)]`` with ``c_t`` *not* detached and the negatives ``v~_t`` (``cd_steps``
Gibbs rounds from the data, run for all time steps at once) detached, which replaces the model
expectations by CD estimates; ``tests/test_rtrbm.py`` checks the equations above written out by
hand against it (and, with exact expectations, against autograd of the exact likelihood).

**Likelihood**: ``sum_t [-F_t(v_t) - log Z_t]``, with every step's ``log Z_t`` exact (tiny models) or
by AIS batched over all time steps (kind ``estimate``, biased upward); ``--estimator raise``
estimates every ``log P_t(v_t)`` by reverse annealing instead (kind ``estimate``, biased downward),
so the two bracket the log-likelihood (:mod:`probseq.likelihood`).

**Prediction** (``predict_next``): for step ``t``, ``c_t`` from the data ``v_{<t}``, then an
estimate of ``E[v_t]`` under that step's RBM: by default (``predict=gibbs``) the average of
``E[v | h]`` over ``predict_chains`` Gibbs chains of ``predict_steps`` rounds
(:meth:`~probseq.frames.rbm.RBM.gibbs_mean`, from a generator seeded afresh on every call, so the
prediction is deterministic); ``predict=mean-field`` uses damped naive mean-field
(``mean_field_steps`` iterations) instead — cheaper, but on bouncing balls its error was 1.2–1.4x the
Gibbs average's (``benchmarks/RESULTS.md``). The validation score for early stopping always
uses mean-field (cheap).

**Training recipe** ``preset=thesis`` (Sutskever 2013, §3.10): ``W`` and the biases first trained
as a static RBM by CD-5 on the training frames (``prepare``, ``pretrain_steps`` minibatches of
100 frames, default 2000), then SGD with momentum 0.9 and a learning rate decaying linearly to 0,
CD-``cd_steps`` (10) for the first ``cd_switch`` fraction (0.5; the fraction is our choice) of the
steps and CD-``cd_steps_late`` (25) afterwards. ``preset=none`` uses Adam and a fixed CD-k.

**Real-valued frames (motion)**: by default the step RBMs also get the conditional RBM's delay
taps from the last ``delay`` (3) frames (Taylor, Hinton & Roweis 2007),

.. math:: b_t = b_V + \\sum_{k=1}^m A_k v_{t-k}, \\qquad
          c_t = [b_{\\text{init}} \\text{ or } b_H + W' r_{t-1}] + \\sum_{k=1}^m C_k v_{t-k},

with ``v_0, v_{-1}, ...`` learned (``initial_visible``); ``delay=0`` (the default for binary
frames) is the thesis RTRBM. ``prepare`` starts ``A`` and ``b_V`` from the least-squares
autoregression chosen on the validation split and sets ``sigma`` to its residual standard
deviation (:mod:`probseq.models._autoregressive`; ``ar_init``, ``sigma``); CD training keeps the
ridge prior the start was chosen with on the taps (``ar_train=prior``; ``free``, ``fixed``); the
recipe validates by the next-frame squared error at the start and every 50 steps and keeps the
best weights, so a run never ends worse on validation than its start. Samples draw the visible
noise when ``sigma`` was fitted and are noise-free means otherwise (``sample_visible``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.frames.rbm import MEAN_METHODS, RBM, check_scorable_frames, expected_visible
from probseq.lengths import make_length_model
from probseq.models._autoregressive import (AutoregressivePrior, check_ar_train, delay_taps, resolve_sample_visible,
                                            start_from_autoregression)
from probseq.models._rbm_common import (QUICK_AIS, VALIDATION_HYPERPARAMETERS, annealing_setting,
                                        check_validation_criterion,
                                        estimator_label, initialise_from_frames, likelihood_kind,
                                        likelihood_validation_loss, prediction_loss, resolve_estimator,
                                        scores_likelihood, sequence_log_prob, thesis_cd_steps)
from probseq.models.base import LogProb, SequenceModel
from probseq.models.capabilities import instance_capability
from probseq.models.registry import register_model

__all__ = ["RTRBM"]

PRESETS = ("none", "thesis")
#: the thesis recipe's optimiser: SGD with momentum 0.9, learning rate decayed linearly to 0, no clipping
_THESIS_TRAINING = {"optimizer": "sgd", "momentum": 0.9, "lr_schedule": "linear", "lr": 0.01, "clip": 0.0,
                    "keep": "last", "patience": 0}
#: delay taps for real-valued frames (Taylor, Hinton & Roweis 2007 condition on n = 3 past frames)
_MOTION_DELAY = 3
#: the recipe for real-valued frames (motion): the next-frame error is the validation score, keep the best
_MOTION_TRAINING = {"lr": 1e-3, "keep": "best", "patience": 20, "eval_every": 50, "validate_at_start": True}


@dataclass
class _RTRBMState:
    hidden_bias: Tensor     # (n, H): the recurrent part of c_t (without the delay taps)
    r: Tensor | None        # (n, H): r_{t-1}, the mean-field state after the frames so far
    visible: list[Tensor] | None = None  # m tensors (n, D): v_{t-1}, ..., v_{t-m} (delay taps)


@dataclass
class _RTRBMWindowState:
    bias: Tensor            # (n, H): b_H + W' r_{t-1} (b_init before the first frame), without the taps
    history: Tensor | None  # (n, m, D): v_{t-m} .. v_{t-1}, oldest first (delay taps), or None


@register_model
class RTRBM(SequenceModel):
    """Recurrent temporal RBM; see the module docstring for the maths and the training recipe.

    Hyperparameters:
        hidden: ``H``. cd_steps: ``k`` of CD-k. sample_steps: Gibbs rounds per sampled frame.
        predict / predict_chains / predict_steps: how ``predict_next`` forms ``E[v_t]``.
        mean_field_steps: iterations of the mean-field prediction (and validation score). ais_chains / ais_steps: the
        default AIS setting per frame (quick: about a minute on JSB's test split; ``--samples``
        overrides the chains, ``--estimator ais-20x1000`` asks for a tighter one). exact_max_units: the default estimator is
        exact when the smaller layer has at most this many units. sigma / learn_sigma: Gaussian
        visibles. init_std: weight initialisation. preset: ``none | thesis``. cd_steps_late /
        cd_switch: the thesis CD-k switch. pretrain_steps: static CD pre-training minibatches
        (``None``: 2000 with ``preset=thesis``, else 0). pretrain_cd: its ``k``.
        length: ``none | halting`` (a halting unit read from ``r_t``). valid_criterion
        (``auto | nll | prediction``), valid_chains, valid_ais_steps, valid_seed: what
        :meth:`validation_loss` measures (``auto``: the AIS-estimated NLL for 0/1 frames, else the
        next-frame prediction score).
    """

    name = "rtrbm"
    estimators = ("ais", "raise", "exact")
    data_kinds = ("binary", "real")
    hyperparameters: ClassVar[dict[str, Any]] = {
        "hidden": 100, "cd_steps": 10, "sample_steps": 100, "mean_field_steps": 20,
        "predict": "gibbs", "predict_chains": 20, "predict_steps": 25,
        **QUICK_AIS, "exact_max_units": 12,
        "sigma": None, "learn_sigma": False, "init_std": 0.01,
        "preset": "none", "cd_steps_late": 25, "cd_switch": 0.5,
        "pretrain_steps": None, "pretrain_cd": 5, "pretrain_lr": 0.01,
        "length": "none", "max_length": 1000, **VALIDATION_HYPERPARAMETERS,
        "delay": None, "vv": True, "vh": True, "ar_init": None, "ar_train": "prior", "sample_visible": "auto",
    }
    #: the trainer's keep=best, now by the AIS-estimated validation NLL (validation_loss): the
    #: next-frame proxy used before picked a far worse step (8.47 vs 6.30 nats/frame on JSB)
    contract_example = {"spec": DataSpec("binary", 4),
                        "hyper": {"hidden": 3, "cd_steps": 2, "sample_steps": 5, "length": "halting"}}

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        cfg = self.config
        check_validation_criterion(cfg)
        if cfg["preset"] not in PRESETS:
            raise UserError(f"unknown preset {cfg['preset']!r}; expected one of {', '.join(PRESETS)}")
        if cfg["predict"] not in MEAN_METHODS:
            raise UserError(f"predict must be one of {', '.join(MEAN_METHODS)}, got {cfg['predict']!r}")
        if cfg["length"] not in ("none", "halting"):
            raise UserError(f"the rtrbm supports length=none or length=halting, got {cfg['length']!r}")
        if int(cfg["hidden"]) < 1 or int(cfg["cd_steps"]) < 1 or int(cfg["sample_steps"]) < 1:
            raise UserError("hidden, cd_steps and sample_steps must be positive")
        h, d, real = int(cfg["hidden"]), spec.dim, spec.kind == "real"
        self.rbm = RBM(d, h, "gaussian" if real else "bernoulli",
                       sigma=1.0 if cfg["sigma"] is None else float(cfg["sigma"]),
                       learn_sigma=bool(cfg["learn_sigma"]), init_std=float(cfg["init_std"]))
        # the CRBM's autoregressive connections (module docstring), for real-valued frames by default
        if cfg["delay"] is None:
            cfg["delay"] = _MOTION_DELAY if real else 0
        m = self.delay = int(cfg["delay"])
        if m < 0:
            raise UserError(f"delay must be 0 or a positive integer, got {m}")
        if cfg["ar_init"] is None:
            cfg["ar_init"] = real and m > 0 and bool(cfg["vv"])
        if bool(cfg["ar_init"]) and not (real and m > 0 and bool(cfg["vv"])):
            raise UserError("ar_init needs real-valued frames, delay >= 1 and vv=true")
        std = float(cfg["init_std"])
        #: ``[A_1 ... A_m]`` (D, m D) into the visible bias, ``[C_1 ... C_m]`` (H, m D) into the hidden bias
        self.vv_weight = nn.Parameter(torch.randn(d, m * d) * std) if m and bool(cfg["vv"]) else None
        self.vh_weight = nn.Parameter(torch.randn(h, m * d) * std) if m and bool(cfg["vh"]) else None
        #: ``v_0, v_{-1}, ...``: the frames before the start (learned)
        self.initial_visible = (nn.Parameter(torch.zeros(m, d))
                                if self.vv_weight is not None or self.vh_weight is not None else None)
        self.sample_visible_mean = resolve_sample_visible(
            str(cfg["sample_visible"]), real, calibrated=bool(cfg["ar_init"]) and cfg["sigma"] is None)
        self.recurrent_weight = nn.Parameter(torch.randn(h, h) * float(cfg["init_std"]))
        self.initial_hidden_bias = nn.Parameter(torch.zeros(h))
        self.length_model = make_length_model(str(cfg["length"]), data_kind=spec.kind,
                                              max_length=int(cfg["max_length"]))
        self.halting = nn.Linear(h, 1) if self.length_model.head_dim else None
        #: k of CD-k for the next training step (changed by the thesis schedule)
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
        """``exact`` for an RTRBM whose RBMs are small enough to enumerate, else ``estimate`` (AIS,
        the family's answer)."""
        return "exact" if self.exact_by_default else "estimate"

    @instance_capability({"lr": 1e-3})
    def training_defaults(self) -> dict[str, Any]:
        """The recipe: ``preset=thesis`` (SGD with momentum, linear decay), the motion recipe for
        real-valued frames, else the family's ``{"lr": 1e-3}``."""
        if self.config["preset"] == "thesis":
            return dict(_THESIS_TRAINING)
        if self.spec.kind == "real":
            return dict(_MOTION_TRAINING)
        return {"lr": 1e-3}

    # ---------------------------------------------------------------- the mean-field recursion
    def _frames(self, batch: Batch) -> Tensor:
        """The zero-padded frames in the model's floating-point type (:meth:`frames_of`)."""
        return self.frames_of(batch)

    def hidden_biases(self, x: Tensor, *, bias: Tensor | None = None,
                      history: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The step RBMs' hidden biases ``c_t`` and the states ``r_t`` for frames ``x`` ``(B, T, D)``.

        Returns ``(c, r)``, both ``(B, T, H)``: ``c[:, t]`` is the hidden bias of the RBM that
        generates ``x[:, t]`` (from ``x[:, :t]``), ``r[:, t] = sigmoid(W^T x_t + c_t)``. The input
        drive ``W^T x_t`` is one matrix product for all steps; only the recurrence loops.
        ``bias`` ``(B, H)`` and ``history`` ``(B, m, D)`` continue from earlier frames (a time
        window, :meth:`log_prob_window`): the recurrent part of the first frame's hidden bias and
        the ``m`` frames before ``x``, oldest first; by default the sequences start here.
        """
        drive = self.rbm.hidden_drive(x).unbind(1)
        taps = self._tap_hidden_bias(x, history)
        taps = taps.unbind(1) if taps is not None else [None] * len(drive)
        bias = self.initial_hidden_bias.expand(x.shape[0], -1) if bias is None else bias
        biases, states = [], []
        for d_t, tap_t in zip(drive, taps):
            if tap_t is not None:
                bias = bias + tap_t
            r = torch.sigmoid(d_t + bias)
            biases.append(bias)
            states.append(r)
            bias = self.rbm.hidden_bias + r @ self.recurrent_weight.t()
        return torch.stack(biases, 1), torch.stack(states, 1)

    def _visible_taps(self, x: Tensor, history: Tensor | None = None) -> Tensor | None:
        """``[v_{t-1}, ..., v_{t-m}]`` for every step, ``(B, T, m D)``, or ``None`` without taps;
        ``history`` ``(B, m, D)``: the frames before ``x``, oldest first (default: the start)."""
        if self.initial_visible is None:
            return None
        if history is None:
            return delay_taps(x, self.initial_visible, self.delay)
        ext, m, steps = torch.cat([history.to(x.dtype), x], 1), self.delay, x.shape[1]
        return torch.cat([ext[:, m - k: m - k + steps] for k in range(1, m + 1)], -1)

    def _tap_hidden_bias(self, x: Tensor, history: Tensor | None = None) -> Tensor | None:
        """``sum_k C_k v_{t-k}``, ``(B, T, H)``, or ``None`` without ``vh`` taps."""
        if self.vh_weight is None:
            return None
        return self._visible_taps(x, history) @ self.vh_weight.t()

    def visible_biases(self, x: Tensor, history: Tensor | None = None) -> Tensor:
        """The step RBMs' visible biases ``b_t = b_V + sum_k A_k v_{t-k}``, ``(B, T, D)`` (``(D,)`` without ``vv``)."""
        if self.vv_weight is None:
            return self.rbm.visible_bias
        return self.rbm.visible_bias + self._visible_taps(x, history) @ self.vv_weight.t()

    def _length_log_prob(self, batch: Batch, r: Tensor) -> Tensor:
        if self.halting is None:
            return self.length_model.log_prob(batch.lengths, None)
        return self.length_model.log_prob(batch.lengths, self.halting(r)[..., 0])

    # ---------------------------------------------------------------- likelihood
    def check_estimator(self, estimator: str | None) -> str:
        return resolve_estimator(self, estimator, self.exact_by_default)

    def log_prob(self, batch: Batch, *, estimator: str | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None, ais_steps: int | None = None) -> LogProb:
        """``log P(v_{1:T})`` (plus the length term); ``samples`` = AIS/RAISE chains, ``ais_steps`` = intermediate distributions."""
        method, chains, steps = annealing_setting(self.check_estimator(estimator), samples, ais_steps,
                                                  self.config["ais_chains"], self.config["ais_steps"])
        self.validate_batch(batch)
        self.rbm_frame_check(batch)
        x = self._frames(batch)
        c, r = self.hidden_biases(x)
        values, stderr = sequence_log_prob(self.rbm, x, self.visible_biases(x), c, batch.mask,
                                           method=method, chains=chains, steps=steps, generator=generator)
        values = values + self._length_log_prob(batch, r)
        return LogProb(values, likelihood_kind(method), estimator_label(method, chains, steps), stderr,
                       length_included=self.length_model.models_length)

    # time windows (probseq.data.window): the state is the recurrent part of the next hidden bias
    # and the last m frames (delay taps); every frame's log Z_t has its own AIS / RAISE chains, so
    # windowing leaves the estimator unchanged
    supports_time_windows: ClassVar[bool] = True

    def window_state(self, batch: Batch) -> _RTRBMWindowState:
        n = batch.batch_size
        history = (None if self.initial_visible is None
                   else self.initial_visible.flip(0).expand(n, -1, -1))   # v_{1-m} .. v_0
        return _RTRBMWindowState(self.initial_hidden_bias.expand(n, -1), history)

    def log_prob_window(self, window, state: _RTRBMWindowState, *, estimator: str | None = None,
                        samples: int | None = None, generator: torch.Generator | None = None,
                        ais_steps: int | None = None) -> tuple[LogProb, _RTRBMWindowState]:
        """:meth:`log_prob` of one time window given the state after the frames before it."""
        method, chains, steps = annealing_setting(self.check_estimator(estimator), samples, ais_steps,
                                                  self.config["ais_chains"], self.config["ais_steps"])
        frames = window.frames
        self.validate_batch(frames)
        self.rbm_frame_check(frames)
        n = window.batch_size
        history = None if state.history is None else state.history[:n]
        x = self._frames(frames)
        c, r = self.hidden_biases(x, bias=state.bias[:n], history=history)
        values, stderr = sequence_log_prob(self.rbm, x, self.visible_biases(x, history), c, frames.mask,
                                           method=method, chains=chains, steps=steps, generator=generator)
        stop = None if self.halting is None else self.halting(r)[..., 0]
        values = values + window.length_log_prob(self.length_model, stop)
        after = _RTRBMWindowState(self.rbm.hidden_bias + r[:, -1] @ self.recurrent_weight.t(),
                                  None if history is None else torch.cat([history, x], 1)[:, -self.delay:])
        return LogProb(values, likelihood_kind(method), estimator_label(method, chains, steps), stderr,
                       length_included=self.length_model.models_length), after

    def rbm_frame_check(self, batch: Batch) -> None:
        """Binary data must be 0/1 and every frame finite (checked on the real frames only)."""
        check_scorable_frames(batch.values[batch.mask], self.rbm.gaussian)

    # ---------------------------------------------------------------- training
    def loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        """CD-k surrogate per frame (BPTT through ``r``), minus the length log-likelihood per frame."""
        self.validate_batch(batch)
        x = self._frames(batch)
        mask = batch.mask
        c, r = self.hidden_biases(x)
        frames, c_real = x[mask], c[mask]
        vb = self.visible_biases(x)
        vb_real = vb[mask] if vb.dim() > 1 else vb
        surrogate = self.rbm.cd_loss(frames, self.cd_steps, visible_bias=vb_real, hidden_bias=c_real,
                                     generator=generator)
        total = surrogate.sum() - self._length_log_prob(batch, r).sum()
        return total / batch.n_frames + self.tap_prior_penalty()

    # truncated BPTT (probseq.train.streams): the window state above, carried between training windows
    carries_training_state: ClassVar[bool] = True

    def carry_problem(self) -> str | None:
        if self.length_model.name != "none":
            return f"length={self.length_model.name} scores whole sequences (carrying needs length=none)"
        return None

    def window_loss(self, window, state: _RTRBMWindowState, *, generator: torch.Generator | None = None
                    ) -> tuple[Tensor, _RTRBMWindowState]:
        """:meth:`loss` of one window's frames given the state after the frames before it."""
        frames = window.frames
        self.validate_batch(frames)
        n, mask = window.batch_size, frames.mask
        history = None if state.history is None else state.history[:n]
        x = self._frames(frames)
        c, r = self.hidden_biases(x, bias=state.bias[:n], history=history)
        vb = self.visible_biases(x, history)
        surrogate = self.rbm.cd_loss(x[mask], self.cd_steps, visible_bias=vb[mask] if vb.dim() > 1 else vb,
                                     hidden_bias=c[mask], generator=generator)
        after = _RTRBMWindowState(self.rbm.hidden_bias + r[:, -1] @ self.recurrent_weight.t(),
                                  None if history is None else torch.cat([history, x], 1)[:, -self.delay:])
        return surrogate.sum() / frames.n_frames + self.tap_prior_penalty(), after

    def join_window_states(self, states: list[_RTRBMWindowState]) -> _RTRBMWindowState:
        history = None if states[0].history is None else torch.cat([s.history for s in states])
        return _RTRBMWindowState(torch.cat([s.bias for s in states]), history)

    def window_state_rows(self, state: _RTRBMWindowState, index: Tensor) -> _RTRBMWindowState:
        return _RTRBMWindowState(state.bias[index], None if state.history is None else state.history[index])

    def tap_prior_penalty(self) -> Tensor:
        """The prior on the visible taps per frame (``ar_train=prior``; 0 before ``prepare`` and otherwise)."""
        if self.ar_prior is None:
            return self.rbm.weight.new_zeros(())
        return self.ar_prior.penalty(self.vv_weight)

    def on_train_step(self, step: int, total_steps: int) -> None:
        self.cd_steps = thesis_cd_steps(self.config, step, total_steps, self.cd_steps)

    def validation_loss(self, batch: Batch) -> float:
        """The estimated NLL per frame where the frames have a likelihood
        (:func:`~probseq.models._rbm_common.likelihood_validation_loss`: AIS, few chains, fixed seed),
        else the cross-entropy (binary) or squared error (real) of the mean-field next-frame
        predictions, per frame (``valid_criterion``)."""
        if scores_likelihood(self, self.rbm, batch):
            return likelihood_validation_loss(self, batch)
        with torch.no_grad():
            x = self._frames(batch)
            c, r = self.hidden_biases(x)
            pred = self.rbm.mean_field(self.visible_biases(x), c, steps=int(self.config["mean_field_steps"]))
            score = prediction_loss(self.rbm, x, pred, batch.mask)
            return float(score - self._length_log_prob(batch, r).sum() / batch.n_frames)

    def prepare(self, dataset: Any) -> None:
        """Visible biases from the data and static CD pre-training
        (:func:`~probseq.models._rbm_common.initialise_from_frames`); then ``b_init`` is set to the
        pre-trained hidden bias so that the first step's RBM is the pre-trained RBM.
        """
        frames = torch.cat([torch.as_tensor(e, dtype=self.rbm.weight.dtype) for e in dataset.split("train")])
        mean = initialise_from_frames(self.rbm, frames, self.config)
        with torch.no_grad():
            self.initial_hidden_bias.copy_(self.rbm.hidden_bias)
            if self.initial_visible is not None:
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

    # ---------------------------------------------------------------- prediction
    def predict_next(self, batch: Batch) -> Tensor:
        """``E[v_t]`` of step ``t``'s RBM given ``v_{<t}`` (module docstring), ``(B, T, D)``."""
        self.validate_batch(batch)
        cfg = self.config
        with torch.no_grad():
            x = self._frames(batch)
            c, _ = self.hidden_biases(x)
            return expected_visible(self.rbm, self.visible_biases(x), c, method=str(cfg["predict"]),
                                    mean_field_steps=int(cfg["mean_field_steps"]),
                                    chains=int(cfg["predict_chains"]), steps=int(cfg["predict_steps"]))

    # ---------------------------------------------------------------- sampling hooks
    def initial_state(self, n, *, target_length=None):
        history = (None if self.initial_visible is None
                   else [v.expand(n, -1) for v in self.initial_visible.detach()])
        return _RTRBMState(self.initial_hidden_bias.detach().expand(n, -1), None, history)

    def _step_biases(self, state) -> tuple[Tensor, Tensor]:
        """``(b_t, c_t)`` of the next frame's RBM: the recurrent hidden bias plus the delay taps."""
        if state.visible is None:
            return self.rbm.visible_bias.detach(), state.hidden_bias
        taps = torch.cat(state.visible, -1)
        vb = self.rbm.visible_bias if self.vv_weight is None else self.rbm.visible_bias + taps @ self.vv_weight.t()
        hb = state.hidden_bias if self.vh_weight is None else state.hidden_bias + taps @ self.vh_weight.t()
        return vb.detach(), hb.detach()

    #: ``probseq infill``: clamped block Gibbs per frame given the past (:mod:`probseq.missing.infill`)
    infill_method = "gibbs"

    def next_frame_rbm(self, state):
        """The next frame's RBM and its biases ``(rbm, b_t (n, D), c_t (n, H))``, for infilling."""
        vb, hb = self._step_biases(state)
        return self.rbm, vb.expand(*hb.shape[:-1], vb.shape[-1]), hb

    def draw_frame(self, state, *, temperature=1.0, generator=None):
        vb, hb = self._step_biases(state)
        v = self.rbm.sample(steps=int(self.config["sample_steps"]),
                            visible_bias=vb.expand(*hb.shape[:-1], vb.shape[-1]),
                            hidden_bias=hb, temperature=temperature, generator=generator,
                            mean_visible=self.sample_visible_mean)
        return v, state

    def advance(self, state, frame):
        frame = frame.to(self.rbm.weight.dtype)
        _, hb = self._step_biases(state)
        r = torch.sigmoid(self.rbm.hidden_drive(frame) + hb)
        history = None if state.visible is None else [frame] + state.visible[:-1]
        return _RTRBMState(self.rbm.hidden_bias + r @ self.recurrent_weight.t(), r, history)

    def stop_logit(self, state):
        if self.halting is None:
            return None
        return self.halting(state.r)[..., 0]
