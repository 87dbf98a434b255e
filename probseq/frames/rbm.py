"""Restricted Boltzmann machines: the RBM itself (energies, Gibbs sampling, CD training, log-partition).

An RBM over visible units ``v`` (``D`` of them) and binary hidden units ``h`` (``H``) is

.. math::

    P(v, h) = \\frac{e^{-E(v, h)}}{Z}, \\qquad P(v) = \\frac{e^{-F(v)}}{Z}, \\qquad
    Z = \\sum_v e^{-F(v)}\\ \\Big(\\text{or } \\int e^{-F(v)}\\, dv\\Big),

with, for **Bernoulli** visibles (``v`` in ``{0,1}^D``),

.. math::

    E(v, h) = -b^\\top v - c^\\top h - v^\\top W h, \\qquad
    F(v) = -b^\\top v - \\sum_j \\operatorname{softplus}(c_j + (W^\\top v)_j),

and for **Gaussian** visibles with standard deviations ``sigma`` (fixed, or learned as
``log sigma``; the Gaussian–Bernoulli energy of Sutskever 2013, §2.5 / eq. 2.33, and Hinton 2010,
§13.2)

.. math::

    E(v, h) = \\sum_i \\frac{(v_i - b_i)^2}{2\\sigma_i^2} - c^\\top h - \\sum_{ij} \\frac{v_i}{\\sigma_i} W_{ij} h_j,
    \\qquad F(v) = \\sum_i \\frac{(v_i - b_i)^2}{2\\sigma_i^2} - \\sum_j
    \\operatorname{softplus}\\big(c_j + (W^\\top (v / \\sigma))_j\\big),

so that ``p(h_j = 1 | v) = sigmoid(c_j + (W^T (v/sigma))_j)``, ``p(v_i = 1 | h) = sigmoid(b_i + (W h)_i)``
(Bernoulli) and ``p(v_i | h) = N(b_i + sigma_i (W h)_i, sigma_i^2)`` (Gaussian).

**Conditional RBMs.** Every method takes optional ``visible_bias`` ``(..., D)`` and ``hidden_bias``
``(..., H)`` that *replace* the RBM's own biases, one per example; their leading shape broadcasts
against the data's. This is how RTRBM, RNN-RBM and TRBM (biases set per time step by a backbone)
reuse one implementation, and how the Gibbs chains of all time steps of a batch run at once as one
batched RBM.

**Log-partition** (:meth:`RBM.log_partition`): ``"exact"`` enumerates the smaller layer
(:mod:`probseq.frames.rbm_exact`; ``2^min(D, H)`` terms; the Gaussian case enumerates the hiddens
and integrates the visibles analytically:
``log Z = sum_i log(sqrt(2 pi) sigma_i) + logsumexp_h [c^T h + sum_i (b_i u_i / sigma_i + u_i^2 / 2)]``,
``u = W h``); ``"ais"`` is annealed importance sampling (Salakhutdinov & Murray 2008; the path from the RBM
with ``W = 0`` is :mod:`probseq.frames.rbm_annealing`, the estimator :mod:`probseq.estimators.ais`),
with a standard error. Its reverse, RAISE (Burda et al. 2015), estimates ``log P(v)`` directly
and errs the other way (:func:`probseq.frames.rbm_annealing.rbm_raise_log_prob`).

**Training** is contrastive divergence (Hinton 2002): :meth:`RBM.cd_loss` returns the surrogate
``F(v_data) - F(v_neg)`` with the negatives ``v_neg`` (``k`` Gibbs steps from the data, or from
persistent chains, Tieleman 2008) detached, so its gradient is the CD-k estimate of the gradient
of ``-log P(v)``. :meth:`RBM.cd_gradients` computes the same gradient by hand (no autograd) for
the fast path of an unconditional RBM (:mod:`probseq.frames.rbm_cd`, with the fused CD step).
Sampling, the surrogate and the hand-written gradient run the same chain
(:func:`probseq.frames.rbm_gibbs.gibbs_chain`) on the same explicit numbers
(:class:`~probseq.frames.rbm_gibbs.RBMParameters`, from :meth:`RBM.with_biases`).

References:
    Hinton (2002), Training products of experts by minimizing contrastive divergence.
    Tieleman (2008), Training RBMs using approximations to the likelihood gradient.
    Salakhutdinov & Murray (2008), On the quantitative analysis of deep belief networks.
    Hinton (2010), A practical guide to training RBMs.
    Sutskever (2013), Training recurrent neural networks, PhD thesis, ch. 2-3.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probseq.errors import UserError
from probseq.estimators.annealing import LogPartition
from probseq.frames import rbm_cd
from probseq.frames.rbm_exact import exact_log_partition
from probseq.frames.rbm_gibbs import RBMParameters, bernoulli_draw, gibbs_chain
from probseq.precision import full_precision

__all__ = ["RBM", "RBMParameters", "LogPartition", "expected_visible", "check_scorable_frames",
           "bernoulli_draw", "VISIBLE_KINDS", "MEAN_METHODS"]

VISIBLE_KINDS = ("bernoulli", "gaussian")
#: how a prediction ``E[v]`` is formed: a seeded Gibbs average or naive mean-field
MEAN_METHODS = ("gibbs", "mean-field")
#: the range ``log sigma`` is clamped to (a learned sigma gets no gradient outside it)
LOG_SIGMA_RANGE = (-7.0, 5.0)


def check_scorable_frames(frames: Tensor, gaussian: bool) -> None:
    """Refuse to score frames an RBM gives no probability to, with a sentence saying what to do.

    ``frames``: the real (unpadded) frames, ``(N, D)``. A Bernoulli RBM trains on and predicts
    intensities in ``[0, 1]`` (CD treats them as soft data), but ``P(v)`` exists only for ``v`` in
    ``{0, 1}^D``, so a likelihood of fractional frames would be a number without meaning.
    """
    if not torch.isfinite(frames).all():
        raise UserError("the data contains NaN or infinite values")
    if not gaussian and not ((frames == 0) | (frames == 1)).all():
        raise UserError("the likelihood of an RBM with Bernoulli visible units needs frames of 0s and 1s; "
                        "these have intensities in (0, 1), which can be trained on and predicted "
                        "(--metric mse) but not scored (for bouncing-balls, fit with --set binarize=true)")


class RBM(nn.Module):
    """A restricted Boltzmann machine with Bernoulli or Gaussian visibles and Bernoulli hiddens.

    Args:
        n_visible: ``D``. n_hidden: ``H``.
        visible: ``"bernoulli"`` or ``"gaussian"``.
        sigma: initial (or fixed) standard deviation of Gaussian visibles.
        learn_sigma: learn ``log sigma`` (a parameter) instead of keeping it fixed (a buffer).
        init_std: the weights start as ``N(0, init_std^2)``; the biases at zero.

    Parameters: ``weight`` ``(D, H)``, ``visible_bias`` ``(D,)``, ``hidden_bias`` ``(H,)`` and, for
    Gaussian visibles, ``log_sigma`` ``(D,)``.

    Shapes: data ``v`` is ``(..., D)``; bias overrides ``(..., D)`` / ``(..., H)`` broadcast
    against it; per-example results have the leading shape ``(...)``.
    """

    #: the range ``log sigma`` is clamped to (:data:`LOG_SIGMA_RANGE`)
    log_sigma_range: ClassVar[tuple[float, float]] = LOG_SIGMA_RANGE

    def __init__(self, n_visible: int, n_hidden: int, visible: str = "bernoulli", *,
                 sigma: float = 1.0, learn_sigma: bool = False, init_std: float = 0.01) -> None:
        super().__init__()
        if visible not in VISIBLE_KINDS:
            raise UserError(f"RBM visible units must be one of {', '.join(VISIBLE_KINDS)}, got {visible!r}")
        if int(n_visible) < 1 or int(n_hidden) < 1:
            raise UserError(f"an RBM needs at least one visible and one hidden unit, got "
                            f"{n_visible} and {n_hidden}")
        if sigma <= 0:
            raise UserError(f"the visible standard deviation sigma must be positive, got {sigma}")
        self.n_visible, self.n_hidden, self.visible = int(n_visible), int(n_hidden), visible
        self.weight = nn.Parameter(torch.randn(self.n_visible, self.n_hidden) * init_std)
        self.visible_bias = nn.Parameter(torch.zeros(self.n_visible))
        self.hidden_bias = nn.Parameter(torch.zeros(self.n_hidden))
        self.learn_sigma = bool(learn_sigma)
        if visible == "gaussian":
            log_sigma = torch.full((self.n_visible,), math.log(sigma))
            if self.learn_sigma:
                self.log_sigma = nn.Parameter(log_sigma)
            else:
                self.register_buffer("log_sigma", log_sigma)
        #: persistent chains of :meth:`cd_loss` / :meth:`cd_gradients` with ``persistent=True``
        #: (not part of the state dict: a training-time convenience)
        self.persistent_chains: Tensor | None = None

    def extra_repr(self) -> str:
        return f"n_visible={self.n_visible}, n_hidden={self.n_hidden}, visible={self.visible!r}"

    # ----------------------------------------------------------------- pieces
    @property
    def gaussian(self) -> bool:
        return self.visible == "gaussian"

    @property
    def sigma(self) -> Tensor | None:
        """``(D,)`` visible standard deviations (Gaussian visibles), else ``None``."""
        if not self.gaussian:
            return None
        return torch.exp(self.log_sigma.clamp(*LOG_SIGMA_RANGE))

    def biases(self, visible_bias: Tensor | None = None,
               hidden_bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The biases in use: the overrides where given, else the RBM's own."""
        vb = self.visible_bias if visible_bias is None else visible_bias
        hb = self.hidden_bias if hidden_bias is None else hidden_bias
        if vb.shape[-1] != self.n_visible:
            raise ValueError(f"visible_bias must end in {self.n_visible}, got shape {tuple(vb.shape)}")
        if hb.shape[-1] != self.n_hidden:
            raise ValueError(f"hidden_bias must end in {self.n_hidden}, got shape {tuple(hb.shape)}")
        return vb, hb

    def with_biases(self, visible_bias: Tensor | None = None,
                    hidden_bias: Tensor | None = None) -> RBMParameters:
        """The RBM's numbers as an explicit bundle (:class:`~probseq.frames.rbm_gibbs.RBMParameters`),
        with the bias overrides where given; what helpers and the Gibbs chain take."""
        vb, hb = self.biases(visible_bias, hidden_bias)
        return RBMParameters(self.weight, vb, hb, self.sigma)

    def hidden_drive(self, v: Tensor) -> Tensor:
        """``W^T (v / sigma)``, shape ``(..., H)``: the visibles' input to the hiddens, without a bias."""
        return self.with_biases().hidden_drive(v)

    def hidden_logits(self, v: Tensor, hidden_bias: Tensor | None = None) -> Tensor:
        """``c + W^T (v / sigma)``, shape ``(..., H)``: ``p(h = 1 | v) = sigmoid(.)``."""
        return self.with_biases(None, hidden_bias).hidden_logits(v)

    def visible_activation(self, h: Tensor, visible_bias: Tensor | None = None) -> Tensor:
        """Bernoulli: logits ``b + W h``; Gaussian: means ``b + sigma * (W h)``; shape ``(..., D)``."""
        return self.with_biases(visible_bias, None).visible_activation(h)

    def visible_mean(self, h: Tensor, visible_bias: Tensor | None = None) -> Tensor:
        """``E[v | h]``, shape ``(..., D)``."""
        return self.with_biases(visible_bias, None).visible_mean(h)

    def sample_hidden(self, v: Tensor, hidden_bias: Tensor | None = None, *, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``h ~ p(h | v)`` (at ``temperature``); returns ``(h, p(h = 1 | v))``."""
        probs = self.with_biases(None, hidden_bias).hidden_probs(v, temperature)
        return bernoulli_draw(probs, generator), probs

    def sample_visible(self, h: Tensor, visible_bias: Tensor | None = None, *, temperature: float = 1.0,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``v ~ p(v | h)`` (at ``temperature``); returns ``(v, E[v | h])`` at that temperature.

        Temperature ``T`` samples ``P(v, h)^{1/T}``: logits are divided by ``T``; for Gaussian
        visibles the variance is multiplied by ``T`` (the mean is unchanged).
        """
        return self.with_biases(visible_bias, None).sample_visible(h, temperature=temperature,
                                                                    generator=generator)

    # ----------------------------------------------------------------- energies
    @full_precision
    def energy(self, v: Tensor, h: Tensor, visible_bias: Tensor | None = None,
               hidden_bias: Tensor | None = None) -> Tensor:
        """``E(v, h)``, shape ``(...)`` (the broadcast of the leading shapes)."""
        vb, hb = self.biases(visible_bias, hidden_bias)
        interaction = (self.hidden_drive(v) * h).sum(-1)
        if self.gaussian:
            visible_term = (0.5 * ((v - vb) / self.sigma) ** 2).sum(-1)
        else:
            visible_term = -(v * vb).sum(-1)
        return visible_term - (h * hb).sum(-1) - interaction

    @full_precision
    def free_energy(self, v: Tensor, visible_bias: Tensor | None = None,
                    hidden_bias: Tensor | None = None) -> Tensor:
        """``F(v) = -log sum_h exp(-E(v, h))``, shape ``(...)``; ``log P(v) = -F(v) - log Z``.

        Cost ``O(D H)`` per example.
        """
        vb, _ = self.biases(visible_bias, hidden_bias)
        hidden_term = F.softplus(self.hidden_logits(v, hidden_bias)).sum(-1)
        if self.gaussian:
            return (0.5 * ((v - vb) / self.sigma) ** 2).sum(-1) - hidden_term
        return -(v * vb).sum(-1) - hidden_term

    # ----------------------------------------------------------------- Gibbs sampling
    @torch.no_grad()
    def gibbs(self, v: Tensor, steps: int, visible_bias: Tensor | None = None,
              hidden_bias: Tensor | None = None, *, temperature: float = 1.0,
              generator: torch.Generator | None = None, mean_visible: bool = False) -> Tensor:
        """``steps`` rounds of block Gibbs sampling ``v -> h -> v`` started at ``v``; returns the last ``v``.

        All chains (the leading shape of ``v`` broadcast with the biases') run at once.
        ``mean_visible``: every visible draw is replaced by its mean ``E[v | h]`` (the hiddens are
        still sampled): the noise-free generation of Taylor et al. (2007) for Gaussian visibles,
        whose per-frame noise would otherwise show as jitter.
        """
        params = self.with_biases(visible_bias, hidden_bias).detached()
        return gibbs_chain(params, v, steps, temperature=temperature, generator=generator,
                           mean_visible=mean_visible).visible

    @torch.no_grad()
    def sample(self, shape: tuple[int, ...] | torch.Size = (), *, steps: int = 100,
               visible_bias: Tensor | None = None, hidden_bias: Tensor | None = None,
               temperature: float = 1.0, generator: torch.Generator | None = None,
               mean_visible: bool = False) -> Tensor:
        """Approximate samples of ``P(v)``: ``steps`` Gibbs rounds (at least one visible draw).

        The chain starts at ``h ~ Bernoulli(sigmoid(c / T))``, the hiddens' law when ``W = 0``
        (for a conditional RBM the hidden bias carries what the context predicts), then draws
        ``v | h`` and runs ``steps - 1`` further rounds. Shape ``shape + batch + (D,)``, where
        ``batch`` is the broadcast leading shape of the biases. ``mean_visible``: see :meth:`gibbs`.
        """
        vb, hb = self.biases(visible_bias, hidden_bias)
        batch = torch.broadcast_shapes(vb.shape[:-1], hb.shape[:-1])
        probs = torch.sigmoid(hb / temperature).expand(*shape, *batch, self.n_hidden)
        h = bernoulli_draw(probs.contiguous(), generator)
        v, mean = self.sample_visible(h, vb, temperature=temperature, generator=generator)
        if mean_visible:
            v = mean
        return self.gibbs(v, max(int(steps) - 1, 0), vb, hb, temperature=temperature, generator=generator,
                          mean_visible=mean_visible)

    @torch.no_grad()
    def mean_field(self, visible_bias: Tensor | None = None, hidden_bias: Tensor | None = None, *,
                   steps: int = 20, damping: float = 0.5) -> Tensor:
        """A deterministic mean-field estimate of ``E[v]``, shape ``batch + (D,)``.

        Fixed-point iteration of the naive mean-field equations
        ``mu_h = sigmoid(c + W^T (mu_v / sigma))``, ``mu_v = E[v | h = mu_h]``, started at
        ``mu_h = sigmoid(c)`` and damped (``mu <- damping * mu_old + (1 - damping) * mu_new``)
        against oscillation. Exact when ``W = 0``; an approximation otherwise (it ignores the
        correlations the hiddens induce), cheap and free of sampling noise.
        """
        vb, hb = self.biases(visible_bias, hidden_bias)
        mu_h = torch.sigmoid(hb)
        mu_v = self.visible_mean(mu_h, vb)
        for _ in range(int(steps)):
            mu_h = damping * mu_h + (1 - damping) * torch.sigmoid(self.hidden_logits(mu_v, hb))
            mu_v = self.visible_mean(mu_h, vb)
        return mu_v

    @torch.no_grad()
    def gibbs_mean(self, visible_bias: Tensor | None = None, hidden_bias: Tensor | None = None, *,
                   chains: int = 20, steps: int = 25, generator: torch.Generator | None = None) -> Tensor:
        """A Monte Carlo estimate of ``E[v]``, shape ``batch + (D,)``.

        ``chains`` independent chains per RBM run ``steps`` rounds (:meth:`sample`); then
        ``h ~ p(h | v)`` is drawn once more and the estimate is the average of ``E[v | h]`` over the
        chains (Rao-Blackwellised: the visible noise of the last half-step is integrated out).
        Unbiased as ``steps`` grows; its noise shrinks like ``1 / sqrt(chains)``. Cost
        ``O(chains * steps * D * H)`` per RBM.
        """
        vb, hb = self.biases(visible_bias, hidden_bias)
        v = self.sample((int(chains),), steps=steps, visible_bias=vb, hidden_bias=hb, generator=generator)
        h, _ = self.sample_hidden(v, hb, generator=generator)
        return self.visible_mean(h, vb).mean(0)

    # ----------------------------------------------------------------- contrastive divergence
    @full_precision
    def cd_loss(self, v: Tensor, k: int = 1, *, persistent: bool = False,
                visible_bias: Tensor | None = None, hidden_bias: Tensor | None = None,
                generator: torch.Generator | None = None) -> Tensor:
        """The CD-k surrogate ``F(v) - F(v_neg)`` per example, shape ``(...)``.

        ``v_neg`` is the end of ``k`` Gibbs rounds started at ``v`` (CD-k) or, with
        ``persistent=True``, at the previous call's negatives when they have ``v``'s shape
        (persistent CD; otherwise at ``v``). ``v_neg`` is detached, so the gradient with respect
        to the parameters and to the bias overrides is the CD-k estimate of
        ``d(-log P(v))/d theta = E_data[dF/d theta] - E_model[dF/d theta]``. The value itself is
        not a log-likelihood.
        """
        vb, hb = self.biases(visible_bias, hidden_bias)
        negatives = rbm_cd.negative_phase(self, self.with_biases(vb, hb), v.detach(), k, persistent=persistent,
                                          generator=generator).visible
        return self.free_energy(v, vb, hb) - self.free_energy(negatives, vb, hb)

    def cd_gradients(self, v: Tensor, k: int = 1, *, persistent: bool = False,
                     generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Hand-written CD-k gradient of the mean surrogate over a batch ``v`` ``(N, D)``
        (:func:`probseq.frames.rbm_cd.cd_gradients`)."""
        return rbm_cd.cd_gradients(self, v, k, persistent=persistent, generator=generator)

    def cd_step(self, v: Tensor, *, lr: float | None = None, optimizer: torch.optim.Optimizer | None = None,
                k: int = 1, persistent: bool = False, generator: torch.Generator | None = None) -> None:
        """One step on the CD-k gradient: plain SGD with learning rate ``lr`` (fused for Bernoulli
        visibles), or ``optimizer.step()`` (e.g. SGD with momentum, whose velocity is optimizer state
        that ``optimizer.state_dict()`` saves); :func:`probseq.frames.rbm_cd.cd_step`."""
        rbm_cd.cd_step(self, v, lr=lr, optimizer=optimizer, k=k, persistent=persistent, generator=generator)

    # ----------------------------------------------------------------- log-partition
    def exact_units(self) -> int:
        """How many units exact enumeration must sum over (``min(D, H)``; ``H`` for Gaussian visibles)."""
        return self.n_hidden if self.gaussian else min(self.n_visible, self.n_hidden)

    @full_precision
    def log_partition(self, method: str = "exact", *, visible_bias: Tensor | None = None,
                      hidden_bias: Tensor | None = None, chains: int = 100, steps: int = 1000,
                      generator: torch.Generator | None = None,
                      base_visible_bias: Tensor | None = None) -> LogPartition:
        """``log Z`` for each RBM given by the (broadcast) biases.

        Args:
            method: ``"exact"`` (enumerate ``2^exact_units()`` states; at most 2^24) or ``"ais"``
                (:func:`probseq.frames.rbm_annealing.rbm_ais_log_partition`: the estimator, its
                path and its standard error).
            chains, steps, generator, base_visible_bias: AIS settings (ignored when exact).
        """
        vb, hb = self.biases(visible_bias, hidden_bias)
        if method == "exact":
            return LogPartition(exact_log_partition(self, vb, hb), None, "exact")
        if method == "ais":
            from probseq.frames.rbm_annealing import rbm_ais_log_partition

            return rbm_ais_log_partition(self, visible_bias=vb, hidden_bias=hb, chains=chains, steps=steps,
                                         generator=generator, base_visible_bias=base_visible_bias)
        raise UserError(f"unknown log-partition method {method!r}; expected exact or ais")

    @full_precision
    def log_prob(self, v: Tensor, *, method: str = "exact", log_z: LogPartition | None = None,
                 visible_bias: Tensor | None = None, hidden_bias: Tensor | None = None,
                 **log_partition_options) -> Tensor:
        """``log P(v) = -F(v) - log Z``, shape ``(...)`` (exact given ``log Z``).

        Pass ``log_z`` to reuse a computed log-partition; otherwise it is computed by ``method``.
        """
        vb, hb = self.biases(visible_bias, hidden_bias)
        if log_z is None:
            log_z = self.log_partition(method, visible_bias=visible_bias, hidden_bias=hidden_bias,
                                       **log_partition_options)
        return -self.free_energy(v, vb, hb) - log_z.value


def expected_visible(rbm: RBM, visible_bias: Tensor | None, hidden_bias: Tensor | None, *, method: str,
                     mean_field_steps: int = 20, chains: int = 20, steps: int = 25, seed: int = 0) -> Tensor:
    """``E[v]`` of each RBM by ``method`` (``"gibbs"``: :meth:`RBM.gibbs_mean` with a generator seeded
    with ``seed`` on every call, hence deterministic; ``"mean-field"``: :meth:`RBM.mean_field`)."""
    if method == "gibbs":
        return rbm.gibbs_mean(visible_bias, hidden_bias, chains=chains, steps=steps,
                              generator=torch.Generator(device=rbm.weight.device).manual_seed(int(seed)))
    if method == "mean-field":
        return rbm.mean_field(visible_bias, hidden_bias, steps=mean_field_steps)
    raise UserError(f"the prediction method must be one of {', '.join(MEAN_METHODS)}, got {method!r}")

