"""Scheduled sampling (Bengio, Vinyals, Jaitly & Shazeer, NIPS 2015): a remedy for teacher forcing.

Maximum likelihood trains an autoregressive model on the *true* history (teacher forcing), but it
generates from its *own*: the mismatch can make errors compound in long samples. Scheduled
sampling feeds the model, during training, its own sample in place of the true previous frame with
probability ``1 - eps_i`` at training step ``i``, independently for every frame of every sequence,
where ``eps_i`` (the teacher-forcing probability) decays with one of the paper's schedules (§2.4):

.. math::

    \\text{linear:}\\ \\epsilon_i = \\max(\\epsilon_{\\min}, k - c\\, i), \\qquad
    \\text{exponential:}\\ \\epsilon_i = k^i\\ (k < 1), \\qquad
    \\text{inverse sigmoid:}\\ \\epsilon_i = \\frac{k}{k + \\exp(i / k)}\\ (k \\ge 1).

The sample ``y_{t} ~ p(x_t | fed history)`` is drawn without gradient (as in the paper), and the
loss is still ``-sum_t log p(x_t | fed history)`` on the *true* frames.

What it changes, and what it does not: scheduled sampling changes the **training objective** only
(it is no longer the log-likelihood, and its gradient is biased with respect to it). The model is
the same autoregressive model, so its likelihood ``log p(x) = sum_t log p(x_t | x_{<t})`` is still
exact, and every evaluation (``probseq evaluate``, ``compare``, the trainer's validation) is the
teacher-forced exact likelihood, labelled ``exact``. It is a training option of every model built
on :class:`~probseq.models.recurrent.RecurrentFrameModel` (``rnn``, ``gru``, ``lstm``, ``mrnn``,
``rnn-nade``, ``rnn-rbm``)::

    probseq fit gru --data jsb --set scheduled_sampling=inverse_sigmoid --set ss_k=200

Defaults follow the run length ``N`` when a parameter is left at 0 (``N`` is the trainer's
``total`` of ``on_train_step``: ``--steps``, or a nominal 10 epochs when training by ``--minutes``
or to convergence; give ``ss_k`` / ``ss_c`` explicitly there):
linear goes from ``k = 1`` to ``ss_min`` at the last step (``c = (k - ss_min) / N``), exponential
takes ``k = 0.01^{1/N}`` (``eps_N = 0.01``), and inverse sigmoid takes the ``k`` with
``eps = 1/2`` at ``i = N / 2`` (``k ln k = N / 2``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from probseq.errors import UserError

__all__ = ["SCHEDULES", "SamplingSchedule", "make_schedule", "scheduled_readouts"]

SCHEDULES = ("none", "linear", "exponential", "inverse_sigmoid")


def _inverse_sigmoid_k(total_steps: int) -> float:
    """The ``k >= 1`` with ``k ln k = N / 2`` (bisection; eps crosses 1/2 half way through)."""
    target = max(total_steps, 1) / 2
    lo, hi = 1.0, max(2.0, target)
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if mid * math.log(mid) < target else (lo, mid)
    return (lo + hi) / 2


@dataclass(frozen=True)
class SamplingSchedule:
    """The teacher-forcing probability ``eps_i`` as a function of the training step ``i``.

    Attributes:
        kind: one of :data:`SCHEDULES`.
        k, c: the schedule's parameters (0 = the run-length default, see the module docstring).
        floor: ``eps_min`` of the linear schedule.
    """

    kind: str = "none"
    k: float = 0.0
    c: float = 0.0
    floor: float = 0.0

    def teacher_forcing(self, step: int, total_steps: int) -> float:
        """``eps_i`` for step ``i = step`` of a run of ``total_steps`` steps, in [0, 1]."""
        i, n = float(step), float(max(total_steps, 1))
        if self.kind == "none":
            return 1.0
        if self.kind == "linear":
            k = self.k or 1.0
            c = self.c or (k - self.floor) / n
            eps = max(self.floor, k - c * i)
        elif self.kind == "exponential":
            k = self.k or 0.01 ** (1.0 / n)
            eps = k ** i
        else:
            k = self.k or _inverse_sigmoid_k(int(n))
            eps = k / (k + math.exp(min(i / k, 700.0)))
        return min(1.0, max(0.0, eps))


def make_schedule(kind: str, *, k: float = 0.0, c: float = 0.0, floor: float = 0.0) -> SamplingSchedule:
    """Validate the ``--set scheduled_sampling=... ss_k=... ss_c=... ss_min=...`` options."""
    if kind not in SCHEDULES:
        raise UserError(f"unknown scheduled_sampling {kind!r}; expected one of {', '.join(SCHEDULES)}")
    if not 0.0 <= floor <= 1.0:
        raise UserError(f"ss_min must lie in [0, 1], got {floor}")
    if c < 0 or k < 0:
        raise UserError(f"ss_k and ss_c must not be negative, got ss_k={k}, ss_c={c}")
    if kind == "exponential" and k >= 1:
        raise UserError(f"the exponential schedule needs ss_k < 1 (eps_i = k^i), got {k}")
    if kind == "inverse_sigmoid" and 0 < k < 1:
        raise UserError(f"the inverse sigmoid schedule needs ss_k >= 1, got {k}")
    return SamplingSchedule(kind, float(k), float(c), float(floor))


def scheduled_readouts(model, batch, teacher_forcing: float,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """:meth:`~probseq.models.recurrent.RecurrentFrameModel.readouts` with the model's own samples
    fed back in place of the true frames, each with probability ``1 - teacher_forcing``.

    Runs step by step through the sampling hooks (``initial_state``, ``draw_frame``, ``advance``):
    at state ``s_t`` a frame ``y_{t+1}`` is drawn (no gradient), then the backbone reads the true
    ``x_{t+1}`` where a coin with probability ``teacher_forcing`` says so and ``y_{t+1}`` elsewhere.
    With ``teacher_forcing = 1`` this is the teacher-forced pass, computed one step at a time.

    Returns ``(x, params, length_head)`` with the shapes of ``readouts``: the true zero-padded
    frames ``(B, T, ...)`` (the targets), and ``(B, T + 1, ...)`` parameters for the states reached
    along the fed history. Cost: ``T`` backbone calls instead of one. (RNN-NADE's ``input_dropout``
    is not applied on this path: the fed frames are already partly the model's own.)
    """
    x = batch.padded_with_zeros()
    n, steps = x.shape[:2]
    target = batch.lengths if model.length_model.input_dim else None
    state = model.initial_state(n, target_length=target)
    outputs = [state.output]
    coins = torch.rand((n, steps), generator=generator) < teacher_forcing
    for x_t, true_t in zip(x.unbind(1), coins.unbind(1)):
        with torch.no_grad():
            own, _ = model.draw_frame(state, generator=generator)
        keep = true_t.reshape((n,) + (1,) * (x_t.dim() - 1))
        fed = torch.where(keep, x_t, own.to(x_t.dtype))
        state = model.advance(state, fed)
        outputs.append(state.output)
    params, length_head = model.state_readouts(torch.stack(outputs, 1))
    return x, params, length_head
