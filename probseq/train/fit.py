"""The fit loop shared by every model.

Minibatch training of ``model.loss`` (the pooled NLL per frame for exact models, a CD surrogate
for RBMs, the negative ELBO for latent-variable models) with:

* Adam by default (or SGD with momentum), optional linear learning-rate decay to zero;
* gradient-norm clipping;
* validation every ``eval_every`` steps and early stopping after ``patience`` evaluations without
  improvement, keeping the best weights in ``model.pt`` (``keep=last`` keeps the final weights
  instead, for models whose cheap validation score is only a proxy of the likelihood, such as
  the RBM family's next-frame score);
* checkpoints written atomically every ``checkpoint_every`` steps and at the end, holding the
  optimiser, the step, every random generator and the position in the data order, so that
  ``--resume`` after a crash continues exactly where the checkpoint left off;
* a tqdm progress bar showing the loss, and a JSON-lines log (``log.jsonl``).

A run with the same seed, data and options repeats exactly (on the same machine and thread count).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from probseq.device import generator_for, model_device, resolve_device
from probseq.errors import UserError
from probseq.models.registry import parse_option_value
from probseq.optim.training import (CLOSURE_OPTIMIZERS, OPTIMIZER_OPTIONS, check_optimizer_options,
                                    closure_step, initialise, make_closure_optimizer)
from probseq.train import distributed
from probseq.train.checkpoint import atomic_save, safe_load, save_weights

__all__ = ["TRAINING_DEFAULTS", "training_options", "fit", "FitSummary"]

#: trainer options; a model's ``training_defaults`` override them, ``--set key=value`` overrides both
TRAINING_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "batch_size": 32,
    "clip": 5.0,             # max gradient norm; 0 disables clipping
    "optimizer": "adam",     # adam | sgd | nag | hf (the last two: probseq.optim)
    "momentum": 0.9,         # for sgd
    "weight_decay": 0.0,
    "lr_schedule": "constant",  # constant | linear (decay to 0 at the last step)
    "eval_every": 0,         # steps between validations; 0 = once per epoch
    "patience": 10,          # validations without improvement before stopping; 0 = never stop early
    "keep": "best",          # best (best-validation weights) | last (the weights of the last step)
    "checkpoint_every": 100,
    "log_every": 10,
    **OPTIMIZER_OPTIONS,     # nag / hf / init options (probseq.optim.training)
}


def training_options(model, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge the trainer defaults, the model's ``training_defaults`` and user overrides (typed)."""
    opts = {**TRAINING_DEFAULTS, **getattr(model, "training_defaults", {})}
    for key, value in (overrides or {}).items():
        if key not in opts:
            raise UserError(f"unknown training option {key!r}; known: {', '.join(sorted(opts))}")
        opts[key] = parse_option_value(key, value, opts[key]) if isinstance(value, str) else value
    if opts["keep"] not in ("best", "last"):
        raise UserError(f"keep must be best or last, got {opts['keep']!r}")
    if opts["optimizer"] not in ("adam", "sgd") + CLOSURE_OPTIMIZERS:
        raise UserError(f"optimizer must be adam, sgd, nag or hf, got {opts['optimizer']!r}")
    check_optimizer_options(opts)
    if opts["lr_schedule"] not in ("constant", "linear"):
        raise UserError(f"lr_schedule must be constant or linear, got {opts['lr_schedule']!r}")
    if int(opts["batch_size"]) < 1 or float(opts["lr"]) <= 0:
        raise UserError("batch_size and lr must be positive")
    return opts


@dataclass
class FitSummary:
    steps: int
    epochs: float
    best_valid: float | None
    best_step: int | None
    stopped_early: bool
    wall_s: float


@dataclass
class _Progress:
    """The part of the training state that is not a tensor (saved in ``checkpoint.pt``)."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    best_valid: float = math.inf
    best_step: int = -1
    bad_evals: int = 0
    stopped_early: bool = False


def _make_optimizer(model, opts):
    if opts["optimizer"] in CLOSURE_OPTIMIZERS:
        return make_closure_optimizer(model, opts)
    params = [p for p in model.parameters() if p.requires_grad]
    if opts["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=float(opts["lr"]), weight_decay=float(opts["weight_decay"]))
    return torch.optim.SGD(params, lr=float(opts["lr"]), momentum=float(opts["momentum"]),
                           weight_decay=float(opts["weight_decay"]))


def _validation_loss(model, examples, batch_size: int) -> float:
    """The model's validation criterion pooled over a split (weighted by frames), with memory
    bounded by a frame budget (:func:`probseq.evaluate.chunking.bounded_validation_loss`)."""
    from probseq.evaluate.chunking import bounded_validation_loss

    return bounded_validation_loss(model, examples, batch_size=batch_size)


def fit(model, dataset, run_dir: str | Path, *, steps: int | None = None, epochs: float | None = None,
        seed: int = 0, options: dict[str, Any] | None = None, resume: bool = False,
        progress: bool = True, device: str | torch.device | None = None) -> FitSummary:
    """Train ``model`` on ``dataset.splits["train"]``, validating on ``"valid"`` when present.

    Args:
        run_dir: where ``model.pt``, ``checkpoint.pt`` and ``log.jsonl`` go (``run.json`` is the
            caller's; :func:`probseq.cli` writes it).
        steps / epochs: training length (optimisation steps, or passes over the training set).
        seed: seeds the data order and the generator handed to ``model.loss``.
        options: training options (see :data:`TRAINING_DEFAULTS`).
        resume: continue from ``run_dir/checkpoint.pt``.
        device: move the model there first (``"auto"``, ``"cpu"``, ``"cuda:1"``...; ``None``: where it is).

    Under ``torchrun`` (an initialised process group) every process calls ``fit`` and they train
    one model together: ``batch_size`` is per process (:mod:`probseq.train.distributed`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    opts = training_options(model, options)
    job = distributed.current()         # torchrun: this process's rank in the job (one process: rank 0 of 1)
    if device is not None:
        model.to(resolve_device(device))
    if job.enabled and opts["optimizer"] in CLOSURE_OPTIMIZERS:
        raise UserError(f"optimizer {opts['optimizer']} trains in one process; start it without torchrun")
    train = dataset.split("train")
    valid = dataset.splits.get("valid") or []
    batch_size = int(opts["batch_size"]) * job.world_size   # the global batch: per process x processes
    per_epoch = math.ceil(len(train) / batch_size)
    if steps is None:
        steps = max(1, round((epochs if epochs is not None else 10) * per_epoch))
    if steps < 1:
        raise UserError(f"the number of training steps must be positive, got {steps}")
    eval_every = int(opts["eval_every"]) or per_epoch
    optimizer = _make_optimizer(model, opts)
    schedule = (lambda s: max(0.0, 1.0 - s / steps)) if opts["lr_schedule"] == "linear" else (lambda s: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    order_gen = torch.Generator().manual_seed(seed)
    loss_gen = generator_for(model, seed + 1)
    state = _Progress()
    epoch_gen_state = order_gen.get_state()
    checkpoint_path = run_dir / "checkpoint.pt"

    if resume:
        ckpt = safe_load(checkpoint_path)
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            loss_gen.set_state(ckpt["loss_generator"])
            epoch_gen_state = ckpt["epoch_generator"]
            torch.set_rng_state(ckpt["torch_rng"])
            state = _Progress(**ckpt["progress"])
        except (KeyError, RuntimeError, TypeError, ValueError):
            raise UserError(f"{checkpoint_path} does not match this run; cannot resume") from None
        if state.step >= steps or state.stopped_early:
            return FitSummary(state.step, state.step / per_epoch,
                              None if math.isinf(state.best_valid) else state.best_valid,
                              None if state.best_step < 0 else state.best_step, state.stopped_early, 0.0)
    else:
        torch.manual_seed(seed)
        model.prepare(dataset)
        initialise(model, opts, seed)        # init=sparse|echo_state (probseq.optim.init)

    order_gen.set_state(epoch_gen_state)
    order = torch.randperm(len(train), generator=order_gen)
    job.broadcast_module(model)          # every process starts from rank 0's weights
    log_file = open(run_dir / "log.jsonl", "a") if job.is_main else None
    best_state = None
    keep_best = opts["keep"] == "best"

    def log(**event):
        if log_file is None:          # only rank 0 writes the log
            return
        log_file.write(json.dumps({"step": state.step, **event}) + "\n")
        log_file.flush()

    def checkpoint():
        if not job.is_main:
            return
        atomic_save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "loss_generator": loss_gen.get_state(),
            "epoch_generator": epoch_gen_state, "torch_rng": torch.get_rng_state(),
            "progress": asdict(state),
        }, checkpoint_path)

    def validate():
        nonlocal best_state
        if not valid:
            return None
        # validated once (rank 0) and broadcast, so every process takes the same decisions
        score = job.broadcast_value(_validation_loss(model, valid, batch_size) if job.is_main else None)
        extra = {}
        if hasattr(model, "diagnostics") and job.is_main:
            with torch.no_grad():
                extra = model.diagnostics(model.collate(valid[:batch_size]))
        log(event="valid", valid_loss=score, **extra)
        if score < state.best_valid:
            state.best_valid, state.best_step, state.bad_evals = score, state.step, 0
            if keep_best:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if job.is_main:
                    save_weights(run_dir, model)
        else:
            state.bad_evals += 1
        return score

    log(event="resume" if resume else "start", options=opts, steps=steps, seed=seed,
        world_size=job.world_size, device=str(model_device(model)))
    started = time.perf_counter()
    bar = tqdm(total=steps, initial=state.step, disable=not progress or not job.is_main, desc=f"fit {model.name}",
               unit="step", dynamic_ncols=True)
    model.train()
    running, last_valid = None, None
    try:
        while state.step < steps:
            idx = order[state.position:state.position + batch_size].tolist()
            batch = model.collate(job.shard([train[i] for i in idx]))   # this process's slice of the global batch
            job.reseed_step(loss_gen, seed, state.step)
            model.on_train_step(state.step, steps)
            if getattr(optimizer, "takes_closure", False):     # nag, hf: probseq.optim.training
                loss = closure_step(optimizer, model, batch, generator=loss_gen, opts=opts)
            else:
                # scaled: this process's share of the global batch's loss; loss: the global batch's
                scaled, loss = job.pool_loss(model.loss(batch, generator=loss_gen), batch.n_frames)
                if not torch.isfinite(loss):
                    raise UserError(
                        f"training diverged at step {state.step} (the loss is {float(loss.detach())}); "
                        "try a smaller learning rate (--set lr=...)"
                    )
                optimizer.zero_grad(set_to_none=True)
                scaled.backward()
                job.sum_gradients(model.parameters())
                if float(opts["clip"]) > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(opts["clip"]))
                optimizer.step()
            scheduler.step()
            state.step += 1
            state.position += batch_size
            if state.position >= len(train):
                state.epoch += 1
                state.position = 0
                epoch_gen_state = order_gen.get_state()
                order = torch.randperm(len(train), generator=order_gen)
            value = float(loss.detach())
            running = value if running is None else 0.95 * running + 0.05 * value
            bar.update(1)
            if state.step % int(opts["log_every"]) == 0:
                log(event="train", loss=value, lr=scheduler.get_last_lr()[0])
            if state.step % eval_every == 0 or state.step == steps:
                last_valid = validate()
                if (last_valid is not None and int(opts["patience"]) > 0
                        and state.bad_evals >= int(opts["patience"])):
                    state.stopped_early = True
            bar.set_postfix(loss=f"{running:.4f}",
                            **({} if last_valid is None else {"valid": f"{last_valid:.4f}"}))
            if state.step % int(opts["checkpoint_every"]) == 0 or state.step == steps or state.stopped_early:
                checkpoint()
            if state.stopped_early:
                log(event="early_stop", best_step=state.best_step, best_valid=state.best_valid)
                break
    except KeyboardInterrupt:
        checkpoint()
        log(event="interrupted")
        raise
    finally:
        bar.close()
    if not keep_best:
        if job.is_main:
            save_weights(run_dir, model)   # keep=last: the final weights are the result
    elif best_state is not None:
        model.load_state_dict(best_state)
    elif state.best_step >= 0:         # resumed run: the best weights are on disk
        model.load_state_dict(safe_load(run_dir / "model.pt")["state_dict"])
    elif job.is_main:
        save_weights(run_dir, model)   # no validation split: the final weights are the result
    wall = time.perf_counter() - started
    log(event="end", wall_s=wall, best_step=state.best_step,
        best_valid=None if math.isinf(state.best_valid) else state.best_valid)
    if log_file is not None:
        log_file.close()
    return FitSummary(state.step, state.step / per_epoch,
                      None if math.isinf(state.best_valid) else state.best_valid,
                      None if state.best_step < 0 else state.best_step, state.stopped_early, wall)
