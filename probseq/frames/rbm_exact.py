"""Exact log-partition of an RBM by enumerating its smaller layer (the oracle AIS and RAISE are checked against).

For Bernoulli visibles, with ``u = W h`` or ``W^T v`` (Sutskever 2013, ch. 2):

.. math::

    \\log Z = \\operatorname{logsumexp}_h \\Big[c^\\top h + \\sum_i \\operatorname{softplus}(b_i + (W h)_i)\\Big]
            = \\operatorname{logsumexp}_v \\Big[b^\\top v + \\sum_j \\operatorname{softplus}(c_j + (W^\\top v)_j)\\Big],

whichever layer is smaller; for Gaussian visibles the hiddens are enumerated and the visibles
integrated analytically: ``log Z = sum_i log(sqrt(2 pi) sigma_i) + logsumexp_h [c^T h + sum_i
(b_i u_i / sigma_i + u_i^2 / 2)]``, ``u = W h``. Cost ``O(2^min(D, H) max(D, H))`` per RBM, in
memory-bounded chunks; :func:`binary_states` lists the states.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from probseq.errors import UserError
from probseq.precision import full_precision

if TYPE_CHECKING:
    from probseq.frames.rbm import RBM

__all__ = ["MAX_EXACT_UNITS", "binary_states", "exact_log_partition"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: at most this many units may be enumerated by the exact log-partition
MAX_EXACT_UNITS = 24
#: elements per chunk of the enumeration (bounds memory)
_CHUNK_ELEMENTS = 1 << 22


def binary_states(n: int, *, dtype: torch.dtype | None = None, start: int = 0,
                  stop: int | None = None, device: torch.device | str | None = None) -> Tensor:
    """Binary vectors ``start..stop-1`` of ``{0,1}^n`` in counting order, shape ``(stop-start, n)``."""
    stop = 2 ** n if stop is None else stop
    idx = torch.arange(start, stop, device=device)
    bits = 2 ** torch.arange(n - 1, -1, -1, device=device)
    return ((idx.unsqueeze(1) // bits) % 2).to(dtype or torch.get_default_dtype())


@full_precision
def exact_log_partition(rbm: RBM, vb: Tensor, hb: Tensor) -> Tensor:
    """``log Z`` of each RBM given by the full biases ``vb`` ``(..., D)``, ``hb`` ``(..., H)`` (broadcast).

    Sums over ``2^rbm.exact_units()`` states of the smaller layer in chunks (at most
    ``2^MAX_EXACT_UNITS``); the Gaussian case enumerates the hiddens and integrates the visibles.
    """
    units = rbm.exact_units()
    if units > MAX_EXACT_UNITS:
        raise UserError(
            f"the exact log-partition enumerates 2^{units} states, more than 2^{MAX_EXACT_UNITS}; "
            f"use the ais estimator"
        )
    batch = torch.broadcast_shapes(vb.shape[:-1], hb.shape[:-1])
    vb = vb.expand(*batch, rbm.n_visible)
    hb = hb.expand(*batch, rbm.n_hidden)
    width = max(rbm.n_visible, rbm.n_hidden)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, math.prod(batch) * width))
    total = 2 ** units
    dtype = rbm.weight.dtype
    pieces = []
    enumerate_hidden = rbm.gaussian or rbm.n_hidden <= rbm.n_visible
    for start in range(0, total, chunk):
        states = binary_states(units, dtype=dtype, start=start, stop=min(total, start + chunk),
                               device=rbm.weight.device)
        if enumerate_hidden:
            u = states @ rbm.weight.t()                      # (C, D): W h
            terms = hb @ states.t()                           # (..., C): c^T h
            if rbm.gaussian:
                terms = terms + (vb / rbm.sigma) @ u.t() + 0.5 * (u * u).sum(-1)
            else:
                terms = terms + F.softplus(vb.unsqueeze(-2) + u).sum(-1)
        else:
            terms = vb @ states.t() + F.softplus(hb.unsqueeze(-2) + states @ rbm.weight).sum(-1)
        pieces.append(torch.logsumexp(terms, -1))
    log_z = torch.logsumexp(torch.stack(pieces, -1), -1)
    if rbm.gaussian:
        log_z = log_z + (_HALF_LOG_2PI + torch.log(rbm.sigma)).sum()
    return log_z
