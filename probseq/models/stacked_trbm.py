"""Two TRBMs stacked greedily (Sutskever 2013, §3.4): a sampler, not a registered model.

A second TRBM is trained on the first one's filtered hidden means
(:meth:`~probseq.models.trbm.TRBM.filtered_hidden`); it generates the first layer's hidden
sequence, from which a single top-down pass draws ``v_t ~ P(v_t | h^{(1)}_t; b_t)`` with the first
layer's visible history. It has no ``log_prob`` (``docs/models.md`` says why).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from probseq.data.batch import Batch
from probseq.errors import UserError
from probseq.models.trbm import TRBM

__all__ = ["StackedTRBM"]


class StackedTRBM(nn.Module):
    """Two TRBMs stacked greedily (thesis §3.4): ``upper`` models ``lower``'s filtered hidden means.

    Build the upper layer with ``TRBM(DataSpec("binary", lower.rbm.n_hidden), ...)`` and train it on
    :meth:`TRBM.filtered_hidden` of the training data (its Bernoulli CD accepts the means in
    ``[0, 1]`` as soft data; use :meth:`upper_training_loss`).

    :meth:`sample`: the upper TRBM generates a sequence of first-layer hidden vectors (binary
    samples), then one top-down pass draws ``v_t ~ P(v_t | h_t; b_t)`` with the first layer's
    visible history in ``b_t`` (its hidden-side temporal connections are replaced by the upper
    layer, as in a deep belief net).
    """

    def __init__(self, lower: TRBM, upper: TRBM) -> None:
        super().__init__()
        if upper.spec.dim != lower.rbm.n_hidden or upper.spec.kind != "binary":
            raise UserError(f"the upper TRBM must model binary frames of the lower layer's "
                            f"{lower.rbm.n_hidden} hidden units, got {upper.spec}")
        self.lower, self.upper = lower, upper

    def upper_training_loss(self, batch: Batch, *, generator: torch.Generator | None = None) -> Tensor:
        """CD loss of the upper layer on the lower layer's filtered means of ``batch`` (lower frozen)."""
        hidden = Batch.from_sequences(self.lower.filtered_hidden(batch))
        return self.upper.loss(hidden, generator=generator)

    @torch.no_grad()
    def sample(self, n: int, length: int, *, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> Batch:
        hidden = self.upper.sample(n, length=length, temperature=temperature, generator=generator)
        state = self.lower.initial_state(n)
        frames = []
        for h_t in hidden.values.unbind(1):
            vb, _ = self.lower.step_biases(state)
            v_t, _ = self.lower.rbm.sample_visible(h_t.to(vb.dtype), vb, temperature=temperature,
                                                   generator=generator)
            frames.append(v_t)
            state = self.lower.next_history(state, v_t, h_t)
        return Batch(torch.stack(frames, 1), torch.full((n,), length, dtype=torch.long))
