"""Telling a run that diverged while its losses stayed finite.

A non-finite training loss stops the trainer at once (:class:`~probseq.errors.UserError`). A loss
that stays finite but absurd -- ``1e20`` nats per frame -- used to train on and end with "best
validation loss 2.3e20" as if all were well. :class:`DivergenceWatch` flags it with a warning
(:func:`warnings.warn`, category :class:`TrainingDivergedWarning`) and a ``divergence`` event in
``log.jsonl``, once per run; training goes on (the user may still want the run) and ``keep=best``
still keeps the best weights seen.

The rule, for a loss ``L`` per frame (nats) with ``L_0`` the first training step's loss:

.. math::

    |L| > 10^{10}
    \\quad\\text{or}\\quad
    L - L_0 > 10^{6} \\max(|L_0|, 1).

* ``10^{10}``: no per-frame loss of a working model comes near it, and above it float32 -- the
  precision models train in -- cannot resolve the loss any more: the spacing between neighbouring
  float32 numbers near ``10^{10}`` is 1024 nats, so no step can register an improvement smaller
  than that. It also catches a run that was absurd from its very first step.
* six orders of magnitude above the starting loss (in its own scale, at least one nat): a loss
  that grew a million-fold since an untrained model's is not learning. The margin is wide on
  purpose, because some objectives (the RBM family's contrastive-divergence surrogate, an ELBO)
  start near zero and wander far from their start without anything being wrong.

The same absolute bound applies to the best validation loss at the end of a run
(:func:`absurd_loss`), so that a run whose validation says 2.3e20 does not end in silence.
"""

from __future__ import annotations

import math
import warnings

__all__ = ["ABSURD_LOSS", "GROWTH_FACTOR", "TrainingDivergedWarning", "DivergenceWatch", "absurd_loss"]

#: a per-frame loss above this (in absolute value) is absurd whatever the model
ABSURD_LOSS = 1e10
#: a training loss that grew by this many times its start's scale (at least 1 nat) has diverged
GROWTH_FACTOR = 1e6


class TrainingDivergedWarning(RuntimeWarning):
    """Training went on, but its loss says it diverged (see :mod:`probseq.train.divergence`)."""


def absurd_loss(value: float | None) -> bool:
    """``|value| > ABSURD_LOSS`` for a finite ``value`` (``None`` and infinities are not judged here)."""
    return value is not None and math.isfinite(value) and abs(value) > ABSURD_LOSS


class DivergenceWatch:
    """Watches the training loss step by step and warns once when the run has diverged."""

    def __init__(self, reference: float | None = None) -> None:
        #: the first step's loss (``L_0``), kept in the checkpoint so that a resumed run compares alike
        self.reference = reference
        #: the step at which the warning was given (``None``: not diverged)
        self.warned_at: int | None = None

    def diverged(self, loss: float) -> bool:
        """The rule of the module docstring for one finite loss (sets the reference on the first call)."""
        if self.reference is None:
            self.reference = loss
        ref = self.reference
        return absurd_loss(loss) or loss - ref > GROWTH_FACTOR * max(abs(ref), 1.0)

    def check(self, loss: float, step: int, *, warn: bool = True) -> str | None:
        """Judge the loss of ``step``; the first time it has diverged, warn (unless ``warn`` is false:
        the other ranks of a ``torchrun`` job, which judge the same pooled loss) and return the message."""
        if not self.diverged(loss) or self.warned_at is not None:
            return None
        self.warned_at = step
        message = (f"training diverged at step {step}: the training loss is {loss:.4g} per frame "
                   f"(it started at {self.reference:.4g}); the run goes on, but try a smaller learning "
                   f"rate (--set lr=...) or a tighter clip (--set clip=...)")
        if warn:
            warnings.warn(message, TrainingDivergedWarning, stacklevel=3)
        return message
