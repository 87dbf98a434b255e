"""Nesterov's accelerated gradient in the form of Sutskever's thesis, chapter 7.

The thesis writes one step of NAG (eqs. 7.12-7.13) as

.. math::

    v_{t+1} = \\mu_t v_t - \\varepsilon\\, \\nabla f(\\theta_t + \\mu_t v_t), \\qquad
    \\theta_{t+1} = \\theta_t + v_{t+1},

i.e. the gradient is taken at the *look-ahead* point :math:`\\theta_t + \\mu_t v_t`, not at
:math:`\\theta_t` (classical momentum, eqs. 7.10-7.11). ``torch.optim.SGD(nesterov=True)`` keeps
the look-ahead point in the parameters instead (a change of variables); this optimiser keeps
:math:`\\theta_t` in the parameters, so that validation and checkpoints see :math:`\\theta_t`, and
asks for a closure that it calls at the look-ahead point (the ``torch.optim.LBFGS`` convention:
the closure zeroes the gradients, computes the loss, calls ``backward`` and returns the loss).

The momentum schedule of the thesis (§7.2, after Nesterov 1983) is

.. math:: \\mu_t = \\min\\bigl(1 - 2^{-1 - \\log_2(\\lfloor t / 250 \\rfloor + 1)},\\; \\mu_{\\max}\\bigr),

(0.5 for the first 250 updates, then 0.75, 0.833, 0.875, ...), selected with
``schedule="sutskever"``; ``schedule="constant"`` uses :math:`\\mu_t = \\mu_{\\max}`.

Reference: I. Sutskever, *Training Recurrent Neural Networks*, PhD thesis, Toronto 2013, ch. 7;
Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and momentum in deep
learning", ICML 2013.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
from torch import Tensor

from probseq.errors import UserError

__all__ = ["NesterovMomentum", "momentum_schedule", "MOMENTUM_SCHEDULES"]

MOMENTUM_SCHEDULES = ("constant", "sutskever")


def momentum_schedule(step: int, momentum_max: float, schedule: str = "sutskever") -> float:
    """:math:`\\mu_t` for update ``step`` (``t``, counted from 0)."""
    if schedule == "constant":
        return float(momentum_max)
    if schedule != "sutskever":
        raise UserError(f"momentum schedule must be one of {', '.join(MOMENTUM_SCHEDULES)}, "
                        f"got {schedule!r}")
    return min(1.0 - 2.0 ** (-1.0 - math.log2(step // 250 + 1)), float(momentum_max))


class NesterovMomentum(torch.optim.Optimizer):
    """NAG with the update order of eqs. 7.12-7.13 (see the module docstring).

    Args:
        params: parameters (or parameter groups).
        lr: the learning rate :math:`\\varepsilon`.
        momentum: :math:`\\mu_{\\max}` (the constant :math:`\\mu` under ``schedule="constant"``).
        schedule: ``"constant"`` or ``"sutskever"``.
        clip: if positive, the look-ahead gradient's norm is clipped to it before the update.

    ``step(closure)`` requires the closure; the velocity ``v`` is kept per parameter in the
    optimiser state (``state[p]["velocity"]``) and the update count in ``state["step"]``-like
    group entry ``group["step"]``, so a checkpoint restores both.
    """

    takes_closure = True

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.9,
                 schedule: str = "constant", clip: float = 0.0) -> None:
        if lr <= 0 or not 0 <= momentum < 1:
            raise UserError(f"NAG needs lr > 0 and 0 <= momentum < 1, got lr={lr}, momentum={momentum}")
        momentum_schedule(0, momentum, schedule)   # validates the name
        super().__init__(params, {"lr": lr, "momentum": momentum, "schedule": schedule,
                                  "clip": clip, "step": 0})

    def current_momentum(self, group: dict) -> float:
        return momentum_schedule(int(group["step"]), group["momentum"], group["schedule"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise UserError("NesterovMomentum.step needs a closure that returns the loss after backward()")
        groups = []
        for group in self.param_groups:
            mu = self.current_momentum(group)
            params = [p for p in group["params"] if p.requires_grad]
            velocities = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                velocities.append(state["velocity"])
                p.add_(state["velocity"], alpha=mu)        # move to the look-ahead point
            groups.append((group, mu, params, velocities))
        try:
            with torch.enable_grad():
                loss = closure()
        finally:
            for _, mu, params, velocities in groups:      # back to theta_t
                for p, v in zip(params, velocities):
                    p.sub_(v, alpha=mu)
        for group, mu, params, velocities in groups:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            if group["clip"] > 0 and grads:
                norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
                scale = min(1.0, group["clip"] / (float(norm) + 1e-12))
                grads = [g * scale for g in grads]
            for p, v, g in zip(params, velocities, grads):
                v.mul_(mu).add_(g, alpha=-group["lr"])     # eq. 7.12
                p.add_(v)                                  # eq. 7.13
            group["step"] = int(group["step"]) + 1
        return loss
