"""KL annealing and free bits: two standard remedies for posterior collapse in variational models.

A latent-variable model trained on the ELBO
:math:`\\mathcal L = E_q[\\log p(x \\mid z)] - \\mathrm{KL}(q(z \\mid x) \\,\\|\\, p(z))` with a
powerful decoder can reach a poor local optimum where ``q(z|x) = p(z)`` and the latents carry no
information (*posterior collapse*; Bowman et al. 2016). Two remedies:

**KL annealing** (Bowman et al. 2016, §3.1; Serban et al. 2017 for VHRED) trains on
:math:`E_q[\\log p(x \\mid z)] - \\beta_s\\,\\mathrm{KL}` with a weight :math:`\\beta_s` that grows from
``start`` to 1 over the first ``warmup`` fraction of the ``total`` training steps
(:class:`KLAnnealing`): ``linear``, ``sigmoid`` (a logistic ramp), or ``cyclic`` (Fu et al. 2019:
the ramp repeats ``cycles`` times, each cycle rising during its first half and staying at 1 for the
second half). During annealing the objective is not a bound on :math:`\\log p(x)`; models report
the true ELBO (``beta = 1``) for validation and evaluation.

**Free bits** (Kingma et al. 2016, *Improved variational inference with inverse autoregressive
flow*, eq. 15) replace the KL term by :math:`\\sum_u \\max(\\lambda, \\overline{\\mathrm{KL}}_u)`,
where :math:`\\overline{\\mathrm{KL}}_u` is the KL of latent unit ``u`` averaged over the minibatch
(here: per frame), so that the optimiser gains nothing from pushing a unit's KL below ``lambda``
nats (:func:`free_bits_kl`). Its gradient with respect to a unit whose KL is below the floor is zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from probseq.errors import UserError

__all__ = ["KLAnnealing", "ANNEALING_SCHEDULES", "free_bits_kl"]

ANNEALING_SCHEDULES = ("constant", "linear", "sigmoid", "cyclic")


@dataclass(frozen=True)
class KLAnnealing:
    """The KL weight :math:`\\beta` as a function of the training step.

    Attributes:
        schedule: ``constant`` (always 1) | ``linear`` | ``sigmoid`` | ``cyclic``.
        warmup: fraction of the total steps over which ``beta`` rises to 1 (``cyclic``: the
            fraction of training the ``cycles`` cycles span; afterwards ``beta = 1``).
        start: ``beta`` at step 0 (``linear``/``cyclic`` start there; ``sigmoid`` starts close to it).
        cycles: number of cycles (``cyclic`` only).

    Example: ``KLAnnealing("linear", warmup=0.2)(step=50, total=1000)`` is 0.25.
    """

    schedule: str = "linear"
    warmup: float = 0.2
    start: float = 0.0
    cycles: int = 4

    def __post_init__(self) -> None:
        if self.schedule not in ANNEALING_SCHEDULES:
            raise UserError(f"unknown KL annealing schedule {self.schedule!r}; expected one of "
                            f"{', '.join(ANNEALING_SCHEDULES)}")
        if not 0.0 <= self.warmup <= 1.0:
            raise UserError(f"the KL warm-up must be a fraction of training in [0, 1], got {self.warmup}")
        if not 0.0 <= self.start <= 1.0:
            raise UserError(f"the initial KL weight must lie in [0, 1], got {self.start}")
        if self.cycles < 1:
            raise UserError(f"the number of annealing cycles must be positive, got {self.cycles}")

    def __call__(self, step: int, total: int) -> float:
        """``beta`` before optimisation step ``step`` (0-based) of ``total``; in ``[start, 1]``."""
        if self.schedule == "constant" or self.warmup == 0.0 or total <= 0:
            return 1.0
        span = self.warmup * total
        if step >= span:
            return 1.0
        progress = step / span                                        # in [0, 1)
        if self.schedule == "linear":
            ramp = progress
        elif self.schedule == "sigmoid":
            # logistic ramp centred at half the warm-up; 1/(1+e^6) ~ 0.0025 at the ends
            ramp = 1.0 / (1.0 + math.exp(-12.0 * (progress - 0.5)))
        else:  # cyclic: each cycle rises linearly over its first half, then holds at 1
            phase = (progress * self.cycles) % 1.0
            ramp = min(1.0, 2.0 * phase)
        return self.start + (1.0 - self.start) * ramp


def free_bits_kl(kl: Tensor, mask: Tensor, n_frames: int | float, free_bits: float) -> Tensor:
    """The KL term per frame with a free-bits floor per latent unit.

    Args:
        kl: ``(B, T, U)`` KL of each latent unit at each step (e.g. closed form between diagonal
            Gaussians), padding entries arbitrary but finite.
        mask: ``(B, T)`` bool, True on real frames (:attr:`probseq.data.batch.Batch.mask`).
        n_frames: number of real frames (the normaliser).
        free_bits: ``lambda``, nats per unit per frame; 0 gives the plain KL per frame.

    Returns:
        A scalar: :math:`\\sum_u \\max(\\lambda, \\overline{\\mathrm{KL}}_u)` with
        :math:`\\overline{\\mathrm{KL}}_u = \\sum_{b,t} m_{bt}\\,\\mathrm{KL}_{btu} / N`.
    """
    if free_bits < 0:
        raise UserError(f"free bits must be non-negative, got {free_bits}")
    per_unit = torch.where(mask.unsqueeze(-1), kl, torch.zeros_like(kl)).sum((0, 1)) / n_frames
    if free_bits == 0:
        return per_unit.sum()
    return torch.clamp(per_unit, min=free_bits).sum()
