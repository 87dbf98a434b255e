"""Hessian-free optimisation (Martens 2010; Martens & Sutskever 2011; Sutskever 2013, ch. 4).

One step at parameters :math:`\\theta` with gradient :math:`g` (on the gradient minibatch) and
Gauss-Newton matrix :math:`G` (on a smaller curvature minibatch, :mod:`probseq.optim.curvature`):

1. **Quadratic model.** :math:`q(p) = g^\\top p + \\tfrac12 p^\\top (G + \\lambda I + \\lambda\\mu\\,
   J_h^\\top J_h) p` — Tikhonov damping :math:`\\lambda` plus structural damping :math:`\\mu` of the
   hidden states when the model hands them over.
2. **Conjugate gradient** on :math:`q`, started from the previous step's final CG iterate times a
   decay :math:`\\zeta` (warm start, Martens 2010 §4.5), stopped after ``cg_max_iters`` iterations,
   at a tiny residual, or by Martens' relative-progress test (§4.4): at iteration :math:`i`, with
   :math:`k = \\max(10, 0.1 i)`, stop when :math:`q(p_i) < 0` and
   :math:`(q(p_i) - q(p_{i-k})) / q(p_i) < k\\,\\epsilon` (:math:`\\epsilon = 5\\cdot10^{-4}`).
   CG also stops if it meets a direction of non-positive curvature.
3. **CG backtracking** (§4.6): iterates are kept at :math:`i = \\lceil 1.3^j \\rceil` and at the end;
   walking back from the last, the one with the lowest loss on the gradient minibatch is chosen
   (stop walking once the loss rises again).
4. **Levenberg-Marquardt** (§4.1): the reduction ratio
   :math:`\\rho = (f(\\theta + p) - f(\\theta)) / (q(p) - q(0))`, with :math:`q` the damped model CG
   minimised (as in Martens' implementation), sets :math:`\\lambda \\leftarrow \\tfrac32\\lambda` if :math:`\\rho < \\tfrac14` and
   :math:`\\lambda \\leftarrow \\tfrac23\\lambda` if :math:`\\rho > \\tfrac34`.
5. **Line search** (Martens & Sutskever 2012, §8.8): the largest :math:`\\alpha \\in \\{1, 0.8, 0.8^2,
   \\dots\\}` with :math:`f(\\theta + \\alpha p) \\le f(\\theta) + c\\,\\alpha\\, g^\\top p`
   (:math:`c = 10^{-2}`); if none of ``max_backtracks`` works the step is rejected.

The step needs more than a loss, so its closure is different from first-order optimisers':
``step(closure, curvature_closure=None)`` where each closure returns a
:class:`~probseq.optim.curvature.CurvatureOutputs` (outputs with their autograd graph, the loss
on outputs, hidden states or ``None``). The closure is called again (without gradients) to
evaluate candidate parameters. A model provides the closures through
``model.curvature_outputs(batch)`` (see :mod:`probseq.optim.training`). Nothing is random: a run
repeats exactly for the same data.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.optim.curvature import CurvatureOutputs, GaussNewtonOperator

__all__ = ["HessianFree", "conjugate_gradient", "CGResult"]

Vec = list[Tensor]


def _dot(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b))


def _axpy(alpha, x: Sequence[Tensor], y: Sequence[Tensor]) -> Vec:
    return [yi + alpha * xi for xi, yi in zip(x, y)]


class CGResult:
    """Iterates kept for backtracking, ``(iteration, p, q(p))`` with the last included, and the
    number of iterations run and why CG stopped."""

    def __init__(self, iterates: list[tuple[int, Vec, float]], iterations: int, stop: str) -> None:
        self.iterates, self.iterations, self.stop = iterates, iterations, stop

    @property
    def final(self) -> Vec:
        return self.iterates[-1][1]


def conjugate_gradient(apply_a: Callable[[Vec], Vec], b: Vec, x0: Vec, *, max_iters: int,
                       min_iters: int = 1, progress_tol: float = 5e-4, residual_tol: float = 1e-12,
                       keep_base: float = 1.3) -> CGResult:
    """Minimise :math:`q(x) = \\tfrac12 x^\\top A x - b^\\top x` by CG from ``x0``.

    Returns the iterates at :math:`\\lceil \\text{keep\\_base}^j \\rceil` and the last one. Stops after
    ``max_iters``, when :math:`\\|r\\|^2 \\le` ``residual_tol`` :math:`\\cdot \\|b\\|^2`, on Martens'
    relative-progress test, or on non-positive curvature :math:`d^\\top A d \\le 0`.
    """
    x = [t.clone() for t in x0]
    ax = apply_a(x)
    r = [bi - ai for bi, ai in zip(b, ax)]
    d = [t.clone() for t in r]
    rr = _dot(r, r)
    bb = float(_dot(b, b))
    q_values = [float(-0.5 * _dot(x, _axpy(1.0, r, b)))]   # q(x) = -x^T (r + b) / 2
    keep, next_keep = [], 1
    stop = "max_iters"
    i = 0
    for i in range(1, max_iters + 1):
        if float(rr) <= residual_tol * max(bb, 1e-300):
            i -= 1
            stop = "residual"
            break
        ad = apply_a(d)
        curvature = _dot(d, ad)
        if float(curvature) <= 0:
            i -= 1
            stop = "negative_curvature"
            break
        alpha = rr / curvature
        x = _axpy(alpha, d, x)
        r = _axpy(-alpha, ad, r)
        rr_new = _dot(r, r)
        d = _axpy(rr_new / rr, d, r)
        rr = rr_new
        q_values.append(float(-0.5 * _dot(x, _axpy(1.0, r, b))))
        if i >= next_keep:
            keep.append((i, [t.clone() for t in x], q_values[-1]))
            while next_keep <= i:
                next_keep = math.ceil(next_keep * keep_base) if next_keep > 1 else 2
        k = max(10, int(0.1 * i))
        if i >= max(k, min_iters) and q_values[-1] < 0:
            if (q_values[-1] - q_values[-1 - k]) / q_values[-1] < k * progress_tol:
                stop = "progress"
                break
    if not keep or keep[-1][0] != i:
        keep.append((i, x, q_values[-1]))
    return CGResult(keep, i, stop)


class HessianFree(torch.optim.Optimizer):
    """Hessian-free (truncated Newton, Gauss-Newton curvature) optimiser; see the module docstring.

    Args:
        params: the parameters.
        lr: kept in the parameter group for schedulers but unused: the step length comes from
            CG, backtracking and the line search.
        damping: the initial Tikhonov damping :math:`\\lambda`.
        structural_damping: :math:`\\mu`, weight of the hidden-state term (0 turns it off).
        cg_max_iters: cap on CG iterations per step. cg_decay: warm-start factor :math:`\\zeta`.
        max_backtracks: line-search tries. adapt_damping: Levenberg-Marquardt on :math:`\\lambda`.
    """

    takes_closure = True

    def __init__(self, params: Iterable, lr: float = 1.0, damping: float = 1.0,
                 structural_damping: float = 0.0, cg_max_iters: int = 250, cg_decay: float = 0.95,
                 max_backtracks: int = 20, adapt_damping: bool = True) -> None:
        if damping < 0 or structural_damping < 0 or cg_max_iters < 1 or not 0 <= cg_decay <= 1:
            raise UserError("Hessian-free needs damping >= 0, structural_damping >= 0, "
                            "cg_max_iters >= 1 and 0 <= cg_decay <= 1")
        super().__init__(params, {"lr": lr, "damping": damping,
                                  "structural_damping": structural_damping,
                                  "cg_max_iters": int(cg_max_iters), "cg_decay": cg_decay,
                                  "max_backtracks": int(max_backtracks),
                                  "adapt_damping": bool(adapt_damping)})
        if len(self.param_groups) != 1:
            raise UserError("Hessian-free takes one parameter group")
        #: what the last step did (for logs): rho, damping, CG iterations, chosen iterate, alpha
        self.last_step: dict = {}

    def _params(self) -> list[Tensor]:
        return [p for p in self.param_groups[0]["params"] if p.requires_grad]

    @torch.no_grad()
    def _loss_at(self, closure, params: Vec, base: Vec, delta: Vec, alpha: float) -> float:
        for p, b, d in zip(params, base, delta):
            p.copy_(b + alpha * d)
        value = float(closure().value())
        return value if math.isfinite(value) else math.inf

    def step(self, closure: Callable[[], CurvatureOutputs],  # type: ignore[override]
             curvature_closure: Callable[[], CurvatureOutputs] | None = None) -> Tensor:
        """One HF update; returns the loss at the parameters before the update."""
        if closure is None:
            raise UserError("HessianFree.step needs a closure returning CurvatureOutputs")
        group = self.param_groups[0]
        params = self._params()
        with torch.enable_grad():
            full = closure()
            f0_t = full.value()
            grads = torch.autograd.grad(f0_t, params, allow_unused=True,
                                        retain_graph=curvature_closure is None)
            grads = [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(grads, params)]
            curv = full if curvature_closure is None else curvature_closure()
            gn = GaussNewtonOperator(params, curv)
        f0 = float(f0_t.detach())
        lam = float(group["damping"])
        structural = lam * float(group["structural_damping"])

        def damped(v: Vec) -> Vec:
            with torch.enable_grad():
                gv = gn(v, structural)
            return [gi.detach() + lam * vi for gi, vi in zip(gv, v)]

        state = self.state[params[0]]
        previous = state.get("cg_direction")
        x0 = ([group["cg_decay"] * t for t in previous] if previous is not None
              else [torch.zeros_like(p) for p in params])
        neg_grad = [-g for g in grads]
        cg = conjugate_gradient(damped, neg_grad, x0, max_iters=int(group["cg_max_iters"]))
        state["cg_direction"] = [t.detach().clone() for t in cg.final]

        base = [p.detach().clone() for p in params]
        # backtrack over the kept iterates: from the last, move back while the loss improves
        best_i, best_p, best_q, best_f = None, None, 0.0, math.inf
        for i, p_i, q_i in reversed(cg.iterates):
            f_i = self._loss_at(closure, params, base, p_i, 1.0)
            if f_i < best_f:
                best_i, best_p, best_q, best_f = i, p_i, q_i, f_i
            else:
                break
        if best_p is None:                  # every kept iterate gave a non-finite loss
            best_i, best_p, best_q = cg.iterates[-1]
        # Levenberg-Marquardt: actual change over the change the (damped) quadratic model predicted
        model_change = best_q
        rho = (best_f - f0) / model_change if model_change < 0 else -math.inf
        if group["adapt_damping"]:
            if rho < 0.25:
                group["damping"] = lam * 1.5
            elif rho > 0.75:
                group["damping"] = lam * (2.0 / 3.0)
        # line search on the chosen direction
        slope = float(_dot(grads, best_p))
        alpha, f_new = 1.0, best_f
        accepted = slope < 0 and f_new <= f0 + 1e-2 * alpha * slope
        tries = 0
        while not accepted and tries < int(group["max_backtracks"]):
            alpha *= 0.8
            tries += 1
            f_new = self._loss_at(closure, params, base, best_p, alpha)
            accepted = slope < 0 and f_new <= f0 + 1e-2 * alpha * slope
        step_scale = alpha if accepted else 0.0
        with torch.no_grad():
            for p, b, d in zip(params, base, best_p):
                p.copy_(b + step_scale * d)
        self.last_step = {"loss": f0, "new_loss": f_new if accepted else f0, "rho": rho,
                          "damping": lam, "cg_iterations": cg.iterations, "cg_stop": cg.stop,
                          "chosen_iteration": best_i, "alpha": step_scale}
        return f0_t.detach()
