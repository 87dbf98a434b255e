"""Brute-force oracles for tiny RBMs (STYLE.md, convention 5): sums over *both* layers.

Everything here is deliberately naive — written from the energy ``E(v, h)`` alone, with none of
the algebra :mod:`probseq.frames.rbm` relies on (softplus free energies, analytic Gaussian
integrals, enumerating only the smaller layer) — so that the two can check each other. Only for
RBMs with a handful of units; use float64.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from probseq.frames.rbm import RBM
from probseq.frames.rbm_exact import binary_states

__all__ = ["brute_force_log_partition", "brute_force_free_energy", "visible_distribution",
           "gibbs_kernel", "exact_gradient", "expected_cd_gradient", "grid_log_partition"]


def random_rbm(d: int = 3, h: int = 2, visible: str = "bernoulli", seed: int = 0, scale: float = 1.0,
               learn_sigma: bool = False) -> RBM:
    """A float64 RBM with weights of std ``scale``, standard normal biases and, for Gaussian
    visibles, ``log sigma`` uniform in ``[-0.5, 0.5]``; seeded through the global generator."""
    torch.manual_seed(seed)
    rbm = RBM(d, h, visible, init_std=scale, learn_sigma=learn_sigma).double()
    with torch.no_grad():
        rbm.visible_bias.normal_()
        rbm.hidden_bias.normal_()
        if visible == "gaussian":
            rbm.log_sigma.uniform_(-0.5, 0.5)
    return rbm


def _joint_log_weights(rbm: RBM, visible_bias=None, hidden_bias=None) -> Tensor:
    """``-E(v, h)`` for every ``(v, h)`` of a Bernoulli RBM, shape ``(2^D, 2^H)``."""
    vs = binary_states(rbm.n_visible, dtype=rbm.weight.dtype)
    hs = binary_states(rbm.n_hidden, dtype=rbm.weight.dtype)
    return -rbm.energy(vs[:, None, :], hs[None, :, :], visible_bias, hidden_bias)


def brute_force_log_partition(rbm: RBM, visible_bias=None, hidden_bias=None) -> Tensor:
    """``log sum_v sum_h exp(-E(v, h))`` (Bernoulli) or by a grid over ``v`` (Gaussian)."""
    if rbm.gaussian:
        return grid_log_partition(rbm, visible_bias, hidden_bias)
    return torch.logsumexp(_joint_log_weights(rbm, visible_bias, hidden_bias).flatten(), 0)


def brute_force_free_energy(rbm: RBM, v: Tensor, visible_bias=None, hidden_bias=None) -> Tensor:
    """``-log sum_h exp(-E(v, h))`` by enumerating the hiddens, shape ``v.shape[:-1]``."""
    hs = binary_states(rbm.n_hidden, dtype=rbm.weight.dtype)
    neg_e = -rbm.energy(v.unsqueeze(-2), hs, visible_bias, hidden_bias)
    return -torch.logsumexp(neg_e, -1)


def grid_log_partition(rbm: RBM, visible_bias=None, hidden_bias=None, *, points: int = 81,
                       width: float = 9.0) -> Tensor:
    """Gaussian visibles: ``log sum_h integral exp(-E(v, h)) dv`` by a Riemann sum on a grid.

    The grid spans every conditional mean ``b + sigma W h`` plus ``width`` standard deviations
    on each side, ``points`` nodes per dimension (``points^D`` in all: keep ``D <= 3``). The
    integrand is smooth and decays like a Gaussian, so the plain Riemann sum is accurate to many
    digits.
    """
    if not rbm.gaussian:
        raise ValueError("grid integration is for Gaussian visible units")
    vb, hb = rbm.biases(visible_bias, hidden_bias)
    sigma = rbm.sigma
    hs = binary_states(rbm.n_hidden, dtype=rbm.weight.dtype)
    means = vb + sigma * (hs @ rbm.weight.t())                    # (2^H, D)
    means, sigma = means.detach(), sigma.detach()
    lo = means.min(0).values - width * sigma
    hi = means.max(0).values + width * sigma
    axes = [torch.linspace(float(lo[i]), float(hi[i]), points, dtype=rbm.weight.dtype)
            for i in range(rbm.n_visible)]
    cell = math.prod(float(a[1] - a[0]) for a in axes)
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, rbm.n_visible)
    neg_e = -rbm.energy(grid[:, None, :], hs[None, :, :], vb, hb)   # (G, 2^H)
    return torch.logsumexp(neg_e.flatten(), 0) + math.log(cell)


def visible_distribution(rbm: RBM, visible_bias=None, hidden_bias=None) -> Tensor:
    """``P(v)`` for all ``2^D`` visible vectors (counting order), by brute force."""
    log_w = _joint_log_weights(rbm, visible_bias, hidden_bias)
    return torch.softmax(torch.logsumexp(log_w, 1), 0)


def gibbs_kernel(rbm: RBM) -> Tensor:
    """The transition matrix ``K[v, v'] = sum_h p(h | v) p(v' | h)`` of one Gibbs round, ``(2^D, 2^D)``.

    Conditionals are computed from the energy by normalising over the other layer's states.
    """
    log_w = _joint_log_weights(rbm)                               # (V, H) = -E(v, h)
    p_h_given_v = torch.softmax(log_w, 1)                         # rows: v
    p_v_given_h = torch.softmax(log_w, 0)                         # columns: h
    return p_h_given_v @ p_v_given_h.t()


def _free_energy_grads(rbm: RBM, states: Tensor) -> dict[str, Tensor]:
    """``dF(v)/d theta`` for each state, as ``{name: (S, *shape)}`` (by autograd, one state at a time)."""
    names = [n for n, p in rbm.named_parameters()]
    out = {n: [] for n in names}
    for v in states:
        grads = torch.autograd.grad(brute_force_free_energy(rbm, v), [dict(rbm.named_parameters())[n]
                                                                      for n in names])
        for n, g in zip(names, grads):
            out[n].append(g)
    return {n: torch.stack(g) for n, g in out.items()}


def exact_gradient(rbm: RBM, data: Tensor) -> dict[str, Tensor]:
    """Gradient of the mean negative log-likelihood ``-mean_n log P(v_n)`` over binary ``data`` ``(N, D)``.

    ``= E_data[dF/d theta] - E_model[dF/d theta]``, with the model expectation an explicit sum
    over all ``2^D`` visible vectors weighted by :func:`visible_distribution`.
    """
    states = binary_states(rbm.n_visible, dtype=rbm.weight.dtype)
    grads = _free_energy_grads(rbm, states)
    model_p = visible_distribution(rbm).detach()
    data_p = _empirical(data, rbm.n_visible)
    return {n: torch.tensordot(data_p - model_p, g, 1) for n, g in grads.items()}


def expected_cd_gradient(rbm: RBM, data: Tensor, k: int) -> dict[str, Tensor]:
    """The *expected* CD-k gradient ``E_data[dF/d theta] - E_{q_k}[dF/d theta]``, exactly.

    ``q_k = p_data K^k`` is the law of the negatives after ``k`` Gibbs rounds started at the data
    (:func:`gibbs_kernel`); as ``k -> infinity`` it tends to ``P`` and the expected CD-k gradient to
    :func:`exact_gradient`.
    """
    states = binary_states(rbm.n_visible, dtype=rbm.weight.dtype)
    grads = _free_energy_grads(rbm, states)
    data_p = _empirical(data, rbm.n_visible)
    q = data_p @ torch.linalg.matrix_power(gibbs_kernel(rbm).detach(), int(k))
    return {n: torch.tensordot(data_p - q, g, 1) for n, g in grads.items()}


def _empirical(data: Tensor, d: int) -> Tensor:
    """Empirical distribution of binary rows of ``data`` over the ``2^d`` states (counting order)."""
    bits = 2 ** torch.arange(d - 1, -1, -1)
    idx = (data.round().long() * bits).sum(-1)
    counts = torch.bincount(idx, minlength=2 ** d).to(data.dtype)
    return counts / counts.sum()
