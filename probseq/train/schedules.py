"""Learning-rate schedules and the stopping rule of the fit loop.

The learning rate at optimisation step ``s`` is

.. math::

    \\eta_s = \\eta_0 \\cdot f(s) \\cdot \\gamma^{d_s},

where ``eta_0`` is the option ``lr``, ``f`` the step schedule (``constant``: 1; ``linear``:
``1 - s / S``, reaching 0 at the last step ``S``, as in Sutskever 2013 §3.10) and ``d_s`` the number
of *plateau decays* so far: every ``decay_patience`` validations without an improvement of at
least ``min_delta`` the rate is multiplied by ``lr_decay`` (0.5 halves it), the rule of
Boulanger-Lewandowski et al. 2012 and of most recurrent-network recipes since (``torch.optim``
calls it ``ReduceLROnPlateau``; it is written here so that its whole state lives in the run's
checkpoint as plain numbers).

Training stops (:meth:`PlateauState.should_stop`) when ``patience`` validations in a row brought no
improvement (0 never stops this way) or when plateau decay has pushed the rate below ``min_lr``
(``min_lr = 0`` means ``lr * lr_decay ** 6``, so the seventh decay stops the run).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["step_factor", "PlateauState", "LR_SCHEDULES"]

LR_SCHEDULES = ("constant", "linear")


def step_factor(schedule: str, step: int, total_steps: int | None) -> float:
    """``f(s)`` of the module docstring for the step about to be taken (0-based)."""
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        if not total_steps:
            raise ValueError("the linear schedule needs the total number of steps")
        return max(0.0, 1.0 - step / total_steps)
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")


@dataclass
class PlateauState:
    """Validation bookkeeping: best score, stalls, plateau decays (saved in every checkpoint).

    Attributes:
        best: the best validation score so far (``inf`` before the first).
        best_step: the step where it was reached (-1 before the first validation).
        bad_evals: validations since the last improvement (early stopping counts these).
        bad_since_decay: validations since the last improvement or decay (plateau decay counts these).
        decays: how many times the rate has been decayed (``d_s`` of the module docstring).
    """

    best: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    bad_since_decay: int = 0
    decays: int = 0

    def update(self, score: float, step: int, *, min_delta: float, decay_patience: int) -> bool:
        """Record a validation score; return True if it improved on the best by ``min_delta``.

        After ``decay_patience`` (> 0) stalls in a row without improvement the rate decays once and
        the stall count for decay restarts; ``decay_patience = 0`` never decays.
        """
        if score < self.best - min_delta:
            self.best, self.best_step = score, step
            self.bad_evals = self.bad_since_decay = 0
            return True
        self.bad_evals += 1
        self.bad_since_decay += 1
        if decay_patience > 0 and self.bad_since_decay >= decay_patience:
            self.decays += 1
            self.bad_since_decay = 0
        return False

    def scale(self, lr_decay: float) -> float:
        """``gamma ** d_s``: the factor plateau decay has applied to the learning rate so far."""
        return lr_decay ** self.decays

    def should_stop(self, *, patience: int, lr: float, lr_decay: float, min_lr: float) -> str | None:
        """``"patience"``, ``"lr_floor"`` or ``None`` (keep going)."""
        if patience > 0 and self.bad_evals >= patience:
            return "patience"
        if self.decays > 0 and lr_decay < 1.0:
            floor = min_lr if min_lr > 0 else lr * lr_decay ** 6
            if lr * self.scale(lr_decay) < floor * (1 - 1e-9):
                return "lr_floor"
        return None
