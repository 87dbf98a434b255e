"""An RBM's numbers as one explicit bundle, its two conditionals, and the block-Gibbs chain, written once.

:class:`RBMParameters` holds what every RBM computation reads: the weights ``W`` ``(D, H)``, the
visible and hidden biases ``b`` ``(..., D)`` and ``c`` ``(..., H)`` (one per example for a
conditional RBM; the leading shapes broadcast against the data's) and, for Gaussian visibles, the
standard deviations ``sigma`` ``(D,)``. Helpers take this bundle instead of the
:class:`~probseq.frames.rbm.RBM` module, so none of them needs the module's internals
(:meth:`probseq.frames.rbm.RBM.with_biases` builds it).

The conditionals (Bernoulli hiddens; Bernoulli or Gaussian visibles; see :mod:`probseq.frames.rbm`):

.. math::

    p(h_j = 1 \\mid v) = \\sigma\\big(c_j + (W^\\top (v / \\sigma_v))_j\\big), \\qquad
    p(v_i = 1 \\mid h) = \\sigma\\big(b_i + (W h)_i\\big) \\ \\text{or}\\
    v_i \\mid h \\sim \\mathcal N\\big(b_i + \\sigma_i (W h)_i, \\sigma_i^2\\big).

:func:`gibbs_chain` runs ``k`` rounds of block Gibbs sampling ``v -> h -> v``: the one chain that
sampling (:meth:`~probseq.frames.rbm.RBM.gibbs`), the CD-k surrogate
(:meth:`~probseq.frames.rbm.RBM.cd_loss`) and the hand-written CD gradient and step
(:mod:`probseq.frames.rbm_cd`) all use. Cost ``O(k * N * D * H)`` for ``N`` chains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["RBMParameters", "GibbsChain", "gibbs_chain", "bernoulli_draw"]


def bernoulli_draw(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """Bernoulli draws as ``uniform < p`` (same law as ``torch.bernoulli``, faster on CPU)."""
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device)
    return u.lt_(probs)


def _affine(bias: Tensor, x: Tensor, weight: Tensor) -> Tensor:
    """``bias + x @ weight``; one fused ``addmm`` for a batch ``x`` ``(N, K)`` and a shared bias."""
    if x.dim() == 2 and bias.dim() == 1:
        return torch.addmm(bias, x, weight)
    return bias + x @ weight


@dataclass(frozen=True)
class RBMParameters:
    """One RBM, or a batch of conditional RBMs sharing ``W`` and ``sigma``: the numbers, nothing else.

    Fields: ``weight`` ``(D, H)``; ``visible_bias`` ``(..., D)``; ``hidden_bias`` ``(..., H)``;
    ``sigma`` ``(D,)`` for Gaussian visibles, ``None`` for Bernoulli.
    """

    weight: Tensor
    visible_bias: Tensor
    hidden_bias: Tensor
    sigma: Tensor | None = None

    @property
    def gaussian(self) -> bool:
        return self.sigma is not None

    def detached(self) -> RBMParameters:
        """The same numbers cut from the autograd graph (a Gibbs chain's draws carry no gradient)."""
        return RBMParameters(self.weight.detach(), self.visible_bias.detach(), self.hidden_bias.detach(),
                             None if self.sigma is None else self.sigma.detach())

    def scaled(self, v: Tensor) -> Tensor:
        """``v / sigma`` (Gaussian) or ``v``: what multiplies ``W`` in the energy, ``(..., D)``."""
        return v / self.sigma if self.gaussian else v

    def hidden_drive(self, v: Tensor) -> Tensor:
        """``W^T (v / sigma)``, ``(..., H)``: the visible layer's input to the hiddens, without ``c``."""
        return self.scaled(v) @ self.weight

    def hidden_logits(self, v: Tensor) -> Tensor:
        """``c + W^T (v / sigma)``, ``(..., H)``: ``p(h = 1 | v) = sigmoid(.)``."""
        return _affine(self.hidden_bias, self.scaled(v), self.weight)

    def hidden_probs(self, v: Tensor, temperature: float = 1.0) -> Tensor:
        """``p(h = 1 | v)`` at ``temperature`` (logits divided by it), ``(..., H)``."""
        logits = self.hidden_logits(v)
        return torch.sigmoid(logits if temperature == 1.0 else logits / temperature)

    def visible_activation(self, h: Tensor) -> Tensor:
        """Bernoulli: logits ``b + W h``; Gaussian: means ``b + sigma * (W h)``; ``(..., D)``."""
        if self.gaussian:
            return self.visible_bias + self.sigma * (h @ self.weight.t())
        return _affine(self.visible_bias, h, self.weight.t())

    def visible_mean(self, h: Tensor) -> Tensor:
        """``E[v | h]``, ``(..., D)``."""
        act = self.visible_activation(h)
        return act if self.gaussian else torch.sigmoid(act)

    def sample_visible(self, h: Tensor, *, temperature: float = 1.0,
                       generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``v ~ p(v | h)`` at ``temperature``; returns ``(v, E[v | h])`` at that temperature.

        Temperature ``T`` samples ``P(v, h)^{1/T}``: Bernoulli logits are divided by ``T``; the
        Gaussian variance is multiplied by ``T`` (the mean is unchanged).
        """
        act = self.visible_activation(h)
        if self.gaussian:
            noise = torch.randn(act.shape, generator=generator, dtype=act.dtype, device=act.device)
            return act + math.sqrt(temperature) * self.sigma * noise, act
        probs = torch.sigmoid(act if temperature == 1.0 else act / temperature)
        return bernoulli_draw(probs, generator), probs


class GibbsChain(NamedTuple):
    """The end of a Gibbs chain: the last visible state and, when asked for, ``p(h = 1 | v)`` there."""

    visible: Tensor
    hidden_probs: Tensor | None


@torch.no_grad()
def gibbs_chain(params: RBMParameters, start: Tensor, steps: int, *, temperature: float = 1.0,
                generator: torch.Generator | None = None, mean_visible: bool = False,
                start_hidden_probs: Tensor | None = None, end_hidden_probs: bool = False) -> GibbsChain:
    """``steps`` rounds of block Gibbs sampling ``v -> h -> v`` started at ``start``; no gradient.

    Each round draws ``h ~ p(h | v)`` then ``v ~ p(v | h)`` (at ``temperature``); all chains (the
    broadcast leading shape of ``start`` and the biases) run at once. ``mean_visible``: every
    visible draw is replaced by ``E[v | h]`` (the hiddens are still sampled; the noise-free
    generation of Taylor et al. 2007). ``start_hidden_probs``: ``p(h = 1 | start)`` when the caller
    has it already (CD reuses the positive phase's), saving one matrix product; it draws the same
    random numbers either way. ``end_hidden_probs``: also return ``p(h = 1 | v_last)`` (what the
    CD gradient needs). ``steps = 0`` returns ``start``.
    """
    v = start
    p_h = start_hidden_probs
    for _ in range(int(steps)):
        if p_h is None:
            p_h = params.hidden_probs(v, temperature)
        h = bernoulli_draw(p_h, generator)
        v, mean = params.sample_visible(h, temperature=temperature, generator=generator)
        if mean_visible:
            v = mean
        p_h = None
    if end_hidden_probs and p_h is None:
        p_h = params.hidden_probs(v, temperature)
    return GibbsChain(v, p_h if end_hidden_probs else None)
