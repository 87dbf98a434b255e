"""The RBM as a frame distribution: ``p(x_t | theta_t)`` of a sequence model with bias offsets ``theta_t``.

:class:`RBMFrame` wraps an :class:`~probseq.frames.rbm.RBM` whose biases a backbone shifts per step
(RNN-RBM, the RBM frame of the generic models); its likelihood is exact or AIS/RAISE-estimated.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.frames.base import FrameDistribution
from probseq.frames.rbm import MEAN_METHODS, RBM, check_scorable_frames, expected_visible
from probseq.precision import full_precision

__all__ = ["RBMFrame"]


class RBMFrame(FrameDistribution):
    """An RBM as the per-step distribution ``p(x_t | theta_t)`` of a sequence model.

    ``params`` ``(..., D + H)`` are dynamic bias *offsets* ``[delta_b (D), delta_c (H)]`` set by a
    backbone; the step's RBM has biases ``b + delta_b`` and ``c + delta_c`` where ``b, c`` are the
    wrapped :class:`RBM`'s own (shared over time) and ``W`` is shared too. With zero ``params`` the
    frame is the plain RBM, so a pre-trained RBM drops in.

    * :meth:`log_prob`: ``-F(x) - log Z``; ``log Z`` exact when the smaller layer has at most
      ``exact_max_units`` units, otherwise AIS with the frame's settings (the global random
      generator; sequence models call :meth:`log_prob_with_stderr` with an explicit generator).
    * :meth:`loss`: the CD-k surrogate ``F(x) - F(x_neg)`` with ``k = cd_steps`` (mutable, so a
      schedule can change it) and the negatives detached; the gradient reaches the backbone
      through the biases.
    * :meth:`sample`: ``sample_steps`` rounds of Gibbs sampling (see :meth:`RBM.sample`).
    * :meth:`mean`: an estimate of ``E[x]``, by ``mean_method``: ``"gibbs"`` (default,
      :meth:`RBM.gibbs_mean` with ``mean_chains`` chains of ``mean_steps`` rounds, from a generator
      seeded with ``mean_seed`` on every call, so the prediction is a deterministic function of
      ``params``) or ``"mean-field"`` (:meth:`RBM.mean_field`, ``mean_field_steps`` damped
      iterations: cheaper, but on bouncing balls its next-frame error was 1.2–1.4x the Gibbs
      average's, see ``benchmarks/RESULTS.md``).
    """

    likelihood_kind: ClassVar[str] = "estimate"

    def __init__(self, n_visible: int, n_hidden: int, visible: str = "bernoulli", *, cd_steps: int = 1,
                 sample_steps: int = 100, mean_field_steps: int = 20, exact_max_units: int = 12,
                 ais_chains: int = 100, ais_steps: int = 1000, sigma: float = 1.0,
                 learn_sigma: bool = False, init_std: float = 0.01, mean_method: str = "gibbs",
                 mean_chains: int = 20, mean_steps: int = 25, mean_seed: int = 0) -> None:
        super().__init__()
        if mean_method not in MEAN_METHODS:
            raise UserError(f"the prediction method must be one of {', '.join(MEAN_METHODS)}, got {mean_method!r}")
        self.rbm = RBM(n_visible, n_hidden, visible, sigma=sigma, learn_sigma=learn_sigma,
                       init_std=init_std)
        self.data_kind = "real" if visible == "gaussian" else "binary"
        self.param_dim = n_visible + n_hidden
        self.input_dim = n_visible
        self.event_shape = torch.Size([n_visible])
        self.cd_steps = int(cd_steps)
        self.sample_steps = int(sample_steps)
        self.mean_field_steps = int(mean_field_steps)
        self.exact_max_units = int(exact_max_units)
        self.ais_chains = int(ais_chains)
        self.ais_steps = int(ais_steps)
        self.mean_method, self.mean_chains = mean_method, int(mean_chains)
        self.mean_steps, self.mean_seed = int(mean_steps), int(mean_seed)

    @property
    def exact_by_default(self) -> bool:
        """Whether :meth:`log_prob` enumerates (the smaller layer has at most ``exact_max_units``)."""
        return self.rbm.exact_units() <= self.exact_max_units

    def biases(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """The step's full biases ``(b + delta_b, c + delta_c)`` from ``params`` ``(..., D + H)``."""
        if params.shape[-1] != self.param_dim:
            raise ValueError(f"RBM frame parameters must end in {self.param_dim}, got {tuple(params.shape)}")
        d = self.rbm.n_visible
        return self.rbm.visible_bias + params[..., :d], self.rbm.hidden_bias + params[..., d:]

    @full_precision
    def log_prob_with_stderr(self, params: Tensor, x: Tensor, *, method: str,
                             chains: int | None = None, steps: int | None = None,
                             generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """``(log p(x | params), stderr)``, each of shape ``params.shape[:-1]`` (stderr ``None`` if exact)."""
        vb, hb = self.biases(params)
        if method == "raise":
            from probseq.frames.rbm_annealing import rbm_raise_log_prob

            return rbm_raise_log_prob(self.rbm, x, visible_bias=vb, hidden_bias=hb,
                                      chains=chains or self.ais_chains, steps=steps or self.ais_steps,
                                      generator=generator)
        log_z = self.rbm.log_partition(method, visible_bias=vb, hidden_bias=hb,
                                       chains=chains or self.ais_chains, steps=steps or self.ais_steps,
                                       generator=generator)
        return -self.rbm.free_energy(x, vb, hb) - log_z.value, log_z.stderr

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        method = "exact" if self.exact_by_default else "ais"
        return self.log_prob_with_stderr(params, x, method=method)[0]

    @full_precision
    def loss(self, params: Tensor, x: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        vb, hb = self.biases(params)
        return self.rbm.cd_loss(x, self.cd_steps, visible_bias=vb, hidden_bias=hb, generator=generator)

    def sample(self, params: Tensor, *, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        vb, hb = self.biases(params)
        return self.rbm.sample(steps=self.sample_steps, visible_bias=vb, hidden_bias=hb,
                               temperature=temperature, generator=generator)

    def mean(self, params: Tensor) -> Tensor:
        vb, hb = self.biases(params)
        return expected_visible(self.rbm, vb, hb, method=self.mean_method, mean_field_steps=self.mean_field_steps,
                                chains=self.mean_chains, steps=self.mean_steps, seed=self.mean_seed)

    def validate(self, x: Tensor) -> None:
        check_scorable_frames(x, gaussian=self.data_kind != "binary")
