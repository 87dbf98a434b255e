"""Autoregressive visible connections for RBM sequence models of real-valued frames (motion).

The conditional RBM of Taylor, Hinton & Roweis (2007) gives each step's RBM a visible bias that is
a linear function of the last ``m`` frames ("autoregressive connections"):

.. math:: b_t = b + \\sum_{k=1}^m A_k x_{t-k}, \\qquad A = [A_1 \\dots A_m] \\in \\mathbb R^{D \\times mD}.

With Gaussian visibles and the hidden units switched off (``W = 0``) this is a linear-Gaussian
autoregression, ``x_t ~ N(b_t, diag(sigma^2))``, whose maximum-likelihood ``(A, b)`` is least
squares. :func:`fit_autoregression` starts a model there, so CD training only has to model what a
linear predictor cannot, and sets ``sigma`` to the residual standard deviation (the "reduced
sigma": on z-scored motion the residual is far narrower than 1).

**The fit.** Frames change little from one step to the next, so the regression is written around
a simple predictor, the *anchor* ``P z_t``: copying the last frame (``P = [I, 0, ..., 0]``) or
linear extrapolation (``P = [2I, -I, 0, ..., 0]``, when ``m >= 2``). The residual
``y_t = x_t - P z_t`` is regressed on the centred taps ``z_t = [x_{t-1}, ..., x_{t-m}]`` with a
ridge penalty ``lambda N ||B||^2`` (``N`` pairs), which shrinks towards "the anchor plus the mean
residual":

.. math:: B = (Z_c^\\top Z_c + \\lambda N I)^{-1} Z_c^\\top Y_c, \\quad
          A = B^\\top + P, \\quad b = \\bar y - B^\\top \\bar z.

Two structures are tried, ``full`` (every dimension from every tapped dimension) and ``diagonal``
(each dimension from its own past only: ``m`` coefficients per dimension, robust on a single short
training trial), with each anchor and every ``lambda`` of :data:`RIDGES`; the combination with the
lowest next-frame squared error on the **validation** sequences is kept (without a validation
split: ``full`` around the last frame with ``lambda = 0.01``). Only steps with a full history
(``t > m`` in each sequence) enter the fit; the cost is a few ``(m D)^2`` solves.

Shapes: sequences are ``(T_i, D)`` tensors; ``weight`` ``(D, m D)`` multiplies taps ordered
newest first (``[x_{t-1}, ..., x_{t-m}]``), as :func:`delay_taps` builds them.

**Training the taps** (``ar_train``). CD training then moves ``A`` with the hidden units. Left
free (``free``), it pulls ``A`` towards the *unpenalised* least-squares fit of the training frames,
which with little data (one training trial) predicts held-out trials worse than the validated
start. ``prior`` (the default) keeps, during CD, the prior the start was chosen with: a Gaussian
prior on ``A`` centred on the anchor ``P`` with the ridge strength validation chose, i.e. the
loss per frame gains

.. math:: \\frac{\\lambda}{2} \\sum_{d=1}^D \\frac{\\lVert A_d - P_d \\rVert^2}{\\sigma_d^2},

the ridge penalty ``lambda N ||B||^2`` of the fit divided by the ``N`` frames and by the Gaussian's
``2 sigma_d^2`` (:class:`AutoregressivePrior`). With the hidden units switched off, the CD fixed
point of ``A`` under this prior *is* the ridge start, so training moves the taps only as far as
the hidden units give it reason to. ``fixed`` keeps the taps at their start.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["RIDGES", "STRUCTURES", "ANCHORS", "AR_TRAINING", "delay_taps", "AutoregressiveFit",
           "fit_autoregression", "start_from_autoregression", "AutoregressivePrior", "check_ar_train",
           "resolve_sample_visible"]

#: ridge strengths tried (per training pair; the taps are z-scored, so the scale is meaningful)
RIDGES = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
STRUCTURES = ("full", "diagonal")
ANCHORS = ("last", "linear")
#: how CD training treats the taps (module docstring, "Training the taps")
AR_TRAINING = ("prior", "free", "fixed")
_DEFAULT = ("full", "last", 1e-2)
#: floor of the fitted sigma, as a fraction of the median residual standard deviation (constant
#: channels have a zero residual)
_SIGMA_FLOOR = 0.1


def delay_taps(seq: Tensor, initial: Tensor, delay: int) -> Tensor:
    """``[s_{t-1}, ..., s_{t-m}]`` for every ``t``: ``(B, T, m F)`` from ``seq`` ``(B, T, F)``.

    ``initial`` ``(m, F)``: ``initial[k-1]`` stands for ``s_{1-k}`` (the state before the start).
    """
    n, steps, _ = seq.shape
    m = int(delay)
    ext = torch.cat([initial.flip(0).to(seq.dtype).expand(n, -1, -1), seq], 1)  # s_{1-m} .. s_T
    return torch.cat([ext[:, m - k: m - k + steps] for k in range(1, m + 1)], -1)


@dataclass
class AutoregressiveFit:
    """The chosen linear predictor ``xhat_t = bias + weight @ taps_t`` and what chose it.

    weight ``(D, m D)``, bias ``(D,)``, residual_std ``(D,)`` (training residuals, floored);
    structure / anchor / ridge: the chosen combination; valid_errors: ``{(structure, anchor,
    ridge): squared error per dimension}`` on the validation pairs (empty without validation data).
    """

    weight: Tensor
    bias: Tensor
    residual_std: Tensor
    structure: str
    anchor: str
    ridge: float
    valid_errors: dict = field(default_factory=dict)


def _pairs(sequences: list[Tensor], delay: int) -> tuple[Tensor, Tensor]:
    """Targets ``x_t`` ``(N, D)`` and taps ``z_t`` ``(N, m D)`` for every ``t > m`` of every sequence."""
    xs, zs = [], []
    for s in sequences:
        s = torch.as_tensor(s, dtype=torch.float64)
        if s.shape[0] <= delay:
            continue
        taps = delay_taps(s[None], s[:delay].flip(0), delay)[0]   # rows t <= m are not used
        xs.append(s[delay:])
        zs.append(taps[delay:])
    if not xs:
        return torch.zeros(0), torch.zeros(0)
    return torch.cat(xs), torch.cat(zs)


def _anchor(d: int, delay: int, anchor: str) -> Tensor:
    """``P`` ``(D, m D)``: the anchor predictor ``P z_t`` of the module docstring."""
    eye = torch.eye(d, dtype=torch.float64)
    p = torch.zeros(d, delay * d, dtype=torch.float64)
    if anchor == "last":
        p[:, :d] = eye
    else:
        p[:, :d], p[:, d:2 * d] = 2 * eye, -eye
    return p


def _solve(x: Tensor, z: Tensor, structure: str, anchor: str, ridge: float) -> tuple[Tensor, Tensor]:
    """``(A, b)`` of the module docstring for one structure, anchor and ridge strength."""
    n, d = x.shape
    m = z.shape[1] // d
    p = _anchor(d, m, anchor)
    y = x - z @ p.t()
    y_mean, z_mean = y.mean(0), z.mean(0)
    yc, zc = y - y_mean, z - z_mean
    if structure == "full":
        gram = zc.t() @ zc + ridge * n * torch.eye(m * d, dtype=y.dtype)
        coef = torch.linalg.solve(gram, zc.t() @ yc)                       # (m D, D)
    else:
        per_dim = zc.reshape(n, m, d).permute(2, 0, 1)                     # (D, N, m)
        gram = per_dim.transpose(1, 2) @ per_dim + ridge * n * torch.eye(m, dtype=y.dtype)
        c = torch.linalg.solve(gram, per_dim.transpose(1, 2) @ yc.t()[..., None])[..., 0]  # (D, m)
        coef = torch.zeros(m * d, d, dtype=y.dtype)
        for k in range(m):
            coef[k * d:(k + 1) * d] = torch.diag(c[:, k])
    return coef.t() + p, y_mean - z_mean @ coef


def fit_autoregression(train: list[Tensor], valid: list[Tensor] | None, delay: int, *,
                       ridges: tuple[float, ...] = RIDGES) -> AutoregressiveFit:
    """Least-squares autoregression of the frames on their last ``delay`` frames (module docstring).

    ``delay`` must be at least 1; sequences no longer than ``delay`` frames are skipped; ``ridges``
    are the strengths tried on validation (without validation data, the default's ``0.01``).
    Returns float64 tensors.
    """
    delay = int(delay)
    if delay < 1:
        raise ValueError(f"an autoregression needs delay >= 1, got {delay}")
    x, z = _pairs(train, delay)
    if x.numel() == 0:
        raise ValueError(f"no training sequence is longer than delay={delay} frames")
    vx, vz = _pairs(valid or [], delay)
    errors: dict = {}
    best, best_err = _DEFAULT, float("inf")
    anchors = ANCHORS if delay >= 2 else ("last",)
    if vx.numel():
        for choice in itertools.product(STRUCTURES, anchors, ridges):
            weight, bias = _solve(x, z, *choice)
            err = float(((vz @ weight.t() + bias - vx) ** 2).mean())
            errors[choice] = err
            if err < best_err:
                best, best_err = choice, err
    weight, bias = _solve(x, z, *best)
    if x.shape[0] > 1:
        residual = (z @ weight.t() + bias - x).std(0, unbiased=False)
    else:
        residual = torch.ones(x.shape[1], dtype=torch.float64)
    floor = _SIGMA_FLOOR * float(residual.median().clamp_min(1e-6))
    return AutoregressiveFit(weight, bias, residual.clamp_min(floor), *best, errors)


def start_from_autoregression(rbm, vv_weight: Tensor, dataset, delay: int, *, set_sigma: bool,
                              prior: "AutoregressivePrior | None" = None) -> AutoregressiveFit:
    """Set ``vv_weight`` ``(D, m D)`` and ``rbm.visible_bias`` to :func:`fit_autoregression` of the
    dataset's training sequences (chosen on its ``valid`` split) and, with ``set_sigma``, the
    Gaussian ``rbm.log_sigma`` to the log residual standard deviation; with ``prior``, set it to the
    fit's prior (:meth:`AutoregressivePrior.set_from`). Returns the fit."""
    fit = fit_autoregression(list(dataset.split("train")), list(dataset.splits.get("valid") or []), delay)
    with torch.no_grad():
        vv_weight.copy_(fit.weight.to(vv_weight.dtype))
        rbm.visible_bias.copy_(fit.bias.to(rbm.visible_bias.dtype))
        if set_sigma and rbm.gaussian:
            rbm.log_sigma.copy_(fit.residual_std.log().to(rbm.log_sigma.dtype))
    if prior is not None:
        sigma = rbm.sigma.detach().double() if rbm.gaussian else torch.ones_like(fit.residual_std)
        prior.set_from(fit, sigma)
    return fit


def check_ar_train(value: str) -> str:
    if value not in AR_TRAINING:
        from probseq.errors import UserError

        raise UserError(f"ar_train must be one of {', '.join(AR_TRAINING)}, got {value!r}")
    return value


class AutoregressivePrior(nn.Module):
    """The Gaussian prior on the taps ``A`` ``(D, m D)`` kept during CD (``ar_train=prior``).

    ``penalty(A) = 1/2 sum_d strength_d ||A_d - center_d||^2`` per frame, with ``center = P`` (the
    fit's anchor) and ``strength_d = lambda / sigma_d^2`` (module docstring). Both are buffers, so a
    checkpoint carries them; before :meth:`set_from` (and in runs saved before this prior existed)
    the strength is 0: no penalty.
    """

    def __init__(self, dim: int, taps: int) -> None:
        super().__init__()
        self.register_buffer("center", torch.zeros(dim, taps))
        self.register_buffer("strength", torch.zeros(dim))
        self.register_load_state_dict_pre_hook(self._no_prior_in_old_runs)

    def _no_prior_in_old_runs(self, module, state_dict, prefix, *args) -> None:
        for name in ("center", "strength"):
            state_dict.setdefault(prefix + name, getattr(self, name).detach().clone().zero_())

    def set_from(self, fit: AutoregressiveFit, sigma: Tensor) -> None:
        """``center = P`` of ``fit.anchor``, ``strength = fit.ridge / sigma^2`` (``sigma`` ``(D,)``)."""
        d, taps = self.center.shape
        with torch.no_grad():
            self.center.copy_(_anchor(d, taps // d, fit.anchor).to(self.center.dtype))
            self.strength.copy_((float(fit.ridge) / sigma.double() ** 2).to(self.strength.dtype))

    def penalty(self, weight: Tensor) -> Tensor:
        """``1/2 sum_d strength_d ||weight_d - center_d||^2`` (a scalar, differentiable in ``weight``)."""
        return 0.5 * (self.strength[:, None] * (weight - self.center) ** 2).sum()


def resolve_sample_visible(value: str, gaussian: bool, calibrated: bool) -> bool:
    """Whether sampled frames are the visible means ``E[v | h]`` instead of draws.

    ``"mean"``: always; ``"sample"``: never; ``"auto"``: for Gaussian visibles whose ``sigma`` is
    *not* calibrated to the data. A fixed ``sigma = 1`` on z-scored motion is far wider than the
    frame-to-frame change, and its noise shows as jitter, so such models sample noise-free (as
    Taylor et al. 2007 generate). A ``sigma`` fitted to the residual of the autoregression
    (``calibrated``) is the data's own unpredictability: there the noise is what keeps a sampled
    motion moving, and without it the mean dynamics, a contraction, settle into a rest pose
    (measured in ``benchmarks/RESULTS.md``). Bernoulli frames are always drawn.
    """
    if value not in ("auto", "mean", "sample"):
        from probseq.errors import UserError

        raise UserError(f"sample_visible must be auto, mean or sample, got {value!r}")
    return value == "mean" or (value == "auto" and gaussian and not calibrated)
