"""The RBM's annealing path, and AIS / RAISE for batches of RBMs (one per bias vector).

For an RBM with weights ``W``, visible bias ``b`` and hidden bias ``c`` (one per RBM of the batch:
a sequence model's step ``t`` has its own ``b_t, c_t``) the path keeps the biases and scales the
interaction by ``beta`` (the base is the same RBM with ``W = 0``, which carries the step's
context in ``b_t`` and ``c_t``; Salakhutdinov & Murray 2008, §4.1, with a base that includes the
hiddens):

.. math::

    f_\\beta(v, h) = \\exp\\big((1-\\beta)\\, b_A^\\top v + \\beta\\, b^\\top v + c^\\top h
                               + \\beta\\, v^\\top W h\\big), \\qquad
    \\log f_\\beta(v) = (1-\\beta)\\, b_A^\\top v + \\beta\\, b^\\top v
                       + \\sum_j \\operatorname{softplus}\\big(c_j + \\beta\\, (W^\\top v)_j\\big)

(Bernoulli visibles; ``b_A`` is ``b`` unless a base visible bias, e.g. the data's marginals, is
given), and for Gaussian visibles
``log f_beta(v) = -sum_i (v_i - b_i)^2 / (2 sigma_i^2) + sum_j softplus(c_j + beta (W^T (v/sigma))_j)``.
At ``beta = 1`` this is ``exp(-F(v))``. The base is factorial with a closed-form partition,

.. math:: \\log Z_0 = \\sum_i \\operatorname{softplus}(b_{A,i}) + \\sum_j \\operatorname{softplus}(c_j)
          \\quad\\Big(\\text{Gaussian: } \\sum_i \\log(\\sqrt{2\\pi}\\,\\sigma_i) + \\sum_j \\operatorname{softplus}(c_j)\\Big),

and the transition at ``beta`` is one round of block Gibbs sampling of ``f_beta(v, h)``:
``h ~ sigmoid(c + beta W^T v)``, then ``v ~ sigmoid((1-beta) b_A + beta (b + W h))`` (Gaussian:
``v ~ N(b + beta sigma W h, sigma^2)``), reversible for ``f_beta(v)``.

States cache ``u = W^T (v / sigma)``, so one Gibbs round costs two matrix products and each
log-density an elementwise softplus. :func:`rbm_ais_log_partition` and :func:`rbm_raise_log_prob`
run the estimators of :mod:`probseq.estimators` on all RBMs at once, in chunks that bound memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from probseq.errors import UserError
from probseq.estimators.ais import ais_log_weights
from probseq.estimators.annealing import (LogPartition, annealing_schedule, check_schedule,
                                         log_mean_exp_with_stderr)
from probseq.estimators.reverse_annealing import raise_log_weights
from probseq.precision import full_precision

if TYPE_CHECKING:
    from probseq.frames.rbm import RBM

__all__ = ["RBMAnnealingPath", "rbm_ais_log_partition", "rbm_raise_log_prob"]

#: elements of one chunk of chains (``M x RBMs x max(D, H)``), bounding memory
_CHUNK_ELEMENTS = 1 << 24


@dataclass
class _State:
    v: Tensor   # (M, n, D) visible configurations
    u: Tensor   # (M, n, H) W^T (v / sigma)


def _draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """Bernoulli draws ``uniform < p`` in the dtype of ``probs``."""
    return (torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device) < probs).to(probs.dtype)


class RBMAnnealingPath:
    """The annealing path of ``n`` RBMs sharing ``W`` (and ``sigma``), see the module docstring.

    Args:
        rbm: supplies ``W`` and ``sigma``. visible_bias ``(n, D)``, hidden_bias ``(n, H)``: the
        RBMs' biases. base_visible_bias: ``b_A`` ``(n, D)`` (Bernoulli only), default ``visible_bias``.
    """

    def __init__(self, rbm: "RBM", visible_bias: Tensor, hidden_bias: Tensor,
                 base_visible_bias: Tensor | None = None) -> None:
        self.weight = rbm.weight.detach()
        self.sigma = None if not rbm.gaussian else rbm.sigma.detach()
        self.vb, self.hb = visible_bias.detach(), hidden_bias.detach()
        self.base = self.vb if base_visible_bias is None else base_visible_bias.detach().to(self.vb.dtype)

    def _state(self, v: Tensor) -> _State:
        return _State(v, (v if self.sigma is None else v / self.sigma) @ self.weight)

    def log_base_partition(self) -> Tensor:
        hidden = F.softplus(self.hb).sum(-1)
        if self.sigma is None:
            visible = F.softplus(self.base).sum(-1)
        else:
            visible = (0.5 * math.log(2 * math.pi) + torch.log(self.sigma)).sum().expand(hidden.shape)
        return (visible + hidden).to(torch.float64)

    def sample_base(self, chains: int, generator: torch.Generator | None) -> _State:
        shape = (chains,) + tuple(self.vb.shape)
        if self.sigma is None:
            v = _draw(torch.sigmoid(self.base).expand(shape), generator)
        else:
            noise = torch.randn(shape, generator=generator, dtype=self.vb.dtype, device=self.vb.device)
            v = self.vb + self.sigma * noise
        return self._state(v)

    def state(self, x: Tensor, chains: int) -> _State:
        return self._state(x.to(self.vb.dtype).expand((chains,) + tuple(self.vb.shape)))

    def log_density(self, state: _State, beta: float) -> Tensor:
        hidden = F.softplus(self.hb + beta * state.u).sum(-1)
        v = state.v
        if self.sigma is not None:
            return hidden - (0.5 * ((v - self.vb) / self.sigma) ** 2).sum(-1)
        visible = (v * self.vb).sum(-1)
        if self.base is not self.vb:
            visible = visible + (1.0 - beta) * (v * (self.base - self.vb)).sum(-1)
        return hidden + visible

    def transition(self, state: _State, beta: float, generator: torch.Generator | None) -> _State:
        h = _draw(torch.sigmoid(self.hb + beta * state.u), generator)
        wh = h @ self.weight.t()
        if self.sigma is None:
            logits = self.vb + beta * wh
            if self.base is not self.vb:
                logits = logits + (1.0 - beta) * (self.base - self.vb)
            v = _draw(torch.sigmoid(logits), generator)
        else:
            noise = torch.randn(state.v.shape, generator=generator, dtype=wh.dtype, device=wh.device)
            v = self.vb + self.sigma * (beta * wh + noise)
        return self._state(v)


def _flat_biases(rbm: "RBM", visible_bias: Tensor | None, hidden_bias: Tensor | None,
                 extra: Tensor | None = None) -> tuple[tuple[int, ...], Tensor, Tensor]:
    vb, hb = rbm.biases(visible_bias, hidden_bias)
    shapes = [vb.shape[:-1], hb.shape[:-1]] + ([] if extra is None else [extra.shape[:-1]])
    batch = tuple(torch.broadcast_shapes(*shapes))
    d, h = rbm.n_visible, rbm.n_hidden
    return batch, vb.expand(*batch, d).reshape(-1, d), hb.expand(*batch, h).reshape(-1, h)


def _chunks(n: int, chains: int, rbm: "RBM"):
    per_chunk = max(1, _CHUNK_ELEMENTS // (chains * max(rbm.n_visible, rbm.n_hidden)))
    for start in range(0, n, per_chunk):
        yield slice(start, min(n, start + per_chunk))


@torch.no_grad()
@full_precision
def rbm_ais_log_partition(rbm: "RBM", *, visible_bias: Tensor | None = None,
                          hidden_bias: Tensor | None = None, chains: int = 100, steps: int = 1000,
                          generator: torch.Generator | None = None,
                          base_visible_bias: Tensor | None = None,
                          betas: Tensor | None = None) -> LogPartition:
    """AIS estimate of ``log Z`` of each RBM given by the (broadcast) biases
    (:func:`probseq.estimators.ais.ais_log_partition` on :class:`RBMAnnealingPath`, chunked).

    Returns a :class:`~probseq.estimators.annealing.LogPartition` (``value``, ``stderr``, ``ess`` of the
    batch shape; ``method="ais"``). Cost ``O(M K D H)`` per RBM.
    """

    if int(chains) < 2:
        raise UserError(f"AIS needs at least 2 chains to give a standard error, got {chains}")
    if base_visible_bias is not None and rbm.gaussian:
        raise UserError("a base visible bias applies to Bernoulli visible units only")
    betas = check_schedule(annealing_schedule(steps) if betas is None else betas)
    batch, vb, hb = _flat_biases(rbm, visible_bias, hidden_bias)
    base = None if base_visible_bias is None else base_visible_bias.to(vb.dtype).expand(*batch, rbm.n_visible).reshape(vb.shape)
    values, stderrs, esss = [], [], []
    for sl in _chunks(vb.shape[0], int(chains), rbm):
        path = RBMAnnealingPath(rbm, vb[sl], hb[sl], None if base is None else base[sl])
        log_w = ais_log_weights(path, betas, int(chains), generator)
        value, stderr, ess = log_mean_exp_with_stderr(log_w, 0)
        values.append(value + path.log_base_partition())
        stderrs.append(stderr)
        esss.append(ess)
    dtype = rbm.weight.dtype
    return LogPartition(torch.cat(values).to(dtype).reshape(batch), torch.cat(stderrs).to(dtype).reshape(batch),
                        "ais", int(chains), len(betas) - 1, torch.cat(esss).to(dtype).reshape(batch))


@torch.no_grad()
@full_precision
def rbm_raise_log_prob(rbm: "RBM", v: Tensor, *, visible_bias: Tensor | None = None,
                       hidden_bias: Tensor | None = None, chains: int = 100, steps: int = 1000,
                       generator: torch.Generator | None = None,
                       betas: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """RAISE estimate of ``log P(v)`` under each RBM (:mod:`probseq.estimators.reverse_annealing`).

    ``v`` ``(..., D)`` broadcasts with the biases. Returns ``(value, stderr)`` of the broadcast
    batch shape, in the RBM's dtype. Cost ``O(M K D H)`` per configuration.
    """
    if int(chains) < 2:
        raise UserError(f"RAISE needs at least 2 chains to give a standard error, got {chains}")
    betas = check_schedule(annealing_schedule(steps) if betas is None else betas)
    batch, vb, hb = _flat_biases(rbm, visible_bias, hidden_bias, v)
    x = v.to(vb.dtype).expand(*batch, rbm.n_visible).reshape(vb.shape)
    values, stderrs = [], []
    for sl in _chunks(vb.shape[0], int(chains), rbm):
        path = RBMAnnealingPath(rbm, vb[sl], hb[sl])
        log_w = raise_log_weights(path, x[sl], betas, int(chains), generator)
        value, stderr, _ = log_mean_exp_with_stderr(log_w, 0)
        log_f1 = path.log_density(path.state(x[sl], 1), 1.0)[0].to(torch.float64)
        values.append(log_f1 - path.log_base_partition() + value)
        stderrs.append(stderr)
    dtype = rbm.weight.dtype
    return torch.cat(values).to(dtype).reshape(batch), torch.cat(stderrs).to(dtype).reshape(batch)
