"""Annealed importance sampling for RBM log-partition functions (Salakhutdinov & Murray 2008).

AIS (Neal 2001) estimates ``Z_B`` of an RBM ``B`` by moving ``M`` independent chains through a
sequence of distributions ``p_k(v) ∝ f_k(v)``, ``0 = beta_0 < beta_1 < ... < beta_K = 1``, from a
tractable base ``p_0`` to ``p_K = P_B``. For an RBM the intermediate distributions keep the
visible term and scale the hidden interaction by ``beta`` (Salakhutdinov & Murray 2008, §4.1):

.. math::

    \\log f_\\beta(v) = (1-\\beta)\\, b_A^\\top v + \\beta\\, b^\\top v
        + \\sum_j \\operatorname{softplus}\\big(\\beta\\, (c_j + (W^\\top v)_j)\\big)
    \\qquad\\text{(Bernoulli visibles)},

    \\log f_\\beta(v) = -\\sum_i \\frac{(v_i - b_i)^2}{2\\sigma_i^2}
        + \\sum_j \\operatorname{softplus}\\big(\\beta\\, (c_j + (W^\\top (v/\\sigma))_j)\\big)
    \\qquad\\text{(Gaussian visibles)},

which is the marginal of the joint ``exp(-(1-beta) E_A - beta E_B)`` with a hidden-free base
``A`` (visible bias ``b_A``; by default the RBM's own ``b``), so block Gibbs sampling at inverse
temperature ``beta`` leaves ``p_beta`` invariant. At ``beta = 0`` the chains start exactly from
``p_0`` (factorial Bernoulli ``sigmoid(b_A)``, or ``N(b, sigma^2)``), whose log-partition is
``sum_i softplus(b_A,i) + H log 2`` (resp. ``sum_i log(sqrt(2 pi) sigma_i) + H log 2``).

Each chain's log importance weight is
``log w = sum_{k=1}^K [log f_{beta_k}(v_{k-1}) - log f_{beta_{k-1}}(v_{k-1})]`` with
``v_k ~ T_{beta_k}(. | v_{k-1})``, and

.. math:: \\widehat{\\log Z_B} = \\log Z_0 + \\log \\frac{1}{M} \\sum_m w_m .

**Standard error** (delta method on the log of the mean weight): with ``r_m = w_m / max_m w_m``,
``\\bar r`` their mean and ``s_r`` their sample standard deviation,
``se(\\widehat{\\log Z}) ≈ s_r / (\\sqrt{M}\\, \\bar r)``. It measures the spread of the chains only:
``E[\\hat Z] = Z`` but ``E[\\log \\hat Z] \\le \\log Z`` (Jensen), so the estimate of ``log Z`` is
biased low and a log-likelihood ``-F(v) - \\widehat{\\log Z}`` is biased *high* (optimistic); with
too few intermediate distributions the weights degenerate, the bias grows and the standard
error under-states it. The effective sample size ``(sum w)^2 / sum w^2`` is returned as a
diagnostic.

**Batching.** The biases may carry a batch shape (one RBM per example and time step of a
sequence model); every RBM gets its own ``M`` chains and all of them advance together, one matrix
product per Gibbs half-step. Memory is bounded by processing the RBMs in chunks.

References:
    Neal (2001), Annealed importance sampling. Statistics and Computing 11.
    Salakhutdinov & Murray (2008), On the quantitative analysis of deep belief networks. ICML.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from probseq.errors import UserError
from probseq.frames.rbm import RBM, LogPartition, _bernoulli

__all__ = ["ais_log_partition", "ais_schedule", "log_mean_exp_with_stderr"]

#: elements of one chunk of chains (``M x RBMs x max(D, H)``), bounding memory
_CHUNK_ELEMENTS = 1 << 24


def ais_schedule(steps: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """Inverse temperatures ``beta_0 = 0 < ... < beta_K = 1`` (``K = steps``), shape ``(K + 1,)``.

    Shaped like Salakhutdinov & Murray's schedule (denser near ``beta = 1``, where the
    distribution changes fastest): 20% of the steps cover ``[0, 0.5]``, 30% ``[0.5, 0.9]`` and the
    remaining 50% ``[0.9, 1]``, each piece linear; fewer than 10 steps are simply linear.
    """
    steps = int(steps)
    if steps < 1:
        raise UserError(f"AIS needs at least one intermediate step, got {steps}")
    if steps < 10:
        return torch.linspace(0.0, 1.0, steps + 1, dtype=dtype)
    n1, n2 = round(0.2 * steps), round(0.3 * steps)
    n3 = steps - n1 - n2
    pieces = [torch.linspace(0.0, 0.5, n1 + 1, dtype=dtype),
              torch.linspace(0.5, 0.9, n2 + 1, dtype=dtype)[1:],
              torch.linspace(0.9, 1.0, n3 + 1, dtype=dtype)[1:]]
    return torch.cat(pieces)


def log_mean_exp_with_stderr(log_w: Tensor, dim: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """``log mean exp(log_w)`` over ``dim``, its delta-method standard error, and the ESS.

    ``stderr = std(r) / (sqrt(M) mean(r))`` with ``r = exp(log_w - max log_w)``; ``ESS = (sum w)^2 / sum w^2``.
    """
    m = log_w.shape[dim]
    top = log_w.amax(dim, keepdim=True)
    r = torch.exp(log_w - top)
    mean_r = r.mean(dim)
    value = torch.log(mean_r) + top.squeeze(dim)
    stderr = r.std(dim, unbiased=True) / (math.sqrt(m) * mean_r)
    ess = r.sum(dim) ** 2 / (r * r).sum(dim)
    return value, stderr, ess


@torch.no_grad()
def ais_log_partition(rbm: RBM, *, visible_bias: Tensor | None = None, hidden_bias: Tensor | None = None,
                      chains: int = 100, steps: int = 1000, generator: torch.Generator | None = None,
                      base_visible_bias: Tensor | None = None, betas: Tensor | None = None) -> LogPartition:
    """AIS estimate of ``log Z`` for each RBM given by the (broadcast) biases; see the module doc.

    Args:
        rbm: supplies ``W`` (and ``sigma``) and the default biases.
        visible_bias, hidden_bias: ``(..., D)`` / ``(..., H)`` per-RBM biases (broadcast).
        chains: ``M``, independent chains per RBM (at least 2, for the standard error).
        steps: ``K``, number of intermediate distributions (see :func:`ais_schedule`).
        base_visible_bias: ``b_A`` of the factorial base (Bernoulli visibles only); by default the
            RBM's visible bias, which makes the base the RBM with ``W = 0``. A base fitted to the
            data's marginals (Salakhutdinov & Murray) is usually better for a trained model.
        betas: an explicit schedule ``(K + 1,)`` from 0 to 1, instead of ``steps``.

    Returns:
        :class:`~probseq.frames.rbm.LogPartition` with ``value``, ``stderr`` and ``ess`` of the
        batch shape. Cost ``O(M K D H)`` per RBM.
    """
    if int(chains) < 2:
        raise UserError(f"AIS needs at least 2 chains to give a standard error, got {chains}")
    vb, hb = rbm.biases(visible_bias, hidden_bias)
    if betas is None:
        betas = ais_schedule(steps)
    betas = betas.to(torch.float64)
    if betas.dim() != 1 or float(betas[0]) != 0.0 or float(betas[-1]) != 1.0 or bool((betas.diff() <= 0).any()):
        raise UserError("an AIS schedule must increase strictly from 0 to 1")
    batch = torch.broadcast_shapes(vb.shape[:-1], hb.shape[:-1])
    d, h = rbm.n_visible, rbm.n_hidden
    vb = vb.expand(*batch, d).reshape(-1, d)
    hb = hb.expand(*batch, h).reshape(-1, h)
    if base_visible_bias is not None:
        if rbm.gaussian:
            raise UserError("a base visible bias applies to Bernoulli visible units only")
        base = base_visible_bias.to(vb.dtype).expand(*batch, d).reshape(-1, d)
    else:
        base = None
    n = vb.shape[0]
    m = int(chains)
    per_chunk = max(1, _CHUNK_ELEMENTS // (m * max(d, h)))
    values, stderrs, esss = [], [], []
    for start in range(0, n, per_chunk):
        sl = slice(start, min(n, start + per_chunk))
        log_w, log_z0 = _ais_chunk(rbm, vb[sl], hb[sl], None if base is None else base[sl], m, betas,
                                   generator)
        value, stderr, ess = log_mean_exp_with_stderr(log_w, 0)
        values.append(value + log_z0)
        stderrs.append(stderr)
        esss.append(ess)
    dtype = rbm.weight.dtype
    shape = tuple(batch)
    return LogPartition(torch.cat(values).to(dtype).reshape(shape),
                        torch.cat(stderrs).to(dtype).reshape(shape), "ais", m, len(betas) - 1,
                        torch.cat(esss).to(dtype).reshape(shape))


def _ais_chunk(rbm: RBM, vb: Tensor, hb: Tensor, base: Tensor | None, m: int, betas: Tensor,
               generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Run ``m`` chains for each of the ``n`` RBMs ``(vb (n, D), hb (n, H))``; return ``log w`` ``(m, n)`` and ``log Z_0`` ``(n,)``."""
    weight = rbm.weight
    dtype = weight.dtype
    n, d = vb.shape
    h_units = hb.shape[-1]
    if rbm.gaussian:
        sigma = rbm.sigma
        noise = torch.randn((m, n, d), generator=generator, dtype=dtype)
        v = vb + sigma * noise
        log_z0 = (math.log(2 * math.pi) / 2 + torch.log(sigma)).sum().expand(n)
    else:
        base_logits = vb if base is None else base
        v = _bernoulli(torch.sigmoid(base_logits).expand(m, n, d).contiguous(), generator)
        log_z0 = F.softplus(base_logits).sum(-1)
        shift = None if base is None else vb - base           # b - b_A
    log_z0 = log_z0.to(torch.float64) + h_units * math.log(2.0)
    log_w = torch.zeros((m, n), dtype=torch.float64)
    act = hb + rbm._scaled(v) @ weight                          # c + W^T (v / sigma)
    prev = 0.0
    last = len(betas) - 1
    for k in range(1, last + 1):
        beta = float(betas[k])
        inc = (F.softplus(beta * act) - F.softplus(prev * act)).sum(-1)
        if not rbm.gaussian and shift is not None:
            inc = inc + (beta - prev) * (v * shift).sum(-1)
        log_w += inc.to(torch.float64)
        prev = beta
        if k == last:
            break
        hid = _bernoulli(torch.sigmoid(beta * act), generator)
        wh = hid @ weight.t()
        if rbm.gaussian:
            noise = torch.randn(v.shape, generator=generator, dtype=dtype)
            v = vb + sigma * (beta * wh + noise)
        else:
            logits = vb + beta * wh if base is None else (1 - beta) * base + beta * (vb + wh)
            v = _bernoulli(torch.sigmoid(logits), generator)
        act = hb + rbm._scaled(v) @ weight
    return log_w, log_z0
