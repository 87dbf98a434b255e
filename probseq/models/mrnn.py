"""The multiplicative RNN (Sutskever, Martens & Hinton 2011; Sutskever 2013 thesis, ch. 5).

In a character-level RNN every character should have its own hidden-to-hidden matrix: the input
*selects* the transition. A full tensor ``W_hh^{(v)}`` per input is too large, so the MRNN factors
it through ``F`` factors whose gains depend on the input (thesis eqs. 5.5-5.7):

.. math::

    f_t = \\operatorname{diag}(W_{fv} v_t)\\, W_{fh}\\, h_{t-1}, \\qquad
    h_t = \\tanh(W_{hf} f_t + W_{hv} v_t + b_h), \\qquad
    o_t = W_{oh} h_t + b_o,

so the effective transition is ``W_hf diag(W_fv v_t) W_fh``. For a one-hot ``v_t`` (a character),
``W_fv v_t`` is one column of ``W_fv``, i.e. the character's own gains. ``o_t`` is the readout of
:class:`~probseq.models.recurrent.RecurrentFrameModel`, which turns it into the parameters of any
frame distribution (a softmax over characters for text) plus the length model's head.

Shapes: inputs ``(B, T, I)`` (``I`` = one-hot size + the begin flag + length features), hidden
``(layers, B, H)``, factors ``F``. Cost per step ``O(B (H F + F H))``; the input terms
``W_fv v_t`` and ``W_hv v_t`` are computed for all steps in one matrix product before the loop
(for one-hot inputs a product with a one-hot matrix: the same numbers as an embedding lookup), so
the Python loop over time holds only the two recurrent products. The loop ``unbind`` s its inputs
once (indexing under autograd makes the backward quadratic in ``T``).

**Derivative clipping** (``derivative_clip``, default 1). Trained by Adam at the recurrent models'
default rate, the MRNN diverged after ~230 steps on two English corpora (issue 19; measurements
in benchmarks/RESULTS.md): the factor gains ``W_fv`` stayed at unit size, but the spectral norms
of ``W_fh`` and ``W_hf`` grew from 1.1 to 5-6, the backward pass through 250 characters turned
expansive, its messages overflowed float32 (gradient norm 0.6 -> 18 -> inf within 20 steps), and
norm clipping of an infinite gradient gives NaN. Adam is invariant to the gradient's scale, so
clipping the total norm cannot stop that; what does is bounding every message of the backward
pass, as Graves (2013, §2) did for his LSTMs and Mikolov's RNNLM does for its hidden layer: the
derivative of the loss with respect to each hidden state ``h_t`` is clamped elementwise to
``[-c, c] / (B T)`` (``c`` in units of the loss *summed* over the ``B T`` frames, which the
trainer averages). A well-behaved model's derivatives stay far inside the bound, so it changes
nothing there; an expansive one can no longer overflow. ``derivative_clip=0`` turns it off.

:class:`MultiplicativeRNN` has ``nn.GRU``'s calling convention and registers itself as
``cell=mrnn``, so RNN-NADE and RNN-RBM can use it too; :class:`MRNNModel` is the ``mrnn``
baseline (factorial frame, any length model, exact likelihood).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probseq.data.spec import DataSpec
from probseq.models.recurrent import RecurrentFrameModel, register_cell
from probseq.models.registry import register_model

__all__ = ["MultiplicativeRNNLayer", "MultiplicativeRNN", "MRNNModel"]


class MultiplicativeRNNLayer(nn.Module):
    """One MRNN layer (eqs. 5.5-5.6).

    Parameters: ``input_to_factors`` = ``W_fv`` ``(F, I)``, ``hidden_to_factors`` = ``W_fh``
    ``(F, H)``, ``factors_to_hidden`` = ``W_hf`` ``(H, F)``, ``input_to_hidden`` = ``W_hv`` ``(H, I)``
    with bias ``b_h``.

    Initialisation: ``W_fv ~ N(0, 1)`` so that a one-hot input gives gains of unit size, and the
    other matrices uniform in ``±1/sqrt(fan_in)`` (PyTorch's default); then
    ``W_hf diag(g) W_fh`` has the scale of an ordinary RNN's ``W_hh`` at initialisation.
    """

    def __init__(self, input_size: int, hidden_size: int, factors: int, derivative_clip: float = 0.0) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.factors = input_size, hidden_size, factors
        self.derivative_clip = float(derivative_clip)
        self.input_to_factors = nn.Linear(input_size, factors, bias=False)
        self.hidden_to_factors = nn.Linear(hidden_size, factors, bias=False)
        self.factors_to_hidden = nn.Linear(factors, hidden_size, bias=False)
        self.input_to_hidden = nn.Linear(input_size, hidden_size)
        with torch.no_grad():
            self.input_to_factors.weight.normal_(0.0, 1.0)

    def forward(self, inputs: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """``inputs (B, T, I)``, ``hidden (B, H)`` -> ``(outputs (B, T, H), last hidden (B, H))``."""
        gains = self.input_to_factors(inputs)      # W_fv v_t for every t at once
        drive = self.input_to_hidden(inputs)       # W_hv v_t + b_h
        w_fh = self.hidden_to_factors.weight.t()   # (H, F)
        w_hf = self.factors_to_hidden.weight.t()   # (F, H)
        outputs = []
        h = hidden
        clip = None
        if self.derivative_clip > 0 and torch.is_grad_enabled() and self.training:
            bound = self.derivative_clip / max(1, inputs.shape[0] * inputs.shape[1])
            clip = _clamp_derivative(bound)
        for gain_t, drive_t in zip(gains.unbind(1), drive.unbind(1)):
            factors = gain_t * (h @ w_fh)
            h = torch.tanh(torch.addmm(drive_t, factors, w_hf))
            if clip is not None and h.requires_grad:
                h.register_hook(clip)
            outputs.append(h)
        return torch.stack(outputs, 1), h


def _clamp_derivative(bound: float):
    """A tensor hook clamping the incoming derivative elementwise to ``[-bound, bound]``."""
    return lambda grad: grad.clamp(-bound, bound)


class MultiplicativeRNN(nn.Module):
    """Stacked MRNN layers with ``nn.GRU``'s calling convention (batch first only).

    ``forward(inputs (B, T, I), h0 (layers, B, H)) -> (outputs (B, T, H), h_n (layers, B, H))``;
    dropout (training only) between layers. ``factors`` defaults to ``hidden_size``.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, batch_first: bool = True,
                 dropout: float = 0.0, factors: int | None = None, derivative_clip: float = 0.0) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("MultiplicativeRNN is batch first")
        factors = int(factors or hidden_size)
        self.dropout = float(dropout)
        self.layers = nn.ModuleList(
            MultiplicativeRNNLayer(input_size if i == 0 else hidden_size, hidden_size, factors, derivative_clip)
            for i in range(num_layers))

    def forward(self, inputs: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        x, last = inputs, []
        for i, (layer, h0) in enumerate(zip(self.layers, hidden.unbind(0))):
            if i > 0 and self.dropout > 0:
                x = F.dropout(x, self.dropout, self.training)
            x, h = layer(x, h0)
            last.append(h)
        return x, torch.stack(last, 0)


register_cell("mrnn", MultiplicativeRNN)


@register_model
class MRNNModel(RecurrentFrameModel):
    """The multiplicative RNN (thesis ch. 5) with a factorial output; exact likelihood.

    Made for characters (``--data text``: a softmax over the vocabulary), and usable on any data
    the other baselines take, with any length model. Hyperparameters are those of
    :class:`~probseq.models.recurrent.RecurrentFrameModel` plus ``factors`` (``F``; 0 means
    ``F = hidden``) and ``derivative_clip`` (module docstring). Parameters per layer:
    ``F (I + 2 H) + H (I + 1)``. (The bare :class:`MultiplicativeRNN`, e.g. ``cell=mrnn`` of other
    backbones, computes exact gradients unless given ``derivative_clip``.)
    """

    name = "mrnn"
    cell = "mrnn"
    hyperparameters: ClassVar[dict[str, Any]] = {**RecurrentFrameModel.hyperparameters, "factors": 0,
                                                 "derivative_clip": 1.0}
    #: Adam at 3e-3 (the recurrent baselines' 1e-2 diverged after ~230 steps on two English corpora;
    #: 3e-3 kept the recurrent weights' norms and the gradient bounded for 400 steps, RESULTS.md)
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 3e-3}
    contract_example = {"spec": DataSpec("categorical", 5), "hyper": {"hidden": 6, "factors": 4,
                                                                      "length": "end-symbol"}}

    def make_backbone(self, input_dim: int, hidden: int, layers: int, dropout: float) -> nn.Module:
        factors = int(self.config["factors"]) or hidden
        return MultiplicativeRNN(input_dim, hidden, num_layers=layers, dropout=dropout, factors=factors,
                                 derivative_clip=float(self.config["derivative_clip"]))

