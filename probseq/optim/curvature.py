"""Curvature-vector products for Hessian-free optimisation.

A model exposes its loss as :math:`f(\\theta) = L(z(\\theta))`: network outputs :math:`z` (any
shape) and a loss :math:`L` on them, convex in :math:`z` for the matching losses (Bernoulli or
softmax cross-entropy on logits, squared error on linear outputs). The generalised Gauss-Newton
matrix (Schraudolph 2002; Martens 2010) is

.. math:: G = J^\\top H_L J, \\qquad J = \\partial z / \\partial \\theta, \\quad
          H_L = \\partial^2 L / \\partial z^2,

positive semi-definite whenever :math:`L` is convex in :math:`z` (unlike the Hessian). One product
:math:`G v` costs one forward-mode product :math:`J v`, one Hessian-vector product of :math:`L` on
the outputs, and one reverse-mode product :math:`J^\\top w`. Here :math:`J v` is formed by
reverse-mode autodiff applied twice ("the R-operator by double backward"): with a dummy cotangent
:math:`u`, :math:`J^\\top u` is linear in :math:`u`, so
:math:`\\partial_u \\langle J^\\top u, v \\rangle = J v`; the graph of :math:`J^\\top u` is built once per
curvature batch and reused by every conjugate-gradient iteration, so a product costs about two
backward passes and no new forward pass. (``tests/test_hessian_free.py`` checks it against the
explicit :math:`J^\\top H_L J v` and against ``torch.func.jvp``.)

**Structural damping** (Martens & Sutskever 2011, §3.2): for recurrent networks the model also
hands over its hidden states :math:`h(\\theta)`, and the damped curvature becomes

.. math:: G v + \\lambda v + \\lambda \\mu\\, J_h^\\top J_h v,

the Gauss-Newton matrix of the penalty :math:`\\tfrac{\\lambda\\mu}{2}\\|h(\\theta + p) - h(\\theta)\\|^2`,
which keeps an update from changing the hidden dynamics much more than the quadratic model can
predict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

__all__ = ["CurvatureOutputs", "GaussNewtonOperator"]


@dataclass
class CurvatureOutputs:
    """What a model hands a Hessian-free step for one minibatch.

    Attributes:
        outputs: :math:`z(\\theta)`, any shape, computed with autograd from the parameters.
        loss: :math:`L`, a function of a tensor shaped like ``outputs`` returning the scalar loss
            (the same number the model trains on, e.g. NLL per frame).
        hidden: hidden states :math:`h(\\theta)` for structural damping, or ``None``. Padding
            positions should be zero (multiply by the mask) so that they add no damping.
    """

    outputs: Tensor
    loss: Callable[[Tensor], Tensor]
    hidden: Tensor | None = None

    def value(self) -> Tensor:
        return self.loss(self.outputs)


def _materialise(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> list[Tensor]:
    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, like)]


class GaussNewtonOperator:
    """:math:`v \\mapsto G v` (and the structural-damping term) for fixed parameters and batch.

    Args:
        params: the parameters :math:`\\theta` (a list of tensors requiring grad).
        curvature: the model's outputs, loss and hidden states on the curvature minibatch.
    """

    def __init__(self, params: Sequence[Tensor], curvature: CurvatureOutputs) -> None:
        self.params = list(params)
        outs = [curvature.outputs] + ([] if curvature.hidden is None else [curvature.hidden])
        self._outs = outs
        self._dummies = [torch.zeros_like(o, requires_grad=True) for o in outs]
        jt_u = torch.autograd.grad(outs, self.params, self._dummies, create_graph=True,
                                   allow_unused=True)
        # J^T u as a function of u; unused parameters contribute nothing
        self._jt_u = [g for g in jt_u if g is not None]
        self._used = [g is not None for g in jt_u]
        z = curvature.outputs.detach().requires_grad_(True)
        with torch.enable_grad():
            self._loss_grad = torch.autograd.grad(curvature.loss(z), z, create_graph=True)[0]
        self._z = z
        self.has_hidden = curvature.hidden is not None

    def jvp(self, v: Sequence[Tensor]) -> list[Tensor]:
        """:math:`[J_z v, J_h v]` (the second only with hidden states)."""
        used_v = [vi for vi, used in zip(v, self._used) if used]
        if not used_v:
            return [torch.zeros_like(o) for o in self._outs]
        out = torch.autograd.grad(self._jt_u, self._dummies, used_v, retain_graph=True,
                                  allow_unused=True)
        return [torch.zeros_like(o) if g is None else g for g, o in zip(out, self._outs)]

    def vjp(self, w: Sequence[Tensor]) -> list[Tensor]:
        """:math:`J_z^\\top w_z + J_h^\\top w_h`."""
        grads = torch.autograd.grad(self._outs, self.params, list(w), retain_graph=True,
                                    allow_unused=True)
        return _materialise(grads, self.params)

    def loss_hvp(self, jv: Tensor) -> Tensor:
        """:math:`H_L\\, w` on the outputs."""
        if not self._loss_grad.requires_grad:      # L linear in z: H_L = 0
            return torch.zeros_like(jv)
        return torch.autograd.grad(self._loss_grad, self._z, jv, retain_graph=True)[0]

    def __call__(self, v: Sequence[Tensor], structural: float = 0.0) -> list[Tensor]:
        """:math:`G v + \\text{structural}\\cdot J_h^\\top J_h v` (``structural`` is :math:`\\lambda\\mu`)."""
        jv = self.jvp(v)
        w = [self.loss_hvp(jv[0])]
        if self.has_hidden:
            w.append(jv[1] * structural)
        return self.vjp(w)
