"""A linear-Gaussian state-space model with an exact marginal likelihood: the oracle for latent estimators.

.. math::

    z_1 \\sim \\mathcal N(\\mu_0, P_0), \\qquad z_t = A z_{t-1} + w_t,\\; w_t \\sim \\mathcal N(0, Q),
    \\qquad x_t = C z_t + v_t,\\; v_t \\sim \\mathcal N(0, R).

:meth:`LinearGaussianSSM.log_marginal` computes :math:`\\log p(x_{1:T})` exactly with the Kalman
filter (prediction-error decomposition, Kalman 1960; Murphy 2012, *Machine Learning: a
Probabilistic Perspective*, §18.3), and :meth:`~LinearGaussianSSM.log_marginal_dense` computes it a
second, independent way — the joint Gaussian of all ``T`` observations, built from the covariances
:math:`\\mathrm{Cov}(z_t, z_s) = A^{t-s} P_s` — to check the filter on tiny cases.

Two proposals give log importance weights ``(K, B)`` for :mod:`probseq.estimators.latent`:

* :meth:`~LinearGaussianSSM.prior_log_weights` — the *transition prior* (bootstrap proposal)
  :math:`q(z) = p(z)`, so :math:`\\log w = \\sum_t \\log p(x_t \\mid z_t)`: a fixed, imperfect
  proposal, under which the IWAE-k bound visibly tightens with ``k``;
* :meth:`~LinearGaussianSSM.posterior_log_weights` — the exact posterior by forward filtering,
  backward sampling (Carter & Kohn 1994; Frühwirth-Schnatter 1994): every weight then equals
  :math:`p(x)`, a zero-variance check of the weight bookkeeping.

Everything runs in float64 and is vectorised over the ``B`` sequences (the covariances of the
filter do not depend on the data, so they are computed once). Cost ``O(T d^3 + K B T d^2)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import MultivariateNormal

__all__ = ["LinearGaussianSSM"]

_DTYPE = torch.float64


def _as64(x) -> Tensor:
    return torch.as_tensor(x, dtype=_DTYPE)


def _mvn_log_prob(x: Tensor, mean: Tensor, cov: Tensor) -> Tensor:
    """``log N(x; mean, cov)`` for batched ``x, mean (..., d)`` and one ``cov (d, d)``."""
    chol = torch.linalg.cholesky(cov)
    diff = (x - mean).unsqueeze(-1)
    sol = torch.linalg.solve_triangular(chol, diff, upper=False).squeeze(-1)
    d = x.shape[-1]
    return (-0.5 * (sol * sol).sum(-1) - torch.log(torch.diagonal(chol)).sum()
            - 0.5 * d * math.log(2 * math.pi))


class LinearGaussianSSM:
    """Linear-Gaussian state-space model (latent dim ``d``, observation dim ``m``).

    Args:
        A: ``(d, d)`` transition. C: ``(m, d)`` emission. Q: ``(d, d)``, R: ``(m, m)`` noise
        covariances (positive definite). mu0: ``(d,)``, P0: ``(d, d)`` initial state.
    """

    def __init__(self, A, C, Q, R, mu0, P0) -> None:
        self.A, self.C, self.Q, self.R = _as64(A), _as64(C), _as64(Q), _as64(R)
        self.mu0, self.P0 = _as64(mu0), _as64(P0)
        d, m = self.A.shape[0], self.C.shape[0]
        shapes = {"A": (self.A, (d, d)), "C": (self.C, (m, d)), "Q": (self.Q, (d, d)),
                  "R": (self.R, (m, m)), "mu0": (self.mu0, (d,)), "P0": (self.P0, (d, d))}
        for name, (value, shape) in shapes.items():
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
        self.latent_dim, self.obs_dim = d, m

    @classmethod
    def random(cls, latent_dim: int = 2, obs_dim: int = 2, *, noise: float = 0.5,
               generator: torch.Generator | None = None) -> "LinearGaussianSSM":
        """A random stable model: ``A`` scaled to spectral radius 0.9, ``Q = 0.3 I``, ``R = noise^2 I``."""
        g = generator
        A = torch.randn(latent_dim, latent_dim, generator=g, dtype=_DTYPE)
        A = 0.9 * A / torch.linalg.eigvals(A).abs().max()
        C = torch.randn(obs_dim, latent_dim, generator=g, dtype=_DTYPE)
        return cls(A, C, 0.3 * torch.eye(latent_dim, dtype=_DTYPE),
                   noise ** 2 * torch.eye(obs_dim, dtype=_DTYPE),
                   torch.zeros(latent_dim, dtype=_DTYPE), torch.eye(latent_dim, dtype=_DTYPE))

    # ------------------------------------------------------------------ simulation
    def sample(self, n: int, steps: int, *, generator: torch.Generator | None = None
               ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` sequences of ``steps`` frames: ``(z (n, T, d), x (n, T, m))``."""
        z = self._sample_prior(n, steps, generator)
        noise = torch.randn(n, steps, self.obs_dim, generator=generator, dtype=_DTYPE)
        x = z @ self.C.T + noise @ torch.linalg.cholesky(self.R).T
        return z, x

    def _sample_prior(self, n: int, steps: int, generator) -> Tensor:
        lq = torch.linalg.cholesky(self.Q)
        eps = torch.randn(n, steps, self.latent_dim, generator=generator, dtype=_DTYPE)
        z = [self.mu0 + eps[:, 0] @ torch.linalg.cholesky(self.P0).T]
        for e in eps[:, 1:].unbind(1):
            z.append(z[-1] @ self.A.T + e @ lq.T)
        return torch.stack(z, 1)

    # ------------------------------------------------------------------ exact likelihood
    def _filter(self, x: Tensor):
        """Kalman filter: filtered means ``(B, T, d)``, covariances, predicted covariances, log p(x)."""
        x = _as64(x)
        eye = torch.eye(self.latent_dim, dtype=_DTYPE)
        mean_pred = self.mu0.expand(x.shape[0], -1)
        cov_pred = self.P0
        means, covs, covs_pred = [], [], []
        log_lik = torch.zeros(x.shape[0], dtype=_DTYPE)
        for t, x_t in enumerate(x.unbind(1)):
            if t > 0:
                mean_pred = means[-1] @ self.A.T
                cov_pred = self.A @ covs[-1] @ self.A.T + self.Q
            covs_pred.append(cov_pred)
            innov_cov = self.C @ cov_pred @ self.C.T + self.R
            log_lik = log_lik + _mvn_log_prob(x_t, mean_pred @ self.C.T, innov_cov)
            gain = torch.linalg.solve(innov_cov, self.C @ cov_pred).T          # (d, m)
            means.append(mean_pred + (x_t - mean_pred @ self.C.T) @ gain.T)
            cov = (eye - gain @ self.C) @ cov_pred
            covs.append(0.5 * (cov + cov.T))
        return torch.stack(means, 1), covs, covs_pred, log_lik

    def log_marginal(self, x: Tensor) -> Tensor:
        """Exact ``log p(x_{1:T})`` per sequence by the Kalman filter; ``x (B, T, m)`` -> ``(B,)``."""
        return self._filter(x)[3]

    def log_marginal_dense(self, x: Tensor) -> Tensor:
        """The same number from the joint Gaussian of all ``T m`` observations (``O((Tm)^3)``; tiny T)."""
        x = _as64(x)
        steps, d = x.shape[1], self.latent_dim
        means, marg = [self.mu0], [self.P0]
        for _ in range(1, steps):
            means.append(self.A @ means[-1])
            marg.append(self.A @ marg[-1] @ self.A.T + self.Q)
        cov_z = torch.zeros(steps * d, steps * d, dtype=_DTYPE)
        for s in range(steps):
            block = marg[s]                       # Cov(z_t, z_s) = A^{t-s} P_s for t >= s
            for t in range(s, steps):
                cov_z[t * d:(t + 1) * d, s * d:(s + 1) * d] = block
                cov_z[s * d:(s + 1) * d, t * d:(t + 1) * d] = block.T
                block = self.A @ block
        big_c = torch.block_diag(*([self.C] * steps))
        cov_x = big_c @ cov_z @ big_c.T + torch.block_diag(*([self.R] * steps))
        mean_x = big_c @ torch.cat(means)
        return MultivariateNormal(mean_x, covariance_matrix=cov_x).log_prob(x.reshape(x.shape[0], -1))

    def log_joint(self, z: Tensor, x: Tensor) -> Tensor:
        """``log p(x, z)`` for ``z (..., T, d)`` and ``x`` broadcastable to ``(..., T, m)``."""
        x = _as64(x)
        prior = _mvn_log_prob(z[..., 0, :], self.mu0, self.P0)
        trans = _mvn_log_prob(z[..., 1:, :], z[..., :-1, :] @ self.A.T, self.Q).sum(-1)
        return prior + trans + self._log_emission(z, x)

    def _log_emission(self, z: Tensor, x: Tensor) -> Tensor:
        return _mvn_log_prob(x, z @ self.C.T, self.R).sum(-1)

    # ------------------------------------------------------------------ proposals
    def prior_log_weights(self, x: Tensor, samples: int, *,
                          generator: torch.Generator | None = None) -> Tensor:
        """``(K, B)`` log weights under the transition prior: ``log w = sum_t log p(x_t | z_t)``."""
        x = _as64(x)
        n, steps = x.shape[:2]
        z = self._sample_prior(samples * n, steps, generator).reshape(samples, n, steps, -1)
        return self._log_emission(z, x.unsqueeze(0))

    def posterior_log_weights(self, x: Tensor, samples: int, *,
                              generator: torch.Generator | None = None) -> Tensor:
        """``(K, B)`` log weights under the exact posterior (FFBS); each equals ``log p(x)``."""
        x = _as64(x)
        n, steps = x.shape[:2]
        means, covs, covs_pred, _ = self._filter(x)
        means = means.unsqueeze(0).expand(samples, -1, -1, -1)               # (K, B, T, d)
        z_next = None
        z_rev, log_q = [], torch.zeros(samples, n, dtype=_DTYPE)
        for t in range(steps - 1, -1, -1):
            if z_next is None:
                mean, cov = means[:, :, t], covs[t]
            else:
                gain = torch.linalg.solve(covs_pred[t + 1], self.A @ covs[t]).T  # P A' Ppred^{-1}
                mean = means[:, :, t] + (z_next - means[:, :, t] @ self.A.T) @ gain.T
                cov = covs[t] - gain @ covs_pred[t + 1] @ gain.T
                cov = 0.5 * (cov + cov.T)
            eps = torch.randn(samples, n, self.latent_dim, generator=generator, dtype=_DTYPE)
            z_t = mean + eps @ torch.linalg.cholesky(cov).T
            log_q = log_q + _mvn_log_prob(z_t, mean, cov)
            z_rev.append(z_t)
            z_next = z_t
        z = torch.stack(z_rev[::-1], 2)
        return self.log_joint(z, x.unsqueeze(0)) - log_q
