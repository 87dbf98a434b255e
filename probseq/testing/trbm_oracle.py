"""Brute-force oracles for tiny binary TRBMs (:mod:`probseq.models.trbm`).

Written independently of the model code: plain loops over time and explicit enumeration of every
visible and hidden configuration, in float64. Only for a handful of units and steps.

* :func:`exact_log_marginal` — the TRBM's own ``log P(v_{1:T}) = log sum_{h_{1:T}} prod_t
  P(v_t, h_t | v_{<t}, h_{<t})`` (every hidden trajectory enumerated, every step's ``Z`` too);
* :func:`filtered_log_prob` — the mean-field filtering approximation ``log Q(v_{1:T})``.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

__all__ = ["trbm_parameters", "exact_log_marginal", "filtered_log_prob", "all_binary"]


def all_binary(n: int) -> Tensor:
    """Every vector of ``{0,1}^n``, ``(2^n, n)`` float64."""
    return torch.tensor(list(itertools.product((0.0, 1.0), repeat=n)), dtype=torch.float64)


def trbm_parameters(model) -> dict:
    """The model's parameters as float64 per-tap matrices ``A[k], B[k], C[k]`` (``k = 0`` is tap 1)."""
    d, h, m = model.rbm.n_visible, model.rbm.n_hidden, model.delay

    def taps(weight, rows, cols):
        if weight is None:
            return [torch.zeros(rows, cols, dtype=torch.float64) for _ in range(m)]
        w = weight.detach().double()
        return [w[:, k * cols:(k + 1) * cols] for k in range(m)]

    v0 = (model.initial_visible.detach().double() if model.initial_visible is not None
          else torch.zeros(m, d, dtype=torch.float64))
    h0 = (torch.sigmoid(model.initial_hidden.detach().double()) if model.initial_hidden is not None
          else torch.zeros(m, h, dtype=torch.float64))
    return {"W": model.rbm.weight.detach().double(), "bV": model.rbm.visible_bias.detach().double(),
            "bH": model.rbm.hidden_bias.detach().double(), "A": taps(model.vv_weight, d, d),
            "B": taps(model.hh_weight, h, h), "C": taps(model.vh_weight, h, d),
            "v0": list(v0), "h0": list(h0), "m": m}


def _biases(p: dict, v_hist: list[Tensor], h_hist: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``b_t, c_t`` from histories given newest first (``v_hist[k-1] = v_{t-k}``)."""
    b, c = p["bV"].clone(), p["bH"].clone()
    for k in range(p["m"]):
        b = b + p["A"][k] @ v_hist[k]
        c = c + p["B"][k] @ h_hist[k] + p["C"][k] @ v_hist[k]
    return b, c


def _neg_energy(p: dict, v: Tensor, h: Tensor, b: Tensor, c: Tensor) -> Tensor:
    return v @ b + h @ c + ((v @ p["W"]) * h).sum(-1)


def _log_z(p: dict, b: Tensor, c: Tensor) -> Tensor:
    d, h = p["W"].shape
    vs, hs = all_binary(d), all_binary(h)
    terms = (vs @ b).unsqueeze(1) + (hs @ c).unsqueeze(0) + vs @ p["W"] @ hs.t()
    return torch.logsumexp(terms.flatten(), 0)


def exact_log_marginal(model, v_seq: Tensor) -> Tensor:
    """``log P(v_{1:T})`` of the TRBM by enumerating every hidden trajectory; ``v_seq`` ``(T, D)``."""
    p = trbm_parameters(model)
    v_seq = v_seq.double()
    steps, h = v_seq.shape[0], p["W"].shape[1]
    hs = all_binary(h)
    terms = []
    for traj in itertools.product(range(hs.shape[0]), repeat=steps):
        v_hist, h_hist = list(p["v0"]), list(p["h0"])
        total = torch.zeros((), dtype=torch.float64)
        for t in range(steps):
            b, c = _biases(p, v_hist, h_hist)
            h_t = hs[traj[t]]
            total = total + _neg_energy(p, v_seq[t], h_t, b, c) - _log_z(p, b, c)
            v_hist, h_hist = [v_seq[t]] + v_hist[:-1], [h_t] + h_hist[:-1]
        terms.append(total)
    return torch.logsumexp(torch.stack(terms), 0)


def filtered_log_prob(model, v_seq: Tensor) -> Tensor:
    """``log Q(v_{1:T})``: each step's RBM marginal with the past hiddens replaced by their filtered means."""
    p = trbm_parameters(model)
    v_seq = v_seq.double()
    hs = all_binary(p["W"].shape[1])
    v_hist, h_hist = list(p["v0"]), list(p["h0"])
    total = torch.zeros((), dtype=torch.float64)
    for v_t in v_seq:
        b, c = _biases(p, v_hist, h_hist)
        log_unnorm = torch.logsumexp(torch.stack([_neg_energy(p, v_t, h, b, c) for h in hs]), 0)
        total = total + log_unnorm - _log_z(p, b, c)
        hbar = torch.sigmoid(c + v_t @ p["W"])
        v_hist, h_hist = [v_t] + v_hist[:-1], [hbar] + h_hist[:-1]
    return total
