"""Contrastive divergence for the RBM: the negative phase, the hand-written CD-k gradient and the CD step.

:func:`negative_phase` is the one place CD starts its chain: ``k`` rounds of
:func:`~probseq.frames.rbm_gibbs.gibbs_chain` from the data (CD-k) or from the persistent chains
(PCD, Tieleman 2008), which it then updates. :meth:`probseq.frames.rbm.RBM.cd_loss` (autograd of the
surrogate ``F(v) - F(v_neg)``), :func:`cd_gradients` (the same gradient by hand, Hinton 2002) and
:func:`cd_step` (an update on it) all go through it, so they draw the same random numbers.
:func:`cd_step` takes a plain SGD step (fused into ``addmm_`` updates for Bernoulli visibles) or
hands the gradient to a ``torch.optim`` optimiser, whose state (momentum's velocity) is saved and
restored with ``optimizer.state_dict()``. They use the RBM's own biases: static pre-training (the
RTRBM's CD-5 initialisation) and the throughput benchmark; training inside sequence models goes
through :meth:`~probseq.frames.rbm.RBM.cd_loss`. :class:`~probseq.frames.rbm.RBM` exposes them as
methods.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from probseq.frames.rbm_gibbs import GibbsChain, RBMParameters, gibbs_chain

if TYPE_CHECKING:
    from probseq.frames.rbm import RBM

__all__ = ["negative_phase", "cd_gradients", "cd_step"]


@torch.no_grad()
def negative_phase(rbm: RBM, params: RBMParameters, v: Tensor, k: int, *, persistent: bool = False,
                   generator: torch.Generator | None = None, positive_hidden_probs: Tensor | None = None,
                   end_hidden_probs: bool = False) -> GibbsChain:
    """The negatives of CD-k: ``k`` Gibbs rounds of the RBM ``params`` started at the data ``v``, or,
    with ``persistent=True``, at ``rbm.persistent_chains`` when they have ``v``'s shape and dtype (the
    chains then become the new negatives).

    ``positive_hidden_probs``: ``p(h = 1 | v)`` if the caller has it (reused as the chain's first
    hidden probabilities when the chain starts at ``v``). ``end_hidden_probs``: also return
    ``p(h = 1 | v_neg)``.
    """
    start, first = v, positive_hidden_probs
    chains = rbm.persistent_chains if persistent else None
    if chains is not None and chains.shape == v.shape and chains.dtype == v.dtype:
        start, first = chains, None
    result = gibbs_chain(params.detached(), start, k, generator=generator, start_hidden_probs=first,
                         end_hidden_probs=end_hidden_probs)
    if persistent:
        rbm.persistent_chains = result.visible
    return result


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
    params = rbm.with_biases().detached()
    n = v.shape[0]
    p_pos = params.hidden_probs(v)
    chain = negative_phase(rbm, params, v, k, persistent=persistent, generator=generator,
                           positive_hidden_probs=p_pos, end_hidden_probs=True)
    negatives, p_neg = chain.visible, chain.hidden_probs
    xs_pos, xs_neg = params.scaled(v), params.scaled(negatives)
    grads = {
        "weight": (xs_neg.t() @ p_neg - xs_pos.t() @ p_pos) / n,
        "hidden_bias": (p_neg - p_pos).mean(0),
    }
    if params.gaussian:
        sigma, vb, weight = params.sigma, params.visible_bias, params.weight
        grads["visible_bias"] = ((negatives - v) / sigma ** 2).mean(0)
        if rbm.learn_sigma:
            # d F / d log sigma_i = -(v_i - b_i)^2 / sigma_i^2 + (v_i / sigma_i) (W p(h|v))_i
            def dlog(x, xs, p):
                return (-((x - vb) / sigma) ** 2 + xs * (p @ weight.t())).mean(0)

            low, high = rbm.log_sigma_range
            inside = (rbm.log_sigma >= low) & (rbm.log_sigma <= high)
            grads["log_sigma"] = (dlog(v, xs_pos, p_pos) - dlog(negatives, xs_neg, p_neg)) * inside
    else:
        grads["visible_bias"] = (negatives - v).mean(0)
    return grads


@torch.no_grad()
def cd_step(rbm: RBM, v: Tensor, *, lr: float | None = None, optimizer: torch.optim.Optimizer | None = None,
            k: int = 1, persistent: bool = False, generator: torch.Generator | None = None) -> None:
    """One step on the CD-k gradient of :func:`cd_gradients`: ``param -= lr * grad``, or
    ``optimizer.step()`` with the gradient in ``param.grad`` (pass exactly one of the two).

    An optimiser carries its own state (SGD's momentum buffers), saved with ``optimizer.state_dict()``,
    so a resumed pre-training continues where it stopped; the RBM keeps no training state of its
    own besides the persistent chains. With ``lr`` and Bernoulli visibles the update is fused (the
    bias-add fused into the matrix products, ``addmm_`` straight into ``W``); it draws the same random
    numbers and makes the same update as ``param -= lr * cd_gradients(...)`` (tested).
    """
    if (lr is None) == (optimizer is None):
        raise ValueError("cd_step takes exactly one of lr (plain SGD) and optimizer")
    if v.dim() != 2 or int(k) < 1:
        raise ValueError(f"cd_step expects a batch (N, D) and k >= 1, got {tuple(v.shape)} and {k}")
    if optimizer is not None or rbm.gaussian:
        grads = cd_gradients(rbm, v, k, persistent=persistent, generator=generator)
        if optimizer is None:
            for name, grad in grads.items():
                getattr(rbm, name).sub_(lr * grad)
            return
        for name, grad in grads.items():
            getattr(rbm, name).grad = grad
        optimizer.step()
        for name in grads:
            getattr(rbm, name).grad = None
        return
    # Bernoulli visibles, plain SGD: the positive and negative statistics go straight into W
    params = rbm.with_biases().detached()
    p_pos = params.hidden_probs(v)
    chain = negative_phase(rbm, params, v, k, persistent=persistent, generator=generator,
                           positive_hidden_probs=p_pos, end_hidden_probs=True)
    negatives, p_neg = chain.visible, chain.hidden_probs
    scale = lr / v.shape[0]
    rbm.weight.addmm_(v.t(), p_pos, alpha=scale).addmm_(negatives.t(), p_neg, alpha=-scale)
    rbm.hidden_bias.add_(p_pos.sum(0) - p_neg.sum(0), alpha=scale)
    rbm.visible_bias.add_(v.sum(0) - negatives.sum(0), alpha=scale)
