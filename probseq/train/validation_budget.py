"""How much of a run validation may take: the time-based schedule of epoch-end validations.

With ``eval_every=0`` (the default) the trainer considers validating at the end of every epoch.
When an epoch is short and validation is dear (the RBM family's AIS criterion costs about a
hundred training steps on JSB), validating every epoch would spend most of the run validating,
so an epoch-end validation is skipped when it would take validation over its share of the run:
with ``b = valid_budget``, ``V`` the seconds spent validating so far, ``W`` the run's seconds so far
(validation included) and ``v`` the duration of the latest validation (0 before the first), the
trainer validates at an epoch end when

.. math::

    \\frac{V + v}{W + v} \\le b
    \\quad\\Longleftrightarrow\\quad
    V + v \\le \\frac{b}{1 - b}\\,(W - V),

that is, when validation would still take at most the share ``b`` of the run after one more
validation as long as the last one. ``W - V`` is the time spent on everything else: training
steps, logging, checkpoints. Consequences:

* the first epoch end always validates (nothing is known of its cost yet, ``V = v = 0``);
* the share stays at most ``b``, except for validations the trainer always makes: at the last
  step, when the ``minutes`` budget is spent, and the first one; a run whose single validation
  costs more than ``b`` of the run (a short run of an expensive criterion) therefore spends more;
* ``b = 1`` validates at every epoch end (the old behaviour); ``b = 0`` only at the first epoch
  end and at the end; an explicit ``eval_every=N`` is a fixed schedule that no budget changes.

Because the decision reads a clock, a run under a budget ``0 < b < 1`` validates at steps that
depend on the machine's speed; when validation drives decisions (plateau decay, early stopping),
two runs with the same seed can then differ. ``valid_budget=1`` or ``eval_every=N`` restore exact
repetition. The clock is the trainer's (injected), so tests drive the rule with a fake one.

Lightning's ``val_check_interval`` is the fixed-schedule counterpart; this rule is its
time-aware default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["ValidationTime", "validation_fits"]


@dataclass
class ValidationTime:
    """Seconds spent validating (saved in ``checkpoint.pt`` so that a resumed run keeps counting).

    Attributes:
        valid_s: seconds spent in validation so far, over every session of the run.
        last_valid_s: the duration of the latest validation (0 before the first).
        validations: how many validations were made.
        skipped: epoch-end validations skipped to keep within the budget.
    """

    valid_s: float = 0.0
    last_valid_s: float = 0.0
    validations: int = 0
    skipped: int = 0

    def record(self, seconds: float) -> None:
        """Count one validation that took ``seconds``."""
        self.valid_s += seconds
        self.last_valid_s = seconds
        self.validations += 1

    def split(self, elapsed_s: float) -> dict[str, float]:
        """``{"train_s", "valid_s"}``: the run's ``elapsed_s`` seconds, validation and the rest."""
        return {"train_s": round(max(elapsed_s - self.valid_s, 0.0), 3), "valid_s": round(self.valid_s, 3)}

    def state_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "ValidationTime":
        """From :meth:`state_dict`; a checkpoint without it (an older run) starts the count at zero."""
        return cls(**{k: v for k, v in (d or {}).items() if k in cls.__dataclass_fields__})


def validation_fits(budget: float, spent: ValidationTime, elapsed_s: float) -> bool:
    """Whether one more validation keeps validation within the share ``budget`` of the run.

    Args:
        budget: ``valid_budget`` in ``[0, 1]``.
        spent: the validation time so far.
        elapsed_s: the run's seconds so far, validation included.

    See the module docstring for the rule.
    """
    if budget >= 1.0:
        return True
    other_s = max(elapsed_s - spent.valid_s, 0.0)
    return spent.valid_s + spent.last_valid_s <= budget / (1.0 - budget) * other_s
