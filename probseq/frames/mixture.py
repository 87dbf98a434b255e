"""A mixture of factorial frame distributions (Bernoulli or Gaussian): the VRNN's ``output=mixture``.

:class:`MixtureFrame` is a :class:`~probseq.frames.base.FrameDistribution` whose parameters are the
mixing logits followed by the parameters of each of ``C`` components of one factorial family
(:mod:`probseq.frames.factorial`); ``log_prob`` is a ``logsumexp`` over the components.
"""

from __future__ import annotations

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.frames.base import FrameDistribution
from probseq.frames.factorial import CategoricalFrame
from probseq.precision import full_precision

__all__ = ["MixtureFrame"]


class MixtureFrame(FrameDistribution):
    """A mixture of ``C`` factorial frames (Bernoulli or Gaussian) with shared structure.

    .. math:: p(x \\mid \\theta) = \\sum_{c=1}^C \\pi_c\\, p(x \\mid \\theta_c), \\qquad
              \\pi = \\mathrm{softmax}(a),

    ``params = [a (C), theta_1, ..., theta_C]`` (``C (1 + P)`` numbers for a component with ``P``
    parameters). Temperature divides the mixing logits and is passed on to the chosen component.
    """

    def __init__(self, component: FrameDistribution, components: int) -> None:
        super().__init__()
        if isinstance(component, CategoricalFrame):
            raise UserError("a mixture of categorical frames is itself categorical; use output=categorical")
        if components < 1:
            raise UserError(f"a mixture needs at least one component, got components={components}")
        self.component = component
        self.components = int(components)
        self.data_kind = component.data_kind
        self.param_dim = self.components * (1 + component.param_dim)
        self.input_dim = component.input_dim
        self.event_shape = component.event_shape

    def split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        """``(mixing logits (..., C), component params (..., C, P))``."""
        c = self.components
        return params[..., :c], params[..., c:].unflatten(-1, (c, self.component.param_dim))

    @full_precision
    def log_prob(self, params, x):
        logits, comp = self.split(params)
        return torch.logsumexp(torch.log_softmax(logits, -1) + self.component.log_prob(comp, x.unsqueeze(-2)), -1)

    def sample(self, params, *, temperature=1.0, generator=None):
        logits, comp = self.split(params)
        probs = torch.softmax(logits / temperature, -1)
        idx = torch.multinomial(probs.reshape(-1, self.components), 1, generator=generator)
        idx = idx.reshape(probs.shape[:-1] + (1, 1)).expand(*probs.shape[:-1], 1, comp.shape[-1])
        chosen = comp.gather(-2, idx).squeeze(-2)
        return self.component.sample(chosen, temperature=temperature, generator=generator)

    def mean(self, params):
        logits, comp = self.split(params)
        return (torch.softmax(logits, -1).unsqueeze(-1) * self.component.mean(comp)).sum(-2)

    def encode(self, x):
        return self.component.encode(x)

    def validate(self, x):
        self.component.validate(x)
