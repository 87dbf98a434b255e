"""The per-step distribution p(x_t | context) shared by every sequence model.

A frame distribution turns a parameter vector ``theta_t`` (shape ``(..., param_dim)``), produced by a
backbone from the history, into a distribution over one frame ``x_t`` (shape ``(..., *event_shape)``).
Parameters that do not depend on time (an RBM's weight matrix, NADE's shared weights) live inside
the frame distribution as ordinary ``nn.Parameter`` s; the backbone supplies only the dynamic part.
This is what lets RTRBM, RNN-RBM and RNN-NADE be "a backbone plus a frame distribution".
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from probseq.likelihood import LIKELIHOOD_KINDS  # the one taxonomy, re-exported here

__all__ = ["FrameDistribution", "LIKELIHOOD_KINDS"]


class FrameDistribution(nn.Module):
    """Base class of per-step distributions.

    Subclasses set :attr:`param_dim`, :attr:`event_shape`, :attr:`input_dim` and implement
    :meth:`log_prob`, :meth:`sample` and :meth:`mean`.

    Class attributes:
        likelihood_kind: ``"exact"`` when :meth:`log_prob` is exact (factorial, NADE), ``"estimate"``
            when it needs a stochastic estimator (RBM: AIS for the log-partition).
        data_kind: ``"binary"``, ``"real"`` or ``"categorical"`` — what frames it models.
    """

    likelihood_kind: ClassVar[str] = "exact"
    data_kind: ClassVar[str] = "real"

    param_dim: int
    event_shape: torch.Size
    #: size of :meth:`encode` output, the features a backbone reads for one frame
    input_dim: int

    def log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """``log p(x | params)``, shape ``params.shape[:-1]``."""
        raise NotImplementedError

    def sample(self, params: Tensor, *, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Tensor:
        """One frame per parameter vector, shape ``params.shape[:-1] + event_shape``."""
        raise NotImplementedError

    def mean(self, params: Tensor) -> Tensor:
        """``E[x | params]`` (the one-step-ahead prediction used by ``--metric mse``)."""
        raise NotImplementedError

    def loss(self, params: Tensor, x: Tensor) -> Tensor:
        """Per-frame training loss whose gradient is the learning signal; ``-log_prob`` by default.

        Frame distributions without a tractable likelihood (the RBM) return a contrastive-divergence
        surrogate here instead.
        """
        return -self.log_prob(params, x)

    def encode(self, x: Tensor) -> Tensor:
        """Features of a frame for a backbone's input, shape ``x.shape[:batch] + (input_dim,)``."""
        return x.to(torch.get_default_dtype()) if not x.is_floating_point() else x

    def validate(self, x: Tensor) -> None:
        """Raise :class:`~probseq.errors.UserError` if ``x`` is not valid data for this frame."""

    # ---------------------------------------------------------------- missing values
    #: how :meth:`observed_log_prob` relates to the marginal ``log p(x_obs | params)``:
    #: ``"exact"`` (factorial frames: the missing terms are dropped), ``"prefix"`` (exact when the
    #: observed dimensions come first in the frame's ordering, NADE), ``"none"`` (not available)
    observed_marginal: ClassVar[str] = "none"

    def observed_log_prob(self, params: Tensor, x: Tensor, observed: Tensor) -> Tensor:
        """``log p(x_obs | params)`` (see :attr:`observed_marginal`), shape ``params.shape[:-1]``;
        ``observed`` is a bool tensor of ``x``'s shape."""
        from probseq.errors import UserError

        raise UserError(f"the {type(self).__name__} frame cannot score partly observed frames")

    def observed_loss(self, params: Tensor, x: Tensor, observed: Tensor, *,
                      generator: torch.Generator | None = None) -> Tensor:
        """Training loss of a partly observed frame: ``-observed_log_prob`` by default (frames
        trained order-agnostically draw an ordering of the observed dimensions, NADE)."""
        return -self.observed_log_prob(params, x, observed)

    def fill_missing(self, params: Tensor, x: Tensor, observed: Tensor, *, temperature: float = 1.0,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Draw the missing values of ``x`` from a proposal ``q(x_mis | x_obs, params)``.

        Returns ``(filled, log_weight)``: ``filled`` equals ``x`` where ``observed``, and
        ``log_weight = log p(filled | params) - log q(filled_mis)``, whose expectation under ``q``
        of ``exp`` is the marginal ``p(x_obs | params)`` (an importance weight). Frames whose ``q`` is
        the exact conditional return ``log p(x_obs | params)`` itself.
        """
        from probseq.errors import UserError

        raise UserError(f"the {type(self).__name__} frame cannot fill in missing values")
