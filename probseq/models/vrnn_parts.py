"""The VRNN's four public pieces: prior, posterior (encoder), emitter (decoder) and transition (recurrence).

Each is a small ``nn.Module`` with one job, in the shape of Pyro's deep Markov model example
(``examples/dmm.py``: an emitter, a transition and a combiner that both the model and the guide
compose). :class:`~probseq.models.vrnn.VRNN`'s fast path (``elbo_terms``), its sampler and its Pyro
program (:mod:`probseq.models.vrnn_pyro`) are all written with these pieces and nothing else, so the
recurrence and every network exist once. With ``h`` the deterministic state ``(..., H)``, ``z`` the
latent ``(..., U)``, ``F`` the feature width and ``phi_x``/``phi_z`` the feature extractors:

* :class:`Prior` — ``p(z_t | h_{t-1}) = N(mu_0, diag sigma_0^2)``, ``[mu_0, sigma_0] = MLP(h_{t-1})``;
* :class:`Posterior` — ``q(z_t | x_t, h_{t-1}) = N(mu_z, diag sigma_z^2)``,
  ``[mu_z, sigma_z] = W_o relu(W_x phi_x(x_t) + W_h h_{t-1} + b) + b_o`` (Chung et al. 2015, eq. 9);
* :class:`Emitter` — the frame parameters ``theta_t = MLP([phi_z(z_t), h_{t-1}])`` of ``p(x_t | theta_t)``;
* :class:`Transition` — ``h_t = GRU(h_{t-1}, [phi_x(x_t), phi_z(z_t), g(tau - t)])`` (Cho et al. 2014
  gates; ``g`` only with an explicit length model).

The ``x``-only parts (``W_x phi_x(x_t)``, the GRU's input gates from ``phi_x``) do not depend on the
recurrence, so callers compute them for all ``t`` at once (:meth:`Posterior.frame_part`,
:meth:`Transition.frame_inputs`) and pass one step's slice in the loop. Scales are
``softplus(.) + 1e-4`` (:func:`~probseq.models.gaussian.loc_scale`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from probseq.models.gaussian import loc_scale

__all__ = ["Prior", "Posterior", "Emitter", "Transition", "gru_update"]


class Prior(nn.Module):
    """``p(z_t | h_{t-1})``: ``(loc, scale)``, each ``(..., U)``, from ``h`` ``(..., H)``."""

    def __init__(self, hidden: int, features: int, latent: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden, features), nn.ReLU(), nn.Linear(features, 2 * latent))

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return loc_scale(self.net(h))


class Posterior(nn.Module):
    """``q(z_t | x_t, h_{t-1})``, the inference network: ``(loc, scale)``, each ``(..., U)``.

    ``relu(W_x phi_x + b_x + W_h h)`` then a linear head; ``W_x phi_x + b_x`` is
    :meth:`frame_part` (vectorised over time by the caller), ``W_h h`` the hidden part
    (``hidden_weight`` ``(F, H)``, no bias).
    """

    def __init__(self, features: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.frame_layer = nn.Linear(features, features)
        self.hidden_weight = nn.Parameter(torch.empty(features, hidden))
        nn.init.kaiming_uniform_(self.hidden_weight, a=math.sqrt(5))
        self.out = nn.Linear(features, 2 * latent)

    def frame_part(self, phi_x: Tensor) -> Tensor:
        """``W_x phi_x(x_t) + b_x``, ``(..., F)``: everything that depends on the frame alone."""
        return self.frame_layer(phi_x)

    def forward(self, frame_part: Tensor, h: Tensor, hidden_part: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(loc, scale)`` of ``q(z_t | x_t, h_{t-1})`` from one step's :meth:`frame_part` and ``h_{t-1}``.

        ``hidden_part``: ``W_h h`` when the caller computed it already (the fast path shares one
        matrix product on ``h`` with the transition).
        """
        if hidden_part is None:
            hidden_part = F.linear(h, self.hidden_weight)
        return loc_scale(self.out(F.relu(frame_part + hidden_part)))


class Emitter(nn.Module):
    """The frame parameters ``theta_t`` ``(..., P)`` of ``p(x_t | theta_t)`` from ``phi_z(z_t)`` and ``h_{t-1}``."""

    def __init__(self, features: int, hidden: int, param_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features + hidden, features), nn.ReLU(),
                                 nn.Linear(features, features), nn.ReLU(),
                                 nn.Linear(features, param_dim))

    @property
    def output_layer(self) -> nn.Linear:
        """The last linear layer (its bias is set to the data's marginals before training)."""
        return self.net[-1]

    def forward(self, z_features: Tensor, h: Tensor) -> Tensor:
        return self.net(torch.cat([z_features, h], -1))


def gru_update(input_gates: Tensor, hidden_gates: Tensor, h: Tensor) -> Tensor:
    """One GRU step from its pre-activations (gate order r, z, n, as ``nn.GRUCell``; Cho et al. 2014).

    ``input_gates = W_i u + b_i`` and ``hidden_gates = W_h h + b_h``, each ``(..., 3H)``:
    ``r, z = sigmoid(.)``, ``n = tanh(i_n + r * h_n)``, ``h' = n + z * (h - n)``.
    """
    hs = h.shape[-1]
    rz = torch.sigmoid(input_gates[..., :2 * hs] + hidden_gates[..., :2 * hs])
    r, u = rz[..., :hs], rz[..., hs:]
    n = torch.tanh(input_gates[..., 2 * hs:] + r * hidden_gates[..., 2 * hs:])
    return n + u * (h - n)


class Transition(nn.Module):
    """``h_t = GRU(h_{t-1}, [phi_x(x_t), phi_z(z_t), g(tau - t)])``, written from its parts.

    The GRU input is split by what it depends on: :meth:`frame_inputs` (``phi_x`` and the length
    features, with the input bias; vectorised over time by the caller) and :meth:`latent_inputs`
    (``phi_z(z_t)``, inside the loop). ``rnn`` is an ``nn.GRUCell`` holding the weights, so
    ``rnn(u, h)`` on the concatenated input gives the same ``h_t`` (tested).
    """

    def __init__(self, features: int, extra_features: int, hidden: int) -> None:
        super().__init__()
        self.features = int(features)
        self.extra_features = int(extra_features)
        self.rnn = nn.GRUCell(2 * self.features + self.extra_features, hidden)

    def frame_inputs(self, phi_x: Tensor, extra: Tensor | None = None) -> Tensor:
        """``W_x phi_x + W_g g + b_i``, ``(..., 3H)``: the input gates' part fixed by the frames.

        ``extra``: the length features ``g(tau - t)`` ``(..., extra_features)``; required exactly
        when the transition was built with ``extra_features > 0``.
        """
        feat, w = self.features, self.rnn.weight_ih
        out = F.linear(phi_x, w[:, :feat], self.rnn.bias_ih)
        if self.extra_features:
            out = out + F.linear(extra.to(phi_x.dtype), w[:, 2 * feat:])
        return out

    def latent_inputs(self, z_features: Tensor) -> Tensor:
        """``W_z phi_z(z_t)``, ``(..., 3H)``: the input gates' part from the latent."""
        feat = self.features
        return F.linear(z_features, self.rnn.weight_ih[:, feat:2 * feat])

    def hidden_gates(self, h: Tensor) -> Tensor:
        """``W_h h + b_h``, ``(..., 3H)``."""
        return F.linear(h, self.rnn.weight_hh, self.rnn.bias_hh)

    def forward(self, frame_inputs: Tensor, z_features: Tensor, h: Tensor,
                hidden_gates: Tensor | None = None) -> Tensor:
        """``h_t`` ``(..., H)`` from one step's :meth:`frame_inputs`, ``phi_z(z_t)`` and ``h_{t-1}``.

        ``hidden_gates``: ``W_h h + b_h`` when the caller computed it already.
        """
        if hidden_gates is None:
            hidden_gates = self.hidden_gates(h)
        return gru_update(frame_inputs + self.latent_inputs(z_features), hidden_gates, h)
