"""Online denoising with a fitted TRBM (Sutskever 2013, fig. 3.2): filtering, then reconstruction.

For each step ``t`` the biases ``(b_t, c_t)`` come from the history of *reconstructions*
``\\hat v_{<t}`` and filtered hidden means ``\\bar h_{<t}``; then

.. math:: \\bar h_t = \\sigma\\big(W^\\top (y_t / \\sigma_v) + c_t\\big), \\qquad
          \\hat v_t = E[v \\mid \\bar h_t; b_t]

from the *noisy* frame ``y_t``. The reconstructions (not the noisy frames) feed the visible history
of later steps, so each output uses only the frames up to ``t``. Cost: one RBM up-down pass per step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from probseq.models.trbm import TRBM

__all__ = ["denoise"]


@torch.no_grad()
def denoise(model: TRBM, noisy: Tensor) -> Tensor:
    """Denoise the frames ``noisy`` ``(B, T, D)`` with ``model``; returns the reconstructions, same shape.

    ``hbar_t = sigmoid(W^T (y_t / sigma) + c_t)`` from the noisy frame ``y_t``, then
    ``vhat_t = E[v | hbar_t; b_t]``; ``b_t`` and ``c_t`` come from the reconstructions
    ``vhat_{<t}`` and the means ``hbar_{<t}``, so each output uses only frames up to ``t``.
    """
    state = model.initial_state(noisy.shape[0])
    out = []
    for y_t in noisy.to(model.rbm.weight.dtype).unbind(1):
        vb, hb = model.step_biases(state)
        h_t = torch.sigmoid(model.rbm.hidden_logits(y_t, hb))
        v_t = model.rbm.visible_mean(h_t, vb)
        out.append(v_t)
        state = model.next_history(state, v_t, h_t)
    return torch.stack(out, 1)
