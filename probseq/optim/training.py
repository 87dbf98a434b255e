"""How the trainer (:func:`probseq.fit`) drives the optimisers of this package.

``--set optimizer=nag`` and ``--set optimizer=hf`` select :class:`~probseq.optim.nag.NesterovMomentum`
and :class:`~probseq.optim.hessian_free.HessianFree`; both take a closure, so the trainer calls
:func:`closure_step` instead of ``loss.backward(); optimizer.step()``:

* NAG: the closure computes ``model.loss`` at the look-ahead point and backpropagates it.
* HF: the closure returns the model's :class:`~probseq.optim.curvature.CurvatureOutputs` on the
  gradient minibatch (the trainer's batch); the curvature closure the same on its first
  ``hf_curvature_batch`` sequences (Martens 2010 uses a curvature batch a fraction of the
  gradient batch; the trainer's batch order is already random). A model provides them with
  ``curvature_outputs(batch)``; for a model with an exact loss but no such method, the outputs
  are the parameters themselves (``J = I``), so ``G`` is the exact Hessian, which can be
  indefinite (CG then stops at the first direction of negative curvature).

Every closure call of one HF step replays the same random numbers (dropout masks), so the
losses it compares belong to one function.

``init=sparse|echo_state`` (:mod:`probseq.optim.init`) is applied by the trainer after
``model.prepare``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from probseq.device import generator_for
from probseq.errors import UserError
from probseq.optim.curvature import CurvatureOutputs
from probseq.optim.hessian_free import HessianFree
from probseq.optim.init import INIT_SCHEMES, apply_initialisation
from probseq.optim.nag import MOMENTUM_SCHEDULES, NesterovMomentum

__all__ = ["OPTIMIZER_OPTIONS", "CLOSURE_OPTIMIZERS", "make_closure_optimizer", "closure_step",
           "check_optimizer_options", "initialise", "parameter_space_outputs"]

#: optimisers of this package, by their ``--set optimizer=`` name
CLOSURE_OPTIMIZERS = ("nag", "hf")

#: trainer options these optimisers add (``--set key=value``)
OPTIMIZER_OPTIONS: dict[str, Any] = {
    "momentum_schedule": "constant",  # nag: constant | sutskever (thesis §7.2)
    "hf_damping": 1.0,                # hf: initial Tikhonov damping lambda
    "hf_structural_damping": 0.0,     # hf: mu, structural damping of hidden states (0 = off)
    "hf_cg_iters": 100,               # hf: cap on CG iterations per step
    "hf_cg_decay": 0.95,              # hf: warm start from the previous CG solution times this
    "hf_curvature_batch": 0,          # hf: sequences in the curvature batch (0 = the whole batch)
    "init": "default",                # default | sparse (Martens 2010) | echo_state (thesis ch. 7)
}


def check_optimizer_options(opts: dict[str, Any]) -> None:
    """Raise :class:`UserError` for a bad value of one of :data:`OPTIMIZER_OPTIONS`."""
    if opts.get("momentum_schedule", "constant") not in MOMENTUM_SCHEDULES:
        raise UserError(f"momentum_schedule must be one of {', '.join(MOMENTUM_SCHEDULES)}, "
                        f"got {opts['momentum_schedule']!r}")
    if opts.get("init", "default") not in INIT_SCHEMES:
        raise UserError(f"init must be one of {', '.join(INIT_SCHEMES)}, got {opts['init']!r}")
    if int(opts.get("hf_curvature_batch", 0)) < 0 or int(opts.get("hf_cg_iters", 1)) < 1:
        raise UserError("hf_curvature_batch must be >= 0 and hf_cg_iters >= 1")
    if opts.get("optimizer") in CLOSURE_OPTIMIZERS and str(opts.get("precision", "fp32")) != "fp32":
        raise UserError(f"optimizer={opts['optimizer']} trains in float32 only (its line searches and "
                        f"curvature products are not autocast); drop precision={opts['precision']} "
                        "or train with adam or sgd")


def initialise(model: nn.Module, opts: dict[str, Any], seed: int) -> None:
    """Apply ``opts["init"]`` to a freshly built model (not on resume)."""
    apply_initialisation(model, str(opts.get("init", "default")), seed=seed)


def make_closure_optimizer(model: nn.Module, opts: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimiser ``opts["optimizer"]`` (``nag`` or ``hf``) over ``model``'s trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    name = opts["optimizer"]
    if name == "nag":
        return NesterovMomentum(params, lr=float(opts["lr"]), momentum=float(opts["momentum"]),
                                schedule=str(opts.get("momentum_schedule", "constant")),
                                clip=float(opts.get("clip", 0.0)))
    if name == "hf":
        kind = getattr(type(model), "likelihood_kind", "exact")   # the family's, not a tiny instance's
        if kind != "exact":
            raise UserError(f"optimizer=hf needs a model whose loss is an exact log-likelihood; "
                            f"{getattr(model, 'name', 'this model')!r} reports {kind!r} likelihoods "
                            "(train it with adam or sgd)")
        return HessianFree(params, lr=1.0, damping=float(opts.get("hf_damping", 1.0)),
                           structural_damping=float(opts.get("hf_structural_damping", 0.0)),
                           cg_max_iters=int(opts.get("hf_cg_iters", 100)),
                           cg_decay=float(opts.get("hf_cg_decay", 0.95)))
    raise UserError(f"unknown optimizer {name!r}; closure optimizers: {', '.join(CLOSURE_OPTIMIZERS)}")


class _LossOf(nn.Module):
    """``model.loss`` as a module's ``forward``, so ``torch.func.functional_call`` can swap parameters."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Any, generator: torch.Generator | None) -> Tensor:
        return self.model.loss(batch, generator=generator)


def parameter_space_outputs(model: nn.Module, batch: Any,
                            generator: torch.Generator | None = None) -> CurvatureOutputs:
    """``z = theta`` (flattened) and ``L(z) = model.loss`` with the parameters set to ``z``.

    The fallback for models without ``curvature_outputs``: the Gauss-Newton matrix of this split
    is the exact Hessian of the loss.
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    params = [p for p in model.parameters() if p.requires_grad]
    shapes = [p.shape for p in params]
    flat = torch.cat([p.reshape(-1) for p in params])

    wrapper = _LossOf(model)

    def loss(z: Tensor) -> Tensor:
        pieces = torch.split(z, [s.numel() for s in shapes])
        values = {f"model.{n}": piece.reshape(s) for n, piece, s in zip(names, pieces, shapes)}
        return torch.func.functional_call(wrapper, values, (batch, generator))

    return CurvatureOutputs(flat, loss, None)


def _curvature(model, batch, seed: int) -> CurvatureOutputs:
    hook = getattr(model, "curvature_outputs", None)
    if hook is not None:
        return hook(batch)
    return parameter_space_outputs(model, batch, generator_for(model, seed))


def _replaying(fn, seed: int):
    """``fn`` with the global random state reset to ``seed`` on every call (same dropout masks)."""

    def call():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return fn()

    return call


def closure_step(optimizer: torch.optim.Optimizer, model: nn.Module, batch: Any, *,
                 generator: torch.Generator, opts: dict[str, Any]) -> Tensor:
    """One training step of a closure optimiser on ``batch``; returns the loss (before the update)."""
    if isinstance(optimizer, NesterovMomentum):
        def closure():
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(batch, generator=generator)
            if not torch.isfinite(loss):
                raise UserError(f"training diverged (the loss is {float(loss.detach())}); "
                                "try a smaller learning rate (--set lr=...)")
            loss.backward()
            return loss.detach()

        return optimizer.step(closure)
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    closure = _replaying(lambda: _curvature(model, batch, seed), seed)
    curvature_closure = None
    size = int(opts.get("hf_curvature_batch", 0))
    if 0 < size < batch.batch_size:
        sub = batch.select(slice(0, size))
        curvature_closure = _replaying(lambda: _curvature(model, sub, seed), seed)
    loss = optimizer.step(closure, curvature_closure)
    if not torch.isfinite(loss):
        raise UserError(f"training diverged (the loss is {float(loss)}); try a larger "
                        "--set hf_damping=...")
    return loss
