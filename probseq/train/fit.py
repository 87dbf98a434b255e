"""The fit loop shared by every model.

Minibatch training of ``model.loss`` (the pooled NLL per frame for exact models, a CD surrogate
for RBMs, the negative ELBO for latent-variable models) with:

* Adam by default (or SGD with momentum, Nesterov's accelerated gradient or Hessian-free:
  :mod:`probseq.optim`), a step schedule (constant, or linear decay to zero) and learning-rate
  decay on plateau (:mod:`probseq.train.schedules`);
* under ``torchrun``, one model trained by all processes, each on its slice of every global batch
  (:mod:`probseq.parallel`);
* gradient-norm clipping;
* optionally, reduced precision (``precision=bf16|fp16``: the forward pass under
  :func:`torch.autocast`, fp16 with a gradient scaler; likelihood sums and dynamic programs stay
  float32, :mod:`probseq.precision`);
* optionally, an exponential moving average of the weights (``average=d``: after every step
  ``theta_avg <- d theta_avg + (1 - d) theta``, PyTorch's EMA rule, :mod:`probseq.train.averaging`;
  Polyak & Juditsky 1992), which is then what is validated, kept and saved;
* validation by the model's own criterion (:meth:`~probseq.models.base.SequenceModel.validation_loss`)
  every ``eval_every`` steps (0: at the end of every epoch), keeping the best weights in
  ``model.pt`` (``keep=last`` keeps the final weights instead, for models whose cheap validation
  score is only a proxy of the likelihood);
* stopping when the first of these happens: ``steps`` (or ``epochs``) done; ``patience``
  validations without improvement; plateau decay took the learning rate below ``min_lr``; the
  wall-clock budget ``minutes`` spent (then one last validation, so the budget never discards the
  progress since the previous one). With neither ``steps`` nor ``epochs`` a run trains until
  validation stops improving — except without a validation split, or with the ``linear`` schedule
  (which needs a last step), where it trains for 10 epochs. The linear schedule is a fixed-length
  recipe: under it validation selects weights but never decays the rate or stops the run early;
* what each step trains on comes from :mod:`probseq.train.data_order`: shuffled whole sequences,
  random windows of long ones (``train_chunk``), transposed piano rolls (``transpose``), or freshly
  generated sequences (``fresh``), all a pure function of the seed and the position;
* checkpoints written atomically every ``checkpoint_every`` steps and at the end, holding the
  model, the optimiser, the position in the data order, the plateau state, the elapsed time and
  every random generator, so that ``--resume`` after a crash continues exactly where the
  checkpoint left off;
* a tqdm progress bar showing the loss, and a JSON-lines log (``log.jsonl``).

A run with the same seed, data and options repeats exactly (on the same machine and thread count).

Models whose loss needs a schedule over training (KL annealing, the thesis CD-k switch) get
``on_train_step(step, total)``; ``total`` is the number of steps when it is known and a nominal
10 epochs otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from probseq.device import generator_for, model_device, resolve_device
from probseq.errors import UserError
from probseq.evaluate.chunking import validation_totals
from probseq.models.registry import parse_option_value
from probseq import parallel
from probseq.train.checkpoint import atomic_save, safe_load, save_weights
from probseq.precision import TrainingPrecision, check_precision, upcast
from probseq.optim.training import (CLOSURE_OPTIMIZERS, OPTIMIZER_OPTIONS, check_optimizer_options,
                                    closure_step, initialise, make_closure_optimizer)
from probseq.train.averaging import WeightAverage
from probseq.train.data_order import EpochPlan, check_plan_options, fresh_examples
from probseq.train.schedules import LR_SCHEDULES, PlateauState, step_factor

__all__ = ["TRAINING_DEFAULTS", "training_options", "fit", "FitSummary", "NOMINAL_EPOCHS"]

#: epochs a run trains for when it cannot tell convergence (no validation split, linear schedule)
NOMINAL_EPOCHS = 10

#: trainer options; a model's ``training_defaults`` override them, ``--set key=value`` overrides both
TRAINING_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "batch_size": 32,
    "clip": 5.0,             # max gradient norm; 0 disables clipping
    "optimizer": "adam",     # adam | sgd | nag | hf (the last two: probseq.optim)
    "momentum": 0.9,         # for sgd
    "weight_decay": 0.0,
    "lr_schedule": "constant",  # constant | linear (decay to 0 at the last step)
    "lr_decay": 0.5,         # factor applied after decay_patience validations without improvement
    "decay_patience": 3,     # 0 = never decay on plateau
    "min_lr": 0.0,           # stop when plateau decay takes the rate below this (0: lr * lr_decay**6)
    "min_delta": 1e-4,       # a validation score must beat the best by this much to count
    "eval_every": 0,         # steps between validations; 0 = at the end of every epoch
    "patience": 10,          # validations without improvement before stopping; 0 = never stop early
    "keep": "best",          # best (best-validation weights) | last (the weights of the last step)
    "train_chunk": 0,        # train on windows of this many frames (0 = whole sequences)
    "transpose": 0,          # piano rolls: shift each piece by up to this many semitones
    "fresh": False,          # generated datasets: new training sequences on every step
    "checkpoint_every": 100,
    "log_every": 10,
    "precision": "fp32",     # fp32 | bf16 | fp16: autocast of the training forward pass (probseq.precision)
    "average": 0.0,          # decay d of an exponential moving average of the weights (0 = off)
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
    opts["precision"] = check_precision(opts["precision"])
    check_optimizer_options(opts)
    if opts["lr_schedule"] not in LR_SCHEDULES:
        raise UserError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {opts['lr_schedule']!r}")
    if int(opts["batch_size"]) < 1 or float(opts["lr"]) <= 0:
        raise UserError("batch_size and lr must be positive")
    if not 0 < float(opts["lr_decay"]) <= 1:
        raise UserError(f"lr_decay must lie in (0, 1] (1 disables plateau decay), got {opts['lr_decay']}")
    if not 0 <= float(opts["average"]) < 1:
        raise UserError(f"average is the decay of the weight average and must lie in [0, 1) "
                        f"(0 disables it), got {opts['average']}")
    for key in ("decay_patience", "patience", "eval_every", "train_chunk", "transpose"):
        if int(opts[key]) < 0:
            raise UserError(f"{key} must be non-negative, got {opts[key]}")
    if int(opts["checkpoint_every"]) < 1 or int(opts["log_every"]) < 1:
        raise UserError("checkpoint_every and log_every must be positive")
    return opts


@dataclass
class FitSummary:
    steps: int
    epochs: float
    best_valid: float | None
    best_step: int | None
    stopped_early: bool
    wall_s: float
    #: why training ended: ``steps``, ``patience``, ``lr_floor``, ``minutes`` (or ``interrupted``)
    stop_reason: str = "steps"
    #: the learning rate of the last step
    final_lr: float | None = None


@dataclass
class _Progress:
    """The part of the training state that is not a tensor (saved in ``checkpoint.pt``)."""

    step: int = 0
    epoch: int = 0
    position: int = 0
    elapsed_s: float = 0.0
    stop_reason: str | None = None
    plateau: PlateauState = field(default_factory=PlateauState)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "_Progress":
        d = dict(d)
        return cls(**{**d, "plateau": PlateauState(**d.get("plateau", {}))})


def _make_optimizer(model, opts):
    if opts["optimizer"] in CLOSURE_OPTIMIZERS:
        return make_closure_optimizer(model, opts)
    params = [p for p in model.parameters() if p.requires_grad]
    if opts["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=float(opts["lr"]), weight_decay=float(opts["weight_decay"]))
    return torch.optim.SGD(params, lr=float(opts["lr"]), momentum=float(opts["momentum"]),
                           weight_decay=float(opts["weight_decay"]))


def fit(model, dataset, run_dir: str | Path, *, steps: int | None = None, epochs: float | None = None,
        minutes: float | None = None, seed: int = 0, options: dict[str, Any] | None = None,
        resume: bool = False, progress: bool = True, device: str | torch.device | None = None) -> FitSummary:
    """Train ``model`` on ``dataset.splits["train"]``, validating on ``"valid"`` when present.

    Args:
        run_dir: where ``model.pt``, ``checkpoint.pt`` and ``log.jsonl`` go (``run.json`` is the
            caller's; :func:`probseq.cli` writes it).
        steps / epochs: training length (optimisation steps, or passes over the training set);
            neither: until validation stops improving (see the module docstring).
        minutes: wall-clock budget for training, validation included (resumed runs count the
            time already spent).
        seed: seeds the data order and the generator handed to ``model.loss``.
        options: training options (see :data:`TRAINING_DEFAULTS`).
        resume: continue from ``run_dir/checkpoint.pt``.
        device: move the model there first (``"auto"``, ``"cpu"``, ``"cuda:1"``...; ``None``: where it is).

    Under ``torchrun`` (an initialised process group) every process calls ``fit`` and they train
    one model together: ``batch_size`` is per process (:mod:`probseq.parallel`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    opts = training_options(model, options)
    check_plan_options(opts, dataset)
    job = parallel.current()             # torchrun: this process's rank in the job (one process: rank 0 of 1)
    if device is not None:
        model.to(resolve_device(device))
    if job.enabled and opts["optimizer"] in CLOSURE_OPTIMIZERS:
        raise UserError(f"optimizer {opts['optimizer']} trains in one process; start it without torchrun")
    if minutes is not None and not minutes > 0:
        raise UserError(f"the time budget must be positive, got {minutes} minutes")
    train = dataset.split("train")
    valid = dataset.splits.get("valid") or []
    batch_size = int(opts["batch_size"]) * job.world_size   # the global batch: per process x processes
    fresh = bool(opts["fresh"])

    def plan_for(epoch: int) -> EpochPlan | None:
        if fresh:
            return None
        return EpochPlan(train, seed=seed, epoch=epoch, train_chunk=int(opts["train_chunk"]),
                         transpose=int(opts["transpose"]))

    def epoch_length(plan: EpochPlan | None) -> int:
        return math.ceil((len(train) if plan is None else len(plan)) / batch_size)

    state = _Progress()
    per_epoch = epoch_length(plan_for(0))
    if steps is None and epochs is not None:
        steps = max(1, round(epochs * per_epoch))
    if steps is None and (not valid or opts["lr_schedule"] == "linear"):
        steps = NOMINAL_EPOCHS * per_epoch
    if steps is not None and steps < 1:
        raise UserError(f"the number of training steps must be positive, got {steps}")
    total_for_schedules = steps or NOMINAL_EPOCHS * per_epoch
    budget_s = None if minutes is None else 60.0 * float(minutes)
    eval_every = int(opts["eval_every"])
    # a schedule that decays to 0 at the last step is a fixed-length recipe (the thesis presets):
    # validation only selects weights; it never decays the rate or stops the run early
    fixed_length = opts["lr_schedule"] == "linear"
    base_lr, lr_decay = float(opts["lr"]), float(opts["lr_decay"])
    optimizer = _make_optimizer(model, opts)
    precision = TrainingPrecision(opts["precision"], model_device(model))   # fp32: plain steps
    loss_gen = generator_for(model, seed + 1)
    checkpoint_path = run_dir / "checkpoint.pt"
    averaged = None

    if resume:
        ckpt = safe_load(checkpoint_path)
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            loss_gen.set_state(ckpt["loss_generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            state = _Progress.from_dict(ckpt["progress"])
        except (KeyError, RuntimeError, TypeError, ValueError):
            raise UserError(f"{checkpoint_path} does not match this run; cannot resume") from None
        if state.stop_reason == "minutes" and (budget_s is None or state.elapsed_s < budget_s):
            state.stop_reason = None          # resumed with a larger (or no) budget
        if state.stop_reason is not None or (steps is not None and state.step >= steps):
            return _summary(state, per_epoch, batch_size, 0.0, base_lr)
    else:
        torch.manual_seed(seed)
        model.prepare(dataset)
        initialise(model, opts, seed)        # init=sparse|echo_state (probseq.optim.init)

    job.broadcast_module(model)          # every process starts from rank 0's weights
    if float(opts["average"]) > 0:
        averaged = WeightAverage(model, float(opts["average"]))
        if resume and "averaged" in ckpt:     # a checkpoint from a run without it: start it now
            averaged.load_state_dict(ckpt["averaged"])
    plan = plan_for(state.epoch)
    log_file = open(run_dir / "log.jsonl", "a") if job.is_main else None
    best_state = None
    keep_best = opts["keep"] == "best"

    def log(**event):
        if log_file is None:          # only rank 0 writes the log
            return
        log_file.write(json.dumps({"step": state.step, **event}) + "\n")
        log_file.flush()

    def current_lr() -> float:
        return (base_lr * step_factor(opts["lr_schedule"], state.step, steps)
                * state.plateau.scale(lr_decay))

    def checkpoint():
        state.elapsed_s = elapsed()
        if not job.is_main:
            return
        atomic_save({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "loss_generator": loss_gen.get_state(), "torch_rng": torch.get_rng_state(),
            "progress": asdict(state),
            **({} if averaged is None else {"averaged": averaged.state_dict()}),
        }, checkpoint_path)

    def averaged_weights():
        """The block sees the averaged weights when ``average`` is on (validation, keep=best)."""
        return contextlib.nullcontext() if averaged is None else averaged.applied(model)

    def validate():
        nonlocal best_state
        if not valid:
            return None
        # every process scores its share of the validation batches; the sums are all-reduced, so
        # every process holds the same score and takes the same decisions
        with averaged_weights():
            total, frames = job.sum_values(*validation_totals(model, valid, batch_size=batch_size,
                                                              part=(job.rank, job.world_size)))
        score = total / max(frames, 1.0)
        if not math.isfinite(score):   # never counted as "no improvement": stop, keep what was good
            log(event="stop", reason="non-finite validation loss", valid_loss=str(score))
            kept = (f"model.pt keeps the best weights (step {state.plateau.best_step})"
                    if keep_best and state.plateau.best_step >= 0 else
                    "the last checkpoint before it is kept (continue from it with --resume)")
            raise UserError(f"the validation loss became {score} at step {state.step}, so training "
                            f"stopped; {kept}")
        extra = {}
        if hasattr(model, "diagnostics") and job.is_main:
            with torch.no_grad(), averaged_weights():
                extra = model.diagnostics(model.collate(valid[:batch_size]))
        decays = state.plateau.decays
        improved = state.plateau.update(score, state.step, min_delta=float(opts["min_delta"]),
                                        decay_patience=0 if fixed_length else int(opts["decay_patience"]))
        log(event="valid", valid_loss=score, elapsed_s=round(elapsed(), 1), **extra)
        if state.plateau.decays > decays:
            log(event="lr_decay", lr=base_lr * state.plateau.scale(lr_decay))
        if improved and keep_best:
            with averaged_weights():
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if job.is_main:
                    save_weights(run_dir, model)
        return score

    log(event="resume" if resume else "start", options=opts, steps=steps, minutes=minutes, seed=seed,
        world_size=job.world_size, device=str(model_device(model)))
    started, spent_before = time.perf_counter(), state.elapsed_s

    def elapsed() -> float:
        return spent_before + time.perf_counter() - started

    bar = tqdm(total=steps, initial=state.step, disable=not progress or not job.is_main, desc=f"fit {model.name}",
               unit="step", dynamic_ncols=True)
    model.train()
    running, last_valid, lr = None, None, current_lr()
    try:
        while steps is None or state.step < steps:
            if plan is None:
                examples = fresh_examples(dataset, batch_size, seed=seed, step=state.step)
            else:
                examples = plan.examples_at(state.position, batch_size)
            batch = model.collate(job.shard(examples))     # this process's slice of the global batch
            job.reseed_step(loss_gen, seed, state.step)
            model.on_train_step(state.step, total_for_schedules)
            lr = current_lr()
            for group in optimizer.param_groups:
                group["lr"] = lr
            if getattr(optimizer, "takes_closure", False):     # nag, hf: probseq.optim.training
                loss = closure_step(optimizer, model, batch, generator=loss_gen, opts=opts)
            else:
                # scaled: this process's share of the global batch's loss; loss: the global batch's
                with precision.autocast():       # precision=bf16|fp16 (probseq.precision)
                    own_loss = model.loss(batch, generator=loss_gen)
                scaled, loss = job.pool_loss(upcast(own_loss), batch.n_frames)
                if not torch.isfinite(loss):
                    raise UserError(
                        f"training diverged at step {state.step} (the loss is {float(loss.detach())}); "
                        "try a smaller learning rate (--set lr=...)"
                    )
                optimizer.zero_grad(set_to_none=True)
                precision.backward(scaled)       # fp16: of the scaled loss
                job.sum_gradients(model.parameters())
                precision.unscale_(optimizer)    # fp16: clip the true gradients
                if float(opts["clip"]) > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(opts["clip"]))
                precision.step(optimizer)        # fp16: skipped when the gradients overflowed
            if averaged is not None:
                averaged.update(model)
            state.step += 1
            state.position += batch_size
            end_of_epoch = state.position >= (len(train) if plan is None else len(plan))
            if end_of_epoch:
                state.epoch += 1
                state.position = 0
                plan = plan_for(state.epoch)
            value = float(loss.detach())
            running = value if running is None else 0.95 * running + 0.05 * value
            bar.update(1)
            if state.step % int(opts["log_every"]) == 0:
                log(event="train", loss=value, lr=lr, elapsed_s=round(elapsed(), 3))
            last_step = steps is not None and state.step >= steps
            out_of_time = budget_s is not None and bool(job.broadcast_value(elapsed() >= budget_s))
            if (end_of_epoch if eval_every == 0 else state.step % eval_every == 0) or last_step or out_of_time:
                last_valid = validate()
                if last_valid is not None and not fixed_length:
                    state.stop_reason = state.plateau.should_stop(
                        patience=int(opts["patience"]), lr=base_lr, lr_decay=lr_decay,
                        min_lr=float(opts["min_lr"]))
            if state.stop_reason is None and out_of_time:
                state.stop_reason = "minutes"
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.2g}",
                            **({} if last_valid is None else {"valid": f"{last_valid:.4f}"}))
            if (state.step % int(opts["checkpoint_every"]) == 0 or last_step
                    or state.stop_reason is not None):
                checkpoint()
            if state.stop_reason is not None:
                log(event="stop", reason=state.stop_reason, best_step=state.plateau.best_step,
                    best_valid=_finite(state.plateau.best))
                break
    except KeyboardInterrupt:
        checkpoint()
        log(event="interrupted")
        raise
    finally:
        bar.close()
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)
    elif keep_best and state.plateau.best_step >= 0:  # resumed run: the best weights are on disk
        model.load_state_dict(safe_load(run_dir / "model.pt")["state_dict"])
    else:       # keep=last, or no validation split: the final (averaged, if on) weights are the result
        if averaged is not None:
            averaged.copy_to(model)
        if job.is_main:
            save_weights(run_dir, model)
    wall = time.perf_counter() - started
    log(event="end", wall_s=wall, elapsed_s=round(elapsed(), 1), best_step=state.plateau.best_step,
        best_valid=_finite(state.plateau.best))
    if log_file is not None:
        log_file.close()
    return _summary(state, per_epoch, batch_size, wall, lr)


def _finite(x: float) -> float | None:
    return None if math.isinf(x) else x


def _summary(state: _Progress, per_epoch: int, batch_size: int, wall: float, lr: float | None) -> FitSummary:
    best = state.plateau
    epochs = state.epoch + state.position / batch_size / max(per_epoch, 1)
    return FitSummary(state.step, epochs, _finite(best.best),
                      None if best.best_step < 0 else best.best_step,
                      state.stop_reason in ("patience", "lr_floor"), wall,
                      state.stop_reason or "steps", lr)
