"""Length models shared by every sequence model (Goodfellow, Bengio & Courville 2016, §10.2.4).

How long is a sequence? probseq offers four answers, one family used both by ``log_prob`` (the
length term) and by the sampler (the stopping rule):

``none``
    Length is given, not modelled. ``log_prob`` is ``log p(x_{1:T} | T)``; sampling needs a length.
``halting``
    A Bernoulli "halt" output after every frame: with ``a_t`` the halting logit read from the state
    ``s_t`` that summarises ``x_{1:t}``,

    .. math:: \\log P(T \\mid x) = \\sum_{t=1}^{T-1} \\log \\sigma(-a_t) + \\log \\sigma(a_T).
``end-symbol``
    For categorical frames: an extra end-of-sequence symbol in the same softmax as the frame's
    ``K`` symbols. With frame logits ``l`` and end logit ``e`` at state ``s_t``, the probability of
    ending is ``exp(e) / (exp(e) + sum_k exp(l_k))`` = ``sigmoid(e - logsumexp(l))``, so the length
    term has the halting form with ``a_t = e_t - logsumexp(l_t)``, and the frame term stays the
    frame's own ``log_softmax``. Sequences have at least one frame (no end symbol before ``x_1``).
``explicit``
    An explicit distribution ``P(tau)`` over ``1..max_length`` (a learned categorical), and the
    number of remaining steps ``tau - t`` fed back to the backbone as an input, so the model knows
    where the end is. The sampler draws ``tau`` first, then ``tau`` frames.

Every variant makes the probabilities of all sequences of all lengths sum to one; the test suite
checks it by enumeration on a tiny model (``probseq.testing.enumerate_binary_sequences``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probseq.errors import UserError
from probseq.precision import full_precision

__all__ = ["LengthModel", "NoLength", "Halting", "EndSymbol", "ExplicitLength", "make_length_model",
           "LENGTH_MODELS"]


class LengthModel(nn.Module):
    """Base class. ``models_length`` says whether ``log_prob`` includes a length term."""

    name: ClassVar[str]
    models_length: ClassVar[bool] = True
    #: number of features appended to the backbone input per step (``explicit`` feeds tau - t)
    input_dim: ClassVar[int] = 0
    #: number of outputs the backbone's readout must produce per state for this length model
    head_dim: ClassVar[int] = 0

    def step_features(self, remaining: Tensor) -> Tensor:
        """Backbone input features for ``remaining = tau - t`` (shape ``(...,)`` -> ``(..., input_dim)``)."""
        return remaining.new_zeros(remaining.shape + (0,), dtype=torch.get_default_dtype())

    def stop_logits(self, head: Tensor, next_frame_params: Tensor) -> Tensor:
        """Logit of stopping at each state, from the length head and the next frame's parameters."""
        raise NotImplementedError

    def log_prob(self, lengths: Tensor, stop_logits: Tensor | None) -> Tensor:
        """``log P(T = lengths)``; ``stop_logits[b, t-1]`` is ``a_t`` for ``t = 1..T_max``."""
        return self.log_prob_window(lengths, stop_logits, 0)

    @full_precision
    def log_prob_window(self, lengths: Tensor, stop_logits: Tensor | None, start: int) -> Tensor:
        """The share of ``log P(T = lengths)`` of the steps ``t = start + 1 .. start + W``.

        ``stop_logits[b, j]`` is ``a_t`` for ``t = start + 1 + j``. For the halting form each step
        contributes ``log sigma(-a_t)`` before the end and ``log sigma(a_T)`` at it, so the shares
        of windows that partition ``1..T`` sum to :meth:`log_prob` (time-chunked scoring,
        :mod:`probseq.data.window`); a length model without per-step terms (``explicit``) counts
        its whole term in the window with ``start == 0``, so it enters exactly once.
        """
        if stop_logits is None:
            raise ValueError("this length model needs stop logits")
        steps = torch.arange(start + 1, start + stop_logits.shape[1] + 1, device=lengths.device)
        go_on = (steps.unsqueeze(0) < lengths.unsqueeze(1)).to(stop_logits.dtype)
        at_end = (steps.unsqueeze(0) == lengths.unsqueeze(1))
        continue_terms = (F.logsigmoid(-stop_logits) * go_on).sum(1)
        end_term = torch.where(at_end, F.logsigmoid(stop_logits), torch.zeros_like(stop_logits)).sum(1)
        return continue_terms + end_term

    def sample_target_length(self, n: int, *, min_length: int = 1, max_length: int | None = None,
                             generator: torch.Generator | None = None) -> Tensor | None:
        """For ``explicit``: draw ``tau`` before sampling; ``None`` for the other models."""
        return None

    def extra_repr(self) -> str:
        return self.name


class NoLength(LengthModel):
    name = "none"
    models_length = False

    def log_prob(self, lengths, stop_logits=None):
        return torch.zeros(lengths.shape, dtype=torch.get_default_dtype(), device=lengths.device)

    def log_prob_window(self, lengths, stop_logits, start):
        return self.log_prob(lengths)


class Halting(LengthModel):
    name = "halting"
    head_dim = 1

    def stop_logits(self, head, next_frame_params):
        return head[..., 0]


class EndSymbol(LengthModel):
    name = "end-symbol"
    head_dim = 1

    @full_precision
    def stop_logits(self, head, next_frame_params):
        return head[..., 0] - torch.logsumexp(next_frame_params, dim=-1)


class ExplicitLength(LengthModel):
    """``P(tau)`` over ``1..max_length`` with learned logits; ``tau - t`` fed back as an input.

    The feature of ``r = tau - t`` is ``[r / max_length, log(1 + r) / log(1 + max_length)]``.
    """

    name = "explicit"
    input_dim = 2

    def __init__(self, max_length: int) -> None:
        super().__init__()
        if max_length < 1:
            raise UserError(f"max_length for the explicit length model must be positive, got {max_length}")
        self.max_length = int(max_length)
        self.logits = nn.Parameter(torch.zeros(self.max_length))

    def step_features(self, remaining):
        r = remaining.to(torch.get_default_dtype()).clamp_min(0)
        return torch.stack([r / self.max_length, torch.log1p(r) / math.log1p(self.max_length)], -1)

    @full_precision
    def log_prob(self, lengths, stop_logits=None):
        if int(lengths.max()) > self.max_length:
            raise UserError(
                f"a sequence of length {int(lengths.max())} exceeds the explicit length model's "
                f"max_length={self.max_length}"
            )
        return torch.log_softmax(self.logits, 0)[lengths - 1]

    def log_prob_window(self, lengths, stop_logits, start):
        """``log P(tau = T)`` in the first window (``start == 0``), zero in the others."""
        if start == 0:
            return self.log_prob(lengths)
        return torch.zeros(lengths.shape, dtype=self.logits.dtype, device=lengths.device)

    def sample_target_length(self, n, *, min_length=1, max_length=None, generator=None):
        logits = self.logits.detach().clone()
        steps = torch.arange(1, self.max_length + 1, device=logits.device)
        allowed = steps >= min_length
        if max_length is not None:
            allowed &= steps <= max_length
        if not allowed.any():
            raise UserError(f"the explicit length model cannot produce a length in [{min_length}, {max_length}]")
        probs = torch.softmax(logits.masked_fill(~allowed, -math.inf), 0)
        return torch.multinomial(probs.expand(n, -1), 1, replacement=True, generator=generator)[:, 0] + 1


LENGTH_MODELS = ("none", "halting", "end-symbol", "explicit")


def make_length_model(name: str, *, data_kind: str, max_length: int) -> LengthModel:
    """Build a length model by name (``none | halting | end-symbol | explicit``)."""
    if name == "none":
        return NoLength()
    if name == "halting":
        return Halting()
    if name == "end-symbol":
        if data_kind != "categorical":
            raise UserError(
                "the end-symbol length model needs categorical frames; use length=halting or "
                "length=explicit for binary or real-valued frames"
            )
        return EndSymbol()
    if name == "explicit":
        return ExplicitLength(max_length)
    raise UserError(f"unknown length model {name!r}; expected one of {', '.join(LENGTH_MODELS)}")
