"""Factorial frame distributions for the baselines: Bernoulli, diagonal Gaussian, categorical.

Each treats the dimensions of a frame as independent given the parameters:

.. math:: p(x_t \\mid \\theta_t) = \\prod_{d=1}^D p(x_{t,d} \\mid \\theta_{t,d}).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from probseq.errors import UserError
from probseq.frames.base import FrameDistribution
from probseq.precision import full_precision

__all__ = ["BernoulliFrame", "GaussianFrame", "CategoricalFrame", "make_factorial_frame"]

_LOG_2PI = math.log(2 * math.pi)
#: log-standard-deviations are clamped to this range before ``exp``
_LOG_STD_RANGE = (-7.0, 5.0)


def _check_finite(x: Tensor, what: str) -> None:
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise UserError(f"{what} contains NaN or infinite values")


class BernoulliFrame(FrameDistribution):
    """Independent Bernoulli units, parameterised by logits ``a``: ``p(x_d=1) = sigmoid(a_d)``.

    ``log p(x | a) = sum_d x_d a_d - softplus(a_d)``.  Temperature divides the logits. Frames with
    values in (0, 1) (grey-level video) give the cross-entropy, the usual surrogate.
    """

    data_kind = "binary"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.param_dim = self.input_dim = dim
        self.event_shape = torch.Size([dim])

    @full_precision
    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        return (x * params - F.softplus(params)).sum(-1)

    def sample(self, params, *, temperature=1.0, generator=None):
        probs = torch.sigmoid(params / temperature)
        return torch.bernoulli(probs, generator=generator)

    observed_marginal = "exact"

    @full_precision
    def observed_log_prob(self, params, x, observed):
        lp = x * params - F.softplus(params)
        return torch.where(observed, lp, torch.zeros_like(lp)).sum(-1)

    def fill_missing(self, params, x, observed, *, temperature=1.0, generator=None):
        draw = self.sample(params.detach(), temperature=temperature, generator=generator).to(x.dtype)
        return torch.where(observed, x, draw), self.observed_log_prob(params, x, observed)

    def mean(self, params):
        return torch.sigmoid(params)

    def validate(self, x):
        _check_finite(x, "the data")
        if not ((x >= 0) & (x <= 1)).all():
            raise UserError("binary frames must lie in [0, 1] (0/1 values, or intensities used as "
                            "Bernoulli means)")


class GaussianFrame(FrameDistribution):
    """Independent Gaussians with mean ``mu`` and log-standard-deviation ``s`` (clamped to [-7, 5]).

    ``params = [mu, s]`` (``2 D`` numbers). ``log p(x) = -sum_d [ (x_d-mu_d)^2 / (2 e^{2 s_d}) + s_d
    + log(2 pi)/2 ]``. Temperature ``tau`` scales the variance by ``tau``.
    """

    data_kind = "real"

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.param_dim = 2 * dim
        self.input_dim = dim
        self.event_shape = torch.Size([dim])

    def split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(mu, log_std)``, each ``(..., D)``, with ``log_std`` clamped (the distribution's own numbers)."""
        mu, log_std = params.split(self.dim, dim=-1)
        return mu, log_std.clamp(*_LOG_STD_RANGE)

    @full_precision
    def log_prob(self, params, x):
        mu, log_std = self.split(params)
        z = (x - mu) * torch.exp(-log_std)
        return -(0.5 * z * z + log_std + 0.5 * _LOG_2PI).sum(-1)

    def sample(self, params, *, temperature=1.0, generator=None):
        mu, log_std = self.split(params)
        noise = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        return mu + math.sqrt(temperature) * torch.exp(log_std) * noise

    observed_marginal = "exact"

    @full_precision
    def observed_log_prob(self, params, x, observed):
        mu, log_std = self.split(params)
        z = (x - mu) * torch.exp(-log_std)
        lp = -(0.5 * z * z + log_std + 0.5 * _LOG_2PI)
        return torch.where(observed, lp, torch.zeros_like(lp)).sum(-1)

    def fill_missing(self, params, x, observed, *, temperature=1.0, generator=None):
        draw = self.sample(params.detach(), temperature=temperature, generator=generator).to(x.dtype)
        return torch.where(observed, x, draw), self.observed_log_prob(params, x, observed)

    def mean(self, params):
        return self.split(params)[0]

    def validate(self, x):
        _check_finite(x, "the data")


class CategoricalFrame(FrameDistribution):
    """One symbol out of ``K`` per frame, parameterised by logits; frames are int64 indices.

    ``log p(x = k) = a_k - logsumexp(a)``. The backbone reads a one-hot encoding.
    """

    data_kind = "categorical"

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        self.param_dim = self.input_dim = n_classes
        self.event_shape = torch.Size([])

    @full_precision
    def log_prob(self, params, x):
        return torch.log_softmax(params, -1).gather(-1, x.long().unsqueeze(-1)).squeeze(-1)

    def sample(self, params, *, temperature=1.0, generator=None):
        probs = torch.softmax(params / temperature, -1)
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])

    observed_marginal = "exact"

    def observed_log_prob(self, params, x, observed):
        lp = self.log_prob(params, torch.where(observed, x, torch.zeros_like(x)))
        return torch.where(observed, lp, torch.zeros_like(lp))

    def fill_missing(self, params, x, observed, *, temperature=1.0, generator=None):
        draw = self.sample(params.detach(), temperature=temperature, generator=generator).to(x.dtype)
        return torch.where(observed, x, draw), self.observed_log_prob(params, x, observed)

    def mean(self, params):
        return torch.softmax(params, -1)

    def encode(self, x):
        return F.one_hot(x.long(), self.param_dim).to(torch.get_default_dtype())

    def validate(self, x):
        if x.is_floating_point() or int(x.min()) < 0 or int(x.max()) >= self.param_dim:
            raise UserError(f"categorical frames must be integers in [0, {self.param_dim})")


def make_factorial_frame(data_kind: str, dim: int) -> FrameDistribution:
    """The factorial frame distribution for ``data_kind`` in ``binary | real | categorical``."""
    table = {"binary": BernoulliFrame, "real": GaussianFrame, "categorical": CategoricalFrame}
    if data_kind not in table:
        raise UserError(f"no factorial frame distribution for data of kind {data_kind!r}")
    return table[data_kind](dim)
