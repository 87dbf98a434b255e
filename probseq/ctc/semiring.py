"""Semirings for the CTC lattice dynamic program (one DP, three questions).

The CTC forward recursion (Graves et al. 2006, eq. 6-7) is a sum over paths of products of
per-frame scores. Written over a semiring :math:`(\\oplus, \\otimes)` in log space
(:math:`\\otimes = +`, zero :math:`= -\\infty`), the same recursion answers three questions
(the design of pytorch-struct, Rush 2020):

========================  ===========================  ===========================================
semiring                  :math:`a \\oplus b`           what the DP returns / what its gradient is
========================  ===========================  ===========================================
:class:`LogSemiring`      :math:`\\log(e^a + e^b)`      :math:`\\log Z`; the gradient is the posterior
                                                       marginal of every lattice state
:class:`MaxSemiring`      :math:`\\max(a, b)`           the Viterbi score; the gradient is the 0/1
                                                       indicator of the best path
:class:`SampleSemiring`   :math:`\\log(e^a + e^b)`      :math:`\\log Z`; the "gradient" is the indicator
                                                       of one path drawn from the posterior
                                                       (forward filtering, backward sampling)
========================  ===========================  ===========================================

Each semiring provides :meth:`sum` (reduce one dimension) and :meth:`plus3` (combine the three
CTC predecessors, the hot path). The log semiring's own backward is never used through autograd:
the likelihood path has a hand-written forward-backward (:mod:`probseq.ctc.dp`), so its ``sum`` need
not be NaN-safe under autograd when every entry is :math:`-\\infty`. The max and sample semirings
route gradients through ``max``/Gumbel-argmax indices, so unreachable (all :math:`-\\infty`) states
produce no NaN.

Reference: A. Rush, "Torch-Struct: Deep structured prediction library", ACL 2020 (semiring view);
Graves et al., "Connectionist temporal classification", ICML 2006.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["Semiring", "LogSemiring", "MaxSemiring", "SampleSemiring"]


class Semiring:
    """A commutative semiring in log space: :math:`\\otimes` is ``+`` and its zero is ``-inf``."""

    zero: float = float("-inf")
    one: float = 0.0

    def sum(self, x: Tensor, dim: int) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def plus3(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        """:math:`a \\oplus b \\oplus c` elementwise."""
        return self.sum(torch.stack((a, b, c)), 0)


class LogSemiring(Semiring):
    """Sum-product in log space: :math:`a \\oplus b = \\log(e^a + e^b)`."""

    def sum(self, x: Tensor, dim: int) -> Tensor:
        return torch.logsumexp(x, dim)

    def plus3(self, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        # two fused binary kernels beat stack + logsumexp; logaddexp(-inf, -inf) = -inf
        return torch.logaddexp(torch.logaddexp(a, b), c)


class MaxSemiring(Semiring):
    """Max-product (Viterbi): :math:`a \\oplus b = \\max(a, b)`.

    ``sum`` uses ``max(dim).values``, whose gradient goes to exactly one index even on ties, so the
    gradient of the Viterbi score is the indicator of one best path.
    """

    def sum(self, x: Tensor, dim: int) -> Tensor:
        return x.max(dim).values


class _GumbelRoute(torch.autograd.Function):
    """Forward: ``logsumexp`` over ``dim``. Backward: the incoming gradient goes to one index per
    output element, drawn with probability ``softmax(x)`` (Gumbel-max, NaN-free when all entries are
    ``-inf``)."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, generator: torch.Generator | None) -> Tensor:
        ctx.save_for_backward(x)
        ctx.dim, ctx.generator = dim, generator
        return torch.logsumexp(x, dim)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        u = torch.rand(x.shape, dtype=x.dtype, device=x.device, generator=ctx.generator)
        gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(x.dtype).tiny)))
        pick = (x + gumbel).argmax(ctx.dim, keepdim=True)
        out = torch.zeros_like(x).scatter_(ctx.dim, pick, grad.unsqueeze(ctx.dim))
        return out, None, None


class SampleSemiring(Semiring):
    """Log semiring whose backward pass samples (pytorch-struct's ``SampledSemiring``).

    The forward value is :math:`\\log Z`. Back-propagating a 1 from the final score routes it, at
    every :math:`\\oplus`, to one operand drawn in proportion to its weight: exactly forward
    filtering, backward sampling, so the gradient w.r.t. the emissions is the indicator of one path
    drawn from the posterior over paths.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def sum(self, x: Tensor, dim: int) -> Tensor:
        return _GumbelRoute.apply(x, dim, self.generator)
