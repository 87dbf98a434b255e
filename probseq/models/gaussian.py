"""Diagonal Gaussian latents of the latent-variable models (VRNN, VHRED): KL, log-density, parameters.

One copy of the closed-form pieces that :mod:`probseq.models.vrnn` and :mod:`probseq.models.vhred`
both need for ``z ~ N(mu, diag sigma^2)``:

* :func:`gaussian_kl`: ``KL(q || p)`` between diagonal Gaussians, per dimension (sum the last
  dimension for the KL of the vector);
* :func:`gaussian_log_density`: ``log N(z; mu, diag sigma^2)``, summed over the last dimension;
* :func:`reparameterised_log_density`: the same at a draw ``z = mu + sigma * eps``, from ``eps``;
* :func:`loc_scale`: a network output ``[mu, a]`` read as ``(mu, softplus(a) + 1e-4)``.

The densities and the KL are computed in float32 (or float64) even under autocast
(:func:`~probseq.precision.full_precision`): they are summed over steps into ELBO and IWAE terms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from probseq.precision import full_precision

__all__ = ["MIN_SCALE", "gaussian_kl", "gaussian_log_density", "reparameterised_log_density", "loc_scale"]

_LOG_2PI = math.log(2 * math.pi)
#: smallest standard deviation a network output is given by :func:`loc_scale`
MIN_SCALE = 1e-4


@full_precision
def gaussian_kl(q_loc: Tensor, q_scale: Tensor, p_loc: Tensor, p_scale: Tensor) -> Tensor:
    """``KL(N(q_loc, q_scale^2) || N(p_loc, p_scale^2))`` elementwise (diagonal Gaussians).

    .. math:: \\log\\frac{\\sigma_p}{\\sigma_q} + \\frac{\\sigma_q^2 + (\\mu_q-\\mu_p)^2}{2\\sigma_p^2} - \\frac12

    Shapes broadcast; the result has one value per dimension (``.sum(-1)`` gives the KL of a vector).
    """
    ratio = (q_scale / p_scale) ** 2
    return 0.5 * (ratio + ((q_loc - p_loc) / p_scale) ** 2 - 1.0 - torch.log(ratio))


@full_precision
def gaussian_log_density(z: Tensor, mu: Tensor, std: Tensor) -> Tensor:
    """``log N(z; mu, diag std^2)``, summed over the last dimension."""
    return (-0.5 * ((z - mu) / std) ** 2 - torch.log(std) - 0.5 * _LOG_2PI).sum(-1)


@full_precision
def reparameterised_log_density(noise: Tensor, std: Tensor) -> Tensor:
    """``log N(mu + std * noise; mu, diag std^2)`` from the standard-normal ``noise``, summed over
    the last dimension (exact, with no ``(z - mu) / std`` round trip)."""
    return (-0.5 * noise ** 2 - torch.log(std) - 0.5 * _LOG_2PI).sum(-1)


def loc_scale(out: Tensor) -> tuple[Tensor, Tensor]:
    """Split ``(..., 2 U)`` into a mean and a standard deviation ``softplus(.) + MIN_SCALE``, ``2 x (..., U)``."""
    loc, raw = out.chunk(2, -1)
    return loc, F.softplus(raw) + MIN_SCALE
