"""The variational recurrent neural network (VRNN; Chung et al. 2015), in Pyro and in plain torch.

Generative model, with a deterministic state ``h_t`` and a latent ``z_t`` per frame:

.. math::

    p(z_t \\mid x_{<t}, z_{<t}) &= \\mathcal N(z_t;\\ \\mu_{0,t}, \\mathrm{diag}\\,\\sigma_{0,t}^2),
        \\quad [\\mu_{0,t}, \\sigma_{0,t}] = \\varphi^{\\text{prior}}(h_{t-1}) \\\\
    p(x_t \\mid z_{\\le t}, x_{<t}) &= p(x_t \\mid \\theta_t),
        \\quad \\theta_t = \\varphi^{\\text{dec}}(\\varphi^z(z_t), h_{t-1}) \\\\
    h_t &= f_\\mathrm{GRU}\\big(h_{t-1}, [\\varphi^x(x_t), \\varphi^z(z_t)]\\big),

and the inference network (Chung et al. 2015, eq. 9)
:math:`q(z_t \\mid x_{\\le t}, z_{<t}) = \\mathcal N(\\mu_{z,t}, \\mathrm{diag}\\,\\sigma_{z,t}^2)`,
:math:`[\\mu_{z,t}, \\sigma_{z,t}] = \\varphi^{\\text{enc}}(\\varphi^x(x_t), h_{t-1})`. The frame
distribution :math:`p(x_t \\mid \\theta_t)` is factorial Bernoulli (piano-rolls), diagonal Gaussian
(motion capture), categorical, or a mixture of ``components`` Bernoulli/Gaussian factorials
(:class:`~probseq.frames.mixture.MixtureFrame`). Scales are ``softplus(.) + 1e-4``. The training objective (eq. 10) is

.. math::

    \\mathcal L(x) = E_q\\Big[\\sum_{t=1}^T \\log p(x_t \\mid z_{\\le t}, x_{<t})
        - \\mathrm{KL}\\big(q(z_t \\mid x_{\\le t}, z_{<t}) \\,\\|\\, p(z_t \\mid x_{<t}, z_{<t})\\big)\\Big]
        + E_q[\\log P(T \\mid \\cdot)],

with the KL between diagonal Gaussians in closed form. Length (:mod:`probseq.lengths`): ``none``;
``halting``, a Bernoulli stop unit read from ``h_t`` (so ``log P(T)`` sits inside the expectation
over ``z``); or ``explicit``, a learned ``P(tau)`` with ``tau - t`` fed into the recurrence.

**One set of pieces, two programs.** The networks are four public modules
(:mod:`probseq.models.vrnn_parts`): ``prior`` ``p(z_t | h_{t-1})``, ``posterior`` ``q(z_t | x_t, h_{t-1})``,
``emitter`` ``p(x_t | z_t, h_{t-1})`` and ``transition`` (the recurrence), plus the feature extractors
``phi_x``, ``phi_z``; :meth:`VRNN.sequence_inputs` computes what depends on the frames alone.
:meth:`VRNN.pyro_model` / :meth:`VRNN.pyro_guide` compose them as a Pyro program
(:mod:`probseq.models.vrnn_pyro`; a ``pyro.plate`` over sequences, ``pyro.markov`` over time, ragged
batches masked with ``.mask(...)``, KL annealing by ``poutine.scale``), so any Pyro inference
algorithm applies: ``SVI(vrnn.pyro_model, vrnn.pyro_guide, optim, Trace_ELBO())``. The fast path
(:meth:`VRNN.elbo_terms`, used by ``loss`` and ``log_prob``) composes the same pieces directly:
``phi_x`` and every ``x``-dependent pre-activation for all ``t`` in one matmul before the loop; in the
loop only what ``z_t`` and ``h_t`` need (one matmul on ``h_{t-1}`` shared by the encoder and the GRU,
the encoder head, ``phi_z``, the GRU input from ``z``), tensors ``unbind`` -ed once; the prior, the
decoder, the KL and all log-densities after the loop, vectorised over time. ``tests/test_vrnn_pyro.py``
checks that both give the same ELBO on the same latent draws (``Trace_ELBO``: sampled KL;
``TraceMeanField_ELBO``: closed-form KL). Cost per sequence: ``O(T (H^2 + H F + F Z))`` in the loop.

**Estimators** (:mod:`probseq.estimators.latent`): ``elbo`` (default; mean of ``K`` single-draw ELBOs
with the closed-form KL, ``K = 10``), ``iwae`` (IWAE-K bound, ``K = 100``; Burda et al. 2016) and
``is`` (importance-sampled estimate of ``log p(x)`` with a delta-method error, ``K = 100``), all from
the log weights ``log p(x, z) - log q(z | x)`` with ``z ~ q``; noise is drawn from ``generator``.

**Training** (``loss``): ``-ELBO`` per frame, with the KL term weighted by the annealing weight
``beta`` (``kl_schedule``, ``kl_warmup``, ``kl_start``; :mod:`probseq.models.objectives.kl_annealing`) and floored
per latent unit by ``free_bits`` nats per frame. :meth:`VRNN.diagnostics` reports the KL per frame
and the number of active units (Burda et al. 2016: ``Cov_x(E_q[z_u]) > 0.01``).

**Sampling**: ``draw_frame`` draws ``z_t`` from the prior and ``x_t`` from the decoder (temperature
scales both variances and divides the frame logits), stashing ``phi_z(z_t)`` in the state;
``advance`` updates ``h``. A prefix frame has no stashed latent: it is encoded with the posterior
*mean* of ``q(z_t | x_t, h_{t-1})``.

**Prediction** (``predict_next``, a plug-in approximation of ``E[x_t | x_{<t}]``): the history is
read with posterior-mean latents, then ``x_hat_t = E[x_t | z_t = mu_{0,t}, h_{t-1}]`` (the decoder's
mean at the prior mean of ``z_t``).

References: J. Chung, K. Kastner, L. Dinh, K. Goel, A. Courville, Y. Bengio, "A recurrent latent
variable model for sequential data", NeurIPS 2015. Y. Burda, R. Grosse, R. Salakhutdinov,
"Importance weighted autoencoders", ICLR 2016.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probseq.data.batch import Batch
from probseq.data.spec import DataSpec
from probseq.device import generator_for
from probseq.errors import UserError
from probseq.estimators import latent
from probseq.frames.base import FrameDistribution
from probseq.frames.factorial import (BernoulliFrame, CategoricalFrame, GaussianFrame,
                                      make_factorial_frame)
from probseq.frames.mixture import MixtureFrame
from probseq.lengths import make_length_model
from probseq.models.base import LogProb, SequenceModel
from probseq.models.gaussian import gaussian_kl, gaussian_log_density, reparameterised_log_density
from probseq.models.objectives.kl_annealing import KLAnnealing, free_bits_kl
from probseq.models.registry import register_model
from probseq.models.vrnn_parts import Emitter, Posterior, Prior, Transition

__all__ = ["VRNN", "MixtureFrame", "VRNNTerms", "SequenceInputs"]

#: row-steps (replicated sequences x time) per chunk when drawing many samples (memory bound)
_CHUNK_ROW_STEPS = 1 << 18
#: Burda et al. (2016) activity threshold on Cov_x(E_q[z_u])
ACTIVITY_THRESHOLD = 0.01
_OUTPUTS = ("auto", "bernoulli", "gaussian", "categorical", "mixture")
#: state_dict names before the VRNN was built from public pieces (probseq.models.vrnn_parts) -> now
_RENAMED_KEYS = {"prior_net.": "prior.net.", "encoder_x.": "posterior.frame_layer.",
                 "encoder_h": "posterior.hidden_weight", "encoder_out.": "posterior.out.",
                 "decoder.": "emitter.net.", "rnn.": "transition.rnn."}


def _make_output(kind: str, output: str, dim: int, components: int) -> FrameDistribution:
    if output not in _OUTPUTS:
        raise UserError(f"unknown VRNN output {output!r}; expected one of {', '.join(_OUTPUTS)}")
    natural = {"binary": "bernoulli", "real": "gaussian", "categorical": "categorical"}[kind]
    if output in ("auto", natural):
        return make_factorial_frame(kind, dim)
    if output == "mixture" and kind != "categorical":
        return MixtureFrame(make_factorial_frame(kind, dim), components)
    raise UserError(f"output={output} does not fit {kind} data; use output={natural}"
                    + ("" if kind == "categorical" else " or output=mixture"))


# ============================================================================ fast-path results
@dataclass
class VRNNTerms:
    """Per-frame terms of one pass with latent draws ``z`` (``N`` rows, ``T`` steps, ``U`` units).

    Attributes:
        recon: ``(N, T)`` ``log p(x_t | z_t, h_{t-1})`` (padding: arbitrary finite values).
        kl: ``(N, T, U)`` closed-form KL of each latent unit.
        log_ratio: ``(N, T)`` ``log p(z_t | h_{t-1}) - log q(z_t | x_t, h_{t-1})`` at the draws.
        length: ``(N,)`` ``log P(T | ...)`` (zero for ``length=none``).
        mask: ``(N, T)`` real frames. z, q_loc: ``(N, T, U)`` draws and posterior means.
        prev_hidden: ``(N, T, H)`` ``h_{t-1}`` for each step.
    """

    recon: Tensor
    kl: Tensor
    log_ratio: Tensor
    length: Tensor
    mask: Tensor
    z: Tensor
    q_loc: Tensor
    prev_hidden: Tensor

    def _sum(self, per_step: Tensor) -> Tensor:
        return torch.where(self.mask, per_step, torch.zeros_like(per_step)).sum(1)

    @property
    def log_weight(self) -> Tensor:
        """``(N,)`` ``log p(x, T, z) - log q(z | x)``: the importance weight of each draw."""
        return self._sum(self.recon + self.log_ratio) + self.length

    @property
    def elbo(self) -> Tensor:
        """``(N,)`` single-draw ELBO with the closed-form KL: ``sum_t recon_t - KL_t + length``."""
        return self._sum(self.recon - self.kl.sum(-1)) + self.length


@dataclass
class SequenceInputs:
    """What a batch fixes before any latent is drawn (rows ``N``, steps ``T``), vectorised over time.

    Attributes:
        x: ``(N, T, D)`` (or ``(N, T)`` categorical) frames, padding zeroed. lengths: ``(N,)``.
        mask: ``(N, T)`` real frames. posterior_frame_part: ``(N, T, F)``
        :meth:`~probseq.models.vrnn_parts.Posterior.frame_part` of ``phi_x(x_t)``.
        transition_inputs: ``(N, T, 3H)`` :meth:`~probseq.models.vrnn_parts.Transition.frame_inputs`
        (``phi_x(x_t)`` and the length features ``g(tau - t)``).
    """

    x: Tensor
    lengths: Tensor
    mask: Tensor
    posterior_frame_part: Tensor
    transition_inputs: Tensor


@dataclass
class _VRNNState:
    hidden: Tensor             # (n, H): h_t
    z_features: Tensor | None  # (n, F): phi_z(z_{t+1}) stashed by draw_frame, consumed by advance
    steps: int                 # frames consumed so far
    target: Tensor | None      # (n,) tau for the explicit length model


# ============================================================================ the model
@register_model
class VRNN(SequenceModel):
    """Variational RNN (Chung et al. 2015); ``log_prob`` is a bound (ELBO / IWAE-K) or an IS estimate.

    Hyperparameters:
        hidden: GRU state size ``H``. latent: ``U``, units of ``z_t``. features: width ``F`` of the
        feature extractors and of every hidden layer.
        output: ``auto | bernoulli | gaussian | categorical | mixture``; components: mixture size.
        length: ``none | halting | explicit``; max_length: support of ``explicit``.
        kl_schedule / kl_warmup / kl_start: KL annealing (:class:`~probseq.models.objectives.kl_annealing.KLAnnealing`).
        free_bits: nats per latent unit per frame below which the KL is not penalised (0 = off).
    """

    name = "vrnn"
    likelihood_kind = "bound"
    estimators = latent.LATENT_ESTIMATORS
    data_kinds = ("binary", "real", "categorical")
    hyperparameters: ClassVar[dict[str, Any]] = {
        "hidden": 128, "latent": 16, "features": 128, "output": "auto", "components": 5,
        "length": "none", "max_length": 1000,
        "kl_schedule": "linear", "kl_warmup": 0.0, "kl_start": 0.0, "free_bits": 0.0,
    }
    #: Adam 1e-3, clip 10, minibatches of 16, stop after 15 validations without improvement (the
    #: settings of the JSB runs in benchmarks/RESULTS.md, issue 5; docs/training.md)
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 1e-3, "clip": 10.0, "batch_size": 16, "patience": 15}
    contract_example = {"spec": DataSpec("binary", 4),
                        "hyper": {"hidden": 6, "latent": 2, "features": 5, "length": "halting"}}
    #: default number of draws per estimator when ``samples`` is not given
    default_samples: ClassVar[dict[str, int]] = {"elbo": 10, "iwae": 100, "is": 100}

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        cfg = self.config
        hidden, z_dim, feat = int(cfg["hidden"]), int(cfg["latent"]), int(cfg["features"])
        if min(hidden, z_dim, feat) < 1:
            raise UserError("hidden, latent and features must be positive")
        if cfg["length"] == "end-symbol":
            raise UserError("the VRNN supports length=none, halting or explicit (not end-symbol)")
        self.frame = _make_output(spec.kind, str(cfg["output"]), spec.dim, int(cfg["components"]))
        self.length_model = make_length_model(str(cfg["length"]), data_kind=spec.kind,
                                              max_length=int(cfg["max_length"]))
        self.annealing = KLAnnealing(str(cfg["kl_schedule"]), float(cfg["kl_warmup"]), float(cfg["kl_start"]))
        if float(cfg["free_bits"]) < 0:
            raise UserError(f"free_bits must be non-negative, got {cfg['free_bits']}")
        #: the current KL weight beta (set by on_train_step; 1 = the true ELBO)
        self.kl_weight = 1.0
        self.hidden_size, self.latent_size, self.feature_size = hidden, z_dim, feat
        self.length_features = self.length_model.input_dim

        # feature extractors phi_x, phi_z
        self.phi_x = nn.Sequential(nn.Linear(self.frame.input_dim, feat), nn.ReLU(),
                                   nn.Linear(feat, feat), nn.ReLU())
        self.phi_z = nn.Sequential(nn.Linear(z_dim, feat), nn.ReLU())
        self.prior = Prior(hidden, feat, z_dim)                                 # p(z_t | h_{t-1})
        self.posterior = Posterior(feat, hidden, z_dim)                         # q(z_t | x_t, h_{t-1})
        self.emitter = Emitter(feat, hidden, self.frame.param_dim)              # p(x_t | z_t, h_{t-1})
        self.transition = Transition(feat, self.length_features, hidden)        # h_{t-1} -> h_t
        self.initial_hidden = nn.Parameter(torch.zeros(hidden))
        self.halt = nn.Linear(hidden, 1) if self.length_model.head_dim else None
        self.register_load_state_dict_pre_hook(_rename_old_keys)

    # ------------------------------------------------------------------ shared pieces
    def frames(self, batch: Batch) -> Tensor:
        """The batch's frames, checked against the model and the frame distribution, padding zeroed."""
        self.validate_batch(batch)
        x = batch.padded_with_zeros()
        self.frame.validate(x)
        return x

    def length_inputs(self, remaining: Tensor | None) -> Tensor | None:
        """``g(tau - t)`` for the transition (explicit length model), else ``None``."""
        if not self.length_features or remaining is None:
            return None
        return self.length_model.step_features(remaining)

    def sequence_inputs(self, batch: Batch, samples: int = 1) -> SequenceInputs:
        """Everything the frames fix, for all steps at once (each sequence repeated ``samples`` times,
        rows ``k * B + b``): the fast path and the Pyro program both start here."""
        x = self.frames(batch)
        lengths, mask = batch.lengths, batch.mask
        if samples > 1:
            x = x.repeat(samples, *([1] * (x.dim() - 1)))
            lengths, mask = lengths.repeat(samples), mask.repeat(samples, 1)
        steps = mask.shape[1]
        remaining = None
        if self.length_features:      # tau - t for t = 1..T: the input after frame t
            remaining = lengths.unsqueeze(1) - torch.arange(1, steps + 1, device=lengths.device).unsqueeze(0)
        phi_x = self.phi_x(self.frame.encode(x).to(self.initial_hidden.dtype))          # (N, T, F)
        return SequenceInputs(x, lengths, mask, self.posterior.frame_part(phi_x),
                              self.transition.frame_inputs(phi_x, self.length_inputs(remaining)))

    def length_log_prob(self, lengths: Tensor, next_hidden: Tensor) -> Tensor:
        """``log P(T | .)`` ``(N,)`` from the states ``h_t`` ``(N, T, H)`` (halting) or the explicit model."""
        lm = self.length_model
        if self.halt is not None:
            return lm.log_prob(lengths, self.halt(next_hidden).squeeze(-1))
        return lm.log_prob(lengths, None).to(next_hidden.dtype)

    def _fused_hidden_projection(self) -> tuple[Tensor, Tensor]:
        """``[W_h^post; W_h^GRU]`` and its bias: the posterior's and the transition's products on
        ``h_{t-1}`` as one matmul per step (the fast path's only loop-bound product on ``h``)."""
        rnn = self.transition.rnn
        weight = torch.cat([self.posterior.hidden_weight, rnn.weight_hh], 0)
        bias = torch.cat([rnn.bias_hh.new_zeros(self.feature_size), rnn.bias_hh], 0)
        return weight, bias

    # ------------------------------------------------------------------ fast path
    def elbo_terms(self, batch: Batch, *, samples: int = 1, noise: Tensor | None = None,
                   generator: torch.Generator | None = None, latent_noise: bool = True) -> VRNNTerms:
        """One teacher-forced pass with ``samples`` latent draws per sequence (rows ``k * B + b``).

        Args:
            noise: ``(samples * B, T, U)`` standard-normal noise, ``z_t = mu + sigma * noise_t``; drawn
                from ``generator`` when ``None``.
            latent_noise: ``False`` uses the posterior means (``noise = 0``; for prediction).
        """
        inputs = self.sequence_inputs(batch, samples)
        x, lengths, mask = inputs.x, inputs.lengths, inputs.mask
        rows, steps = mask.shape
        dtype = self.initial_hidden.dtype
        if noise is None:
            shape = (rows, steps, self.latent_size)
            noise = (torch.randn(shape, generator=generator, dtype=dtype, device=x.device)
                     if latent_noise else torch.zeros(shape, dtype=dtype, device=x.device))
        elif noise.shape != (rows, steps, self.latent_size):
            raise ValueError(f"noise must have shape {(rows, steps, self.latent_size)}, got {tuple(noise.shape)}")

        # everything that depends on x alone was computed for all t (sequence_inputs); in the loop,
        # one matmul on h_{t-1} shared by the posterior and the transition
        w_h, b_h = self._fused_hidden_projection()
        feat = self.feature_size

        h = self.initial_hidden.expand(rows, -1)
        prev_h, locs, scales, zs, z_feats = [], [], [], [], []
        for post_x_t, gates_x_t, eps_t in zip(inputs.posterior_frame_part.unbind(1),
                                              inputs.transition_inputs.unbind(1), noise.unbind(1)):
            proj = F.linear(h, w_h, b_h)
            loc, scale = self.posterior(post_x_t, h, hidden_part=proj[:, :feat])
            z = loc + scale * eps_t
            z_feat = self.phi_z(z)
            prev_h.append(h)
            h = self.transition(gates_x_t, z_feat, h, hidden_gates=proj[:, feat:])
            locs.append(loc), scales.append(scale), zs.append(z), z_feats.append(z_feat)
        prev_hidden = torch.stack(prev_h, 1)
        next_hidden = torch.cat([prev_hidden[:, 1:], h.unsqueeze(1)], 1)
        q_loc, q_scale, z = torch.stack(locs, 1), torch.stack(scales, 1), torch.stack(zs, 1)

        # everything else vectorised over time
        p_loc, p_scale = self.prior(prev_hidden)
        params = self.emitter(torch.stack(z_feats, 1), prev_hidden)
        recon = self.frame.log_prob(params, x)
        kl = gaussian_kl(q_loc, q_scale, p_loc, p_scale)
        log_q = reparameterised_log_density(noise, q_scale)
        log_ratio = gaussian_log_density(z, p_loc, p_scale) - log_q
        length = self.length_log_prob(lengths, next_hidden)
        return VRNNTerms(recon, kl, log_ratio, length, mask, z, q_loc, prev_hidden)

    # ------------------------------------------------------------------ likelihood
    def log_prob(self, batch: Batch, *, estimator: str | None = None, samples: int | None = None,
                 generator: torch.Generator | None = None) -> LogProb:
        """ELBO, IWAE-K bound or importance-sampled estimate per sequence (see the module docstring)."""
        estimator = self.check_estimator(estimator)
        k_total = int(samples) if samples is not None else self.default_samples[estimator]
        log_w, elbo_terms = self.log_weights(batch, k_total, generator=generator)
        return latent.estimate(log_w, estimator, elbo_terms=elbo_terms)

    def log_weights(self, batch: Batch, samples: int, *,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``(K, B)`` log importance weights ``log p(x, T, z_k) - log q(z_k | x)`` and, from the same
        draws, ``(K, B)`` single-draw ELBOs with the closed-form KL; drawn in memory-bounded chunks.
        """
        if samples < 1:
            raise UserError(f"the number of samples must be positive, got {samples}")
        n, steps = batch.batch_size, batch.max_length
        chunk = max(1, _CHUNK_ROW_STEPS // max(1, n * steps))
        elbo_parts: list[Tensor] = []

        def draw(k: int) -> Tensor:
            terms = self.elbo_terms(batch, samples=k, generator=generator)
            elbo_parts.append(latent.check_log_weights(terms.elbo.reshape(k, n), "ELBO terms"))
            return terms.log_weight.reshape(k, n)

        log_w = latent.collect_log_weights(draw, samples, chunk=chunk)
        return log_w, torch.cat(elbo_parts, 0)

    def loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        """``-(E log p(x|z) + log P(T)) / N + beta * sum_u max(lambda, KL_u / N)`` (one draw)."""
        terms = self.elbo_terms(batch, generator=generator)
        n_frames = batch.n_frames
        recon = torch.where(terms.mask, terms.recon, torch.zeros_like(terms.recon)).sum() + terms.length.sum()
        kl = free_bits_kl(terms.kl, terms.mask, n_frames, float(self.config["free_bits"]))
        return -recon / n_frames + self.kl_weight * kl

    def on_train_step(self, step: int, total_steps: int) -> None:
        self.kl_weight = self.annealing(step, total_steps)

    def validation_loss(self, batch: Batch) -> float:
        """``-ELBO`` per frame (``beta = 1``, no free bits; one draw from a fixed seed)."""
        with torch.no_grad():
            terms = self.elbo_terms(batch, generator=generator_for(self, 0))
            return float(-terms.elbo.sum() / batch.n_frames)

    @torch.no_grad()
    def diagnostics(self, batch: Batch) -> dict[str, Any]:
        """Posterior-collapse diagnostics on ``batch`` (one draw from a fixed seed).

        Returns ``kl_per_frame`` (closed-form KL, nats), ``recon_nll_per_frame``,
        ``elbo_nll_per_frame`` (``-ELBO`` per frame), ``kl_weight`` (the current ``beta``),
        ``kl_per_unit`` (list, nats per frame) and ``active_units``: the number of units ``u`` with
        ``Var(E_q[z_{t,u}]) > 0.01`` over the batch's real frames (Burda et al. 2016, §5.2, applied
        per frame along the drawn trajectory).
        """
        terms = self.elbo_terms(batch, generator=generator_for(self, 0))
        mask = terms.mask
        frames = batch.n_frames
        kl_unit = torch.where(mask.unsqueeze(-1), terms.kl, torch.zeros_like(terms.kl)).sum((0, 1)) / frames
        recon = float(torch.where(mask, terms.recon, torch.zeros_like(terms.recon)).sum() + terms.length.sum())
        means = terms.q_loc[mask]                                            # (frames, U)
        activity = means.var(0, unbiased=True) if means.shape[0] > 1 else means.new_zeros(self.latent_size)
        return {
            "kl_per_frame": float(kl_unit.sum()),
            "recon_nll_per_frame": -recon / frames,
            "elbo_nll_per_frame": float(-terms.elbo.sum() / frames),
            "kl_weight": float(self.kl_weight),
            "kl_per_unit": [round(float(v), 5) for v in kl_unit],
            "active_units": int((activity > ACTIVITY_THRESHOLD).sum()),
        }

    # ------------------------------------------------------------------ data-dependent init
    def prepare(self, dataset: Any) -> None:
        """Set the decoder's output bias to the training data's marginals (per component)."""
        examples = [e for e in dataset.split("train") if isinstance(e, Tensor)]
        if not examples:
            return
        data = torch.cat(examples, 0)
        base = self.frame.component if isinstance(self.frame, MixtureFrame) else self.frame
        if isinstance(base, BernoulliFrame):
            p = data.float().mean(0).clamp(1e-3, 1 - 1e-3)
            bias = torch.log(p) - torch.log1p(-p)
        elif isinstance(base, GaussianFrame):
            bias = torch.cat([data.float().mean(0), torch.log(data.float().std(0).clamp_min(1e-3))])
        elif isinstance(base, CategoricalFrame):
            counts = torch.bincount(data.long().reshape(-1), minlength=base.param_dim).float()
            bias = torch.log((counts + 1) / (counts.sum() + base.param_dim))
        else:
            return
        out = self.emitter.output_layer
        with torch.no_grad():
            if isinstance(self.frame, MixtureFrame):
                c = self.frame.components
                out.bias[c:] = bias.to(out.bias.dtype).repeat(c)
            else:
                out.bias.copy_(bias.to(out.bias.dtype))

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict_next(self, batch: Batch) -> Tensor:
        terms = self.elbo_terms(batch, latent_noise=False)
        p_loc, _ = self.prior(terms.prev_hidden)
        params = self.emitter(self.phi_z(p_loc), terms.prev_hidden)
        return self.frame.mean(params)

    # ------------------------------------------------------------------ sampling hooks
    def initial_state(self, n, *, target_length=None):
        return _VRNNState(self.initial_hidden.detach().expand(n, -1), None, 0, target_length)

    def draw_frame(self, state, *, temperature=1.0, generator=None):
        loc, scale = self.prior(state.hidden)
        eps = torch.randn(loc.shape, generator=generator, dtype=loc.dtype, device=loc.device)
        z = loc + math.sqrt(temperature) * scale * eps
        z_feat = self.phi_z(z)
        params = self.emitter(z_feat, state.hidden)
        x = self.frame.sample(params, temperature=temperature, generator=generator)
        return x, replace(state, z_features=z_feat)

    def advance(self, state, frame):
        h = state.hidden
        steps = state.steps + 1
        phi_x = self.phi_x(self.frame.encode(frame).to(h.dtype))
        z_feat = state.z_features
        if z_feat is None:                       # a prefix frame: posterior-mean latent
            loc, _ = self.posterior(self.posterior.frame_part(phi_x), h)
            z_feat = self.phi_z(loc)
        remaining = None if state.target is None else state.target - steps
        h = self.transition(self.transition.frame_inputs(phi_x, self.length_inputs(remaining)), z_feat, h)
        return _VRNNState(h, None, steps, state.target)

    def stop_logit(self, state):
        if self.halt is None:
            return None
        return self.halt(state.hidden).squeeze(-1)

    # ------------------------------------------------------------------ the Pyro program
    def pyro_model(self, batch: Batch, kl_scale: float = 1.0) -> None:
        """The generative model as a Pyro program (sites ``z_t``, ``x_t``, ``halt_t``, ``length``).

        ``kl_scale`` scales the ``z`` sites (``poutine.scale``); with the same scale in the guide
        this weights ``log p(z) - log q(z)``, i.e. KL annealing. See :mod:`probseq.models.vrnn_pyro`.
        """
        from probseq.models import vrnn_pyro

        vrnn_pyro.pyro_model(self, batch, kl_scale)

    def pyro_guide(self, batch: Batch, kl_scale: float = 1.0) -> None:
        """The inference network ``q(z_t | x_t, h_{t-1})`` as a Pyro guide (same ``z_t`` sites)."""
        from probseq.models import vrnn_pyro

        vrnn_pyro.pyro_guide(self, batch, kl_scale)


def _rename_old_keys(module, state_dict, prefix, *_args) -> None:
    """Load-time hook: a state_dict saved before the VRNN was built from public pieces keeps loading
    (``rnn.weight_ih`` -> ``transition.rnn.weight_ih``, ``decoder.4.bias`` -> ``emitter.net.4.bias``, ...)."""
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        for old, new in _RENAMED_KEYS.items():
            if local.startswith(old) and not local.startswith(new):
                state_dict[prefix + new + local[len(old):]] = state_dict.pop(key)
                break
