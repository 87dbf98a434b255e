"""The CTC lattice and the one dynamic program over it, written once over a semiring.

**The lattice.** For a label sequence :math:`l = (l_1, \\dots, l_S)` the extended sequence
:math:`l' = (\\varnothing, l_1, \\varnothing, l_2, \\dots, l_S, \\varnothing)` has :math:`L = 2S + 1`
states; state :math:`s` emits symbol :math:`l'_s` (even :math:`s`: the blank; odd :math:`s = 2k-1`:
label :math:`l_k`). A path visits one state per frame, starts in state 0 or 1, ends in state
:math:`2S` or :math:`2S-1`, and moves by one of three transitions:

* *stay* :math:`s \\to s`,
* *step* :math:`s - 1 \\to s`,
* *skip* :math:`s - 2 \\to s` (only into label states).

The two CTC variants differ only in which transitions are allowed:

================================================  ======================  ======================
variant                                           stay into label state   skip into :math:`l_k`
================================================  ======================  ======================
collapse repeats, then drop blanks (Graves 2006)  yes                     iff :math:`l_k \\ne l_{k-1}`
drop blanks only (Sutskever 2013, eq. 2.46)       no (a repeat is a       always
                                                  second label)
================================================  ======================  ======================

The paths of the lattice are in one-to-one correspondence with the per-frame symbol sequences
:math:`\\pi \\in \\{0..C-1\\}^T` that map to :math:`l`, and a path's score is
:math:`\\sum_t \\log y_t(\\pi_t)`, so

.. math:: \\log p(l \\mid x) = \\log \\sum_{\\pi \\in \\mathcal{B}^{-1}(l)} \\prod_t y_t(\\pi_t)
          = \\bigoplus_{\\text{paths}} \\bigotimes_t e_t(s_t),
          \\qquad e_t(s) = \\log y_t(l'_s).

**The recursion** (Graves et al. 2006, eq. 6-7; the backward one is eq. 10-11), vectorised over the
batch and the :math:`L` states, one loop over time:

.. math:: \\alpha_t(s) = e_t(s) + \\bigoplus\\{\\alpha_{t-1}(s) + m^{stay}_s,\\;
          \\alpha_{t-1}(s-1),\\; \\alpha_{t-1}(s-2) + m^{skip}_s\\}

with additive masks :math:`m \\in \\{0, -\\infty\\}`. Cost :math:`O(T B L)` time; the likelihood's
backward pass stores :math:`\\alpha` (``T * B * L`` numbers). Frames :math:`t \\ge T_b` of a shorter
input are *frozen* (:math:`\\alpha_t = \\alpha_{t-1}`), so every sequence's result is read at the
last frame; padding of the inputs or the targets never reaches a result.

**Gradient.** :func:`log_partition` is a custom autograd function: its backward runs the same scan
in reverse for :math:`\\beta_t(s)` (the score of completing the path from state :math:`s` at frame
:math:`t`, excluding :math:`e_t`) and returns the posterior state marginals
:math:`\\gamma_t(s) = \\exp(\\alpha_t(s) + \\beta_t(s) - \\log Z)` as the gradient w.r.t.
:math:`e_t(s)` (Graves et al. 2006, eq. 14-16). Impossible label sequences
(:math:`\\log Z = -\\infty`) get a zero gradient, never NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from probseq.ctc.semiring import LogSemiring, Semiring
from probseq.precision import full_precision

__all__ = ["Lattice", "scan", "partition", "log_partition", "state_posteriors"]

_NEG_INF = float("-inf")


def _exp_floor(dtype: torch.dtype) -> float:
    """The most negative argument whose ``exp`` is still a normal number (clamp before ``exp``)."""
    return math.log(torch.finfo(dtype).tiny) + 1.0


@dataclass(frozen=True)
class Lattice:
    """The CTC lattices of a batch of label sequences (see the module docstring).

    Attributes:
        symbols: ``(B, L)`` int64, the symbol each state emits (``L = 2 * S_max + 1``); states past
            a sequence's own ``2 * S_b + 1`` emit the blank and can never reach its final states.
        stay: ``(B, L)`` additive mask (0 or ``-inf``) of the stay transition, or ``None`` when it
            is allowed everywhere (the collapsing variant).
        skip: ``(B, L)`` additive mask of the transition ``s - 2 -> s``.
        skip_from: ``skip`` moved to the source state: ``skip_from[:, s] = skip[:, s + 2]`` (used by
            the backward scan).
        final: ``(B, L)`` additive mask, 0 on states ``2 S_b`` and ``2 S_b - 1`` (when ``S_b > 0``).
        input_lengths: ``(B,)`` int64, frames of each input, each in ``[1, T]``.
    """

    symbols: Tensor
    stay: Tensor | None
    skip: Tensor
    skip_from: Tensor
    final: Tensor
    input_lengths: Tensor

    @classmethod
    def build(cls, targets: Tensor, target_lengths: Tensor, input_lengths: Tensor, *, blank: int,
              collapse_repeats: bool, dtype: torch.dtype) -> "Lattice":
        """Lattices of padded ``targets (B, S)`` (entries past ``target_lengths`` are ignored)."""
        batch, max_labels = targets.shape
        device = targets.device
        positions = torch.arange(max_labels, device=device)
        inside = positions < target_lengths.unsqueeze(1)                          # (B, S)
        labels = torch.where(inside, targets, torch.full_like(targets, blank))
        n_states = 2 * max_labels + 1
        symbols = torch.full((batch, n_states), blank, dtype=torch.long, device=device)
        symbols[:, 1::2] = labels

        zero = torch.zeros((), dtype=dtype, device=device)
        neg_inf = torch.full((), _NEG_INF, dtype=dtype, device=device)
        allow_skip = torch.zeros((batch, n_states), dtype=torch.bool, device=device)
        if collapse_repeats:
            differs = torch.ones_like(inside)
            differs[:, 1:] = labels[:, 1:] != labels[:, :-1]
            allow_skip[:, 1::2] = differs
            stay = None
        else:
            allow_skip[:, 1::2] = True
            is_blank_state = (torch.arange(n_states, device=device) % 2 == 0).expand(batch, -1)
            stay = torch.where(is_blank_state, zero, neg_inf)
        allow_skip[:, 1:2] = False                                               # no state -1
        skip = torch.where(allow_skip, zero, neg_inf)
        skip_from = torch.full_like(skip, _NEG_INF)
        skip_from[:, : n_states - 2] = skip[:, 2:]

        states = torch.arange(n_states, device=device).unsqueeze(0)
        last = 2 * target_lengths.unsqueeze(1)
        is_final = (states == last) | ((states == last - 1) & (last > 0))
        final = torch.where(is_final, zero, neg_inf)
        return cls(symbols, stay, skip, skip_from, final, input_lengths)

    @property
    def n_states(self) -> int:
        return self.symbols.shape[1]

    def emissions(self, log_probs: Tensor) -> Tensor:
        """``e_t(s) = log_probs[t, b, symbols[b, s]]``: ``(T, B, C) -> (T, B, L)``, one gather."""
        return log_probs.gather(2, self.symbols.unsqueeze(0).expand(log_probs.shape[0], -1, -1))

    def initial(self, dtype: torch.dtype) -> Tensor:
        """``(B, L)`` additive mask of the start states 0 and 1."""
        init = torch.full(self.symbols.shape, _NEG_INF, dtype=dtype, device=self.symbols.device)
        init[:, :2] = 0.0
        return init

    def active(self, n_frames: int) -> Tensor:
        """``(T, B, 1)`` bool: frame ``t`` is inside input ``b``."""
        steps = torch.arange(n_frames, device=self.input_lengths.device).unsqueeze(1)
        return (steps < self.input_lengths.unsqueeze(0)).unsqueeze(2)


def scan(semiring: Semiring, emissions: Tensor, lattice: Lattice, *, reverse: bool = False) -> Tensor:
    """Run the lattice recursion over all frames: the DP's only loop over time, for every semiring.

    Args:
        semiring: how paths are combined (:mod:`probseq.ctc.semiring`).
        emissions: ``(T, B, L)`` per-frame state scores :math:`e_t(s)`.
        lattice: the allowed transitions, start and final states and input lengths.
        reverse: ``False`` for the forward variables :math:`\\alpha_t(s)` (paths from a start state
            to state ``s`` at frame ``t``, *including* :math:`e_t(s)`); ``True`` for the backward
            variables :math:`\\beta_t(s)` (paths from state ``s`` at ``t`` to a final state,
            *excluding* :math:`e_t(s)`).

    Returns:
        ``(T, B, L)``. Frames ``t >= T_b`` repeat frame ``T_b - 1`` (forward) or the final mask
        (backward), so ``alpha[-1]`` holds every sequence's last frame.
    """
    steps = emissions.unbind(0)
    n_frames = len(steps)
    first_partial = int(lattice.input_lengths.min())  # frames before it are active for every b
    active = lattice.active(n_frames).unbind(0) if first_partial < n_frames else None
    stay = lattice.stay
    out: list[Tensor] = []
    if not reverse:
        alpha = lattice.initial(emissions.dtype) + steps[0]
        out.append(alpha)
        for t in range(1, n_frames):
            shifted = F.pad(alpha, (2, 0), value=_NEG_INF)
            new = semiring.plus3(alpha if stay is None else alpha + stay,
                                 shifted[:, 1:-1], shifted[:, :-2] + lattice.skip) + steps[t]
            alpha = new if t < first_partial else torch.where(active[t], new, alpha)
            out.append(alpha)
        return torch.stack(out)
    beta = lattice.final.expand_as(steps[0])
    out.append(beta)
    for t in range(n_frames - 1, 0, -1):
        through = beta + steps[t]                                   # paths entering s at frame t
        shifted = F.pad(through, (0, 2), value=_NEG_INF)
        new = semiring.plus3(through if stay is None else through + stay,
                             shifted[:, 1:-1], shifted[:, 2:] + lattice.skip_from)
        beta = new if t < first_partial else torch.where(active[t], new, beta)
        out.append(beta)
    out.reverse()
    return torch.stack(out)


@full_precision
def partition(semiring: Semiring, emissions: Tensor, lattice: Lattice) -> Tensor:
    """:math:`\\bigoplus` over all complete paths, ``(B,)``; differentiable by autograd.

    With :class:`~probseq.ctc.semiring.MaxSemiring` this is the Viterbi score and its gradient
    w.r.t. ``emissions`` the best path's indicator; with
    :class:`~probseq.ctc.semiring.SampleSemiring` the gradient is a posterior sample. For the
    likelihood use :func:`log_partition` (hand-written backward, faster and NaN-free).
    """
    alpha = scan(semiring, emissions, lattice)
    return semiring.sum(alpha[-1] + lattice.final, -1)


def state_posteriors(alpha: Tensor, beta: Tensor, log_z: Tensor, lattice: Lattice, *,
                     scale: Tensor | None = None) -> Tensor:
    """:math:`\\gamma_t(s) = P(s_t = s \\mid l, x)`, ``(T, B, L)``, times ``scale (B,)`` if given;
    zero past each input's end and for impossible labels (:math:`\\log Z = -\\infty`).

    Computed in place in ``beta``'s storage (which it overwrites), in five passes: the backward pass
    of a long input would otherwise allocate several ``T * B * L`` temporaries. ``exp`` only sees
    arguments clamped to :math:`\\log` of the smallest normal number (``exp`` of ``-inf`` or of an
    underflowing argument is 10-60x slower on CPU), so a state whose posterior is below
    that number (about ``3e-38`` in float32, ``6e-308`` in float64; unreachable states included)
    reports that number instead of
    its true value; past the inputs' ends and for impossible labels the result is exactly zero.
    """
    possible = torch.isfinite(log_z)
    weight = lattice.active(alpha.shape[0]) & possible.view(1, -1, 1)               # (T, B, 1)
    weight = weight.to(alpha.dtype) * (1.0 if scale is None else scale.view(1, -1, 1))
    post = beta.add_(alpha).sub_(torch.where(possible, log_z, torch.zeros_like(log_z)).view(1, -1, 1))
    return post.clamp_(_exp_floor(alpha.dtype), 0.0).exp_().mul_(weight)


class _LogPartition(torch.autograd.Function):
    """``log Z`` by the forward scan; backward by the reverse scan (alpha-beta posteriors)."""

    @staticmethod
    @full_precision
    def forward(ctx, emissions: Tensor, lattice: Lattice) -> Tensor:
        alpha = scan(LogSemiring(), emissions, lattice)
        log_z = torch.logsumexp(alpha[-1] + lattice.final, -1)
        ctx.lattice = lattice
        ctx.save_for_backward(emissions, alpha, log_z)
        return log_z

    @staticmethod
    @full_precision
    def backward(ctx, grad: Tensor):
        emissions, alpha, log_z = ctx.saved_tensors
        with torch.no_grad():
            beta = scan(LogSemiring(), emissions, ctx.lattice, reverse=True)
            return state_posteriors(alpha, beta, log_z, ctx.lattice, scale=grad), None


@full_precision
def log_partition(emissions: Tensor, lattice: Lattice) -> Tensor:
    """:math:`\\log Z_b = \\log p(l_b \\mid x_b)`, ``(B,)``; ``-inf`` where no path exists.

    Differentiable w.r.t. ``emissions (T, B, L)`` by a hand-written forward-backward: the gradient
    is the posterior state marginal :math:`\\gamma_t(s)` (checked by ``gradcheck`` in the tests).
    Run under autograd, so the gradient w.r.t. per-frame log-probabilities flows through
    :meth:`Lattice.emissions` (a gather, whose backward sums the states of each symbol).
    Under autocast it runs in float32 (:func:`~probseq.precision.full_precision`).
    """
    if emissions.shape[0] == 0:
        raise ValueError("the CTC dynamic program needs at least one frame")
    return _LogPartition.apply(emissions, lattice)
