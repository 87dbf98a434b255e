"""The fast path of static RBM training: the hand-written CD-k gradient and the fused CD step.

:func:`cd_gradients` is the CD-k gradient (Hinton 2002) of the mean surrogate
``F(v) - F(v_neg)`` over a batch, computed without autograd (equal to autograd's given the same
negatives; persistent chains as in Tieleman 2008); :func:`cd_step` takes an SGD step on it
(optionally with momentum), through :func:`fused_bernoulli_cd_step` for Bernoulli visibles without
momentum. They use the RBM's own biases: static pre-training (the RTRBM's CD-5 initialisation) and
the throughput benchmark; training inside sequence models goes through
:meth:`probseq.frames.rbm.RBM.cd_loss`. :class:`~probseq.frames.rbm.RBM` exposes both as methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from probseq.frames.rbm import RBM

__all__ = ["cd_gradients", "cd_step", "fused_bernoulli_cd_step"]


@torch.no_grad()
def cd_gradients(rbm: RBM, v: Tensor, k: int = 1, *, persistent: bool = False,
                 generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """Hand-written CD-k gradient of the mean surrogate over a batch ``v`` ``(N, D)``.

    Returns ``{"weight", "visible_bias", "hidden_bias"[, "log_sigma"]}`` equal to the
    autograd gradient of ``cd_loss(v, k).mean()`` given the same negatives (checked in
    float64 against autograd in the tests); the Bernoulli case is
    ``dW = -(v^T p(h|v) - v_neg^T p(h|v_neg)) / N``. Uses the RBM's own biases (the fast
    path for an unconditional RBM); ``log_sigma`` gets a gradient only when it is learned.
    """
    if v.dim() != 2:
        raise ValueError(f"cd_gradients expects a batch of shape (N, D), got {tuple(v.shape)}")
    if int(k) < 1:
        raise ValueError(f"CD-k needs k >= 1 Gibbs rounds, got {k}")
    n = v.shape[0]
    vb, hb = rbm.visible_bias, rbm.hidden_bias
    xs_pos = rbm._scaled(v)
    p_pos = torch.sigmoid(hb + xs_pos @ rbm.weight)
    # the chain of _negatives() written out, reusing p(h | v_data) for its first hidden draw
    # (same random stream, one matrix product fewer)
    chains = rbm.persistent_chains if persistent else None
    if chains is not None and chains.shape == v.shape and chains.dtype == v.dtype:
        p_h = torch.sigmoid(hb + rbm._scaled(chains) @ rbm.weight)
    else:
        p_h = p_pos
    for _ in range(int(k)):
        negatives, _ = rbm.sample_visible(rbm.draw_bernoulli(p_h, generator), vb, generator=generator)
        xs_neg = rbm._scaled(negatives)
        p_h = torch.sigmoid(hb + xs_neg @ rbm.weight)
    if persistent:
        rbm.persistent_chains = negatives
    p_neg = p_h
    grads = {
        "weight": (xs_neg.t() @ p_neg - xs_pos.t() @ p_pos) / n,
        "hidden_bias": (p_neg - p_pos).mean(0),
    }
    if rbm.gaussian:
        sigma = rbm.sigma
        grads["visible_bias"] = ((negatives - v) / sigma ** 2).mean(0)
        if rbm.learn_sigma:
            # d F / d log sigma_i = -(v_i - b_i)^2 / sigma_i^2 + (v_i / sigma_i) (W p(h|v))_i
            def dlog(x, xs, p):
                return (-((x - vb) / sigma) ** 2 + xs * (p @ rbm.weight.t())).mean(0)

            inside = (rbm.log_sigma >= rbm.log_sigma_range[0]) & (rbm.log_sigma <= rbm.log_sigma_range[1])
            grads["log_sigma"] = (dlog(v, xs_pos, p_pos) - dlog(negatives, xs_neg, p_neg)) * inside
    else:
        grads["visible_bias"] = (negatives - v).mean(0)
    return grads


@torch.no_grad()
def cd_step(rbm: RBM, v: Tensor, *, lr: float, k: int = 1, persistent: bool = False,
            momentum: float = 0.0, generator: torch.Generator | None = None) -> None:
    """One SGD step (optionally with momentum) on the CD-k gradient of :func:`cd_gradients`.

    The fast path for static pre-training (e.g. the RTRBM's CD-5 initialisation) and for the
    throughput benchmark; training inside sequence models goes through
    :meth:`~probseq.frames.rbm.RBM.cd_loss`.
    Without momentum, Bernoulli visibles take a fused route (bias-add fused into the matrix
    products, in-place sigmoids, the update accumulated straight into ``W`` by ``addmm_``)
    that draws the same random numbers and makes the same update as
    ``param -= lr * cd_gradients(...)`` (tested).
    """
    if not momentum and not rbm.gaussian:
        fused_bernoulli_cd_step(rbm, v, lr=lr, k=k, persistent=persistent, generator=generator)
        return
    grads = cd_gradients(rbm, v, k, persistent=persistent, generator=generator)
    velocity = getattr(rbm, "_velocity", None)
    if momentum and velocity is None:
        velocity = rbm._velocity = {name: torch.zeros_like(g) for name, g in grads.items()}
    for name, grad in grads.items():
        param = getattr(rbm, name)
        if momentum:
            velocity[name].mul_(momentum).add_(grad)
            grad = velocity[name]
        param.sub_(lr * grad)


def fused_bernoulli_cd_step(rbm: RBM, v: Tensor, *, lr: float, k: int, persistent: bool,
                            generator: torch.Generator | None) -> None:
    """:func:`cd_step` for Bernoulli visibles without momentum: the same draws and the same update,
    with the bias-add fused into the matrix products, in-place sigmoids and ``addmm_`` into ``W``."""
    if v.dim() != 2 or int(k) < 1:
        raise ValueError(f"cd_step expects a batch (N, D) and k >= 1, got {tuple(v.shape)} and {k}")
    w, vb, hb = rbm.weight, rbm.visible_bias, rbm.hidden_bias
    n = v.shape[0]
    p_pos = torch.addmm(hb, v, w).sigmoid_()
    chains = rbm.persistent_chains if persistent else None
    if chains is not None and chains.shape == v.shape and chains.dtype == v.dtype:
        p_h = torch.addmm(hb, chains, w).sigmoid_()
    else:
        p_h = p_pos
    for _ in range(int(k)):
        h = rbm.draw_bernoulli(p_h, generator)
        negatives = rbm.draw_bernoulli(torch.addmm(vb, h, w.t()).sigmoid_(), generator)
        p_h = torch.addmm(hb, negatives, w).sigmoid_()
    if persistent:
        rbm.persistent_chains = negatives
    scale = lr / n
    w.addmm_(v.t(), p_pos, alpha=scale).addmm_(negatives.t(), p_h, alpha=-scale)
    hb.add_(p_pos.sum(0) - p_h.sum(0), alpha=scale)
    vb.add_(v.sum(0) - negatives.sum(0), alpha=scale)
