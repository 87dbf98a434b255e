"""The trainer: one object holding a run's state, with one method per stage of the fit loop.

:func:`probseq.train.fit.fit` is the loop written out with these stages (what the options do is
described there)::

    trainer = Trainer(model, dataset, run_dir, steps=..., options=...)
    trainer.set_up()                  # or trainer.resume(): False when the run is already over
    with trainer.session():           # opens log.jsonl and the progress bar; closes them whatever happens
        if trainer.start_validation_due():
            trainer.validate()        # validate_at_start: step 0, the starting weights
        while not trainer.finished():
            trainer.step(trainer.next_batch())
            if trainer.validation_due():
                trainer.validate()
            stop = trainer.should_stop()
            if stop or trainer.checkpoint_due():
                trainer.checkpoint()
            if stop:
                break
        summary = trainer.finish()

The state lives in the object: the model, its optimiser and precision policy, the generator
handed to ``model.loss``, :class:`Progress` (step, epoch, position in the data order, elapsed time,
plateau state, why training stopped), the epoch's :class:`~probseq.train.data_order.EpochPlan`, the
weight average, the best weights, the time spent validating
(:class:`~probseq.train.validation_budget.ValidationTime`) and the divergence watch
(:class:`~probseq.train.divergence.DivergenceWatch`). Everything a resumed run needs to continue
exactly goes into ``checkpoint.pt``; the clock is injected (``clock=``) so that tests can drive
the time-based rules (the ``minutes`` budget, ``valid_budget``) with a fake one.

The order of the calls inside each stage is the order of the random draws, so it is part of the
contract that a resumed run repeats an uninterrupted one bit for bit.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from probseq import parallel
from probseq.device import generator_for, model_device, resolve_device
from probseq.errors import UserError
from probseq.evaluate.chunking import validation_totals
from probseq.optim.training import CLOSURE_OPTIMIZERS, closure_step, initialise, make_closure_optimizer
from probseq.precision import TrainingPrecision, upcast
from probseq.train.averaging import WeightAverage
from probseq.train.checkpoint import atomic_save, safe_load, save_weights
from probseq.train.data_order import EpochPlan, check_plan_options, fresh_examples
from probseq.train.divergence import DivergenceWatch, TrainingDivergedWarning, absurd_loss
from probseq.train.options import NOMINAL_EPOCHS, training_options
from probseq.train.run_directory import check_budget
from probseq.train.schedules import PlateauState, step_factor
from probseq.train.streams import CarriedStates, StreamBatch, StreamPlan, choose_windows
from probseq.train.validation_budget import ValidationTime, validation_fits

__all__ = ["Trainer", "Progress", "FitSummary", "make_optimizer"]


@dataclass
class FitSummary:
    steps: int
    epochs: float
    best_valid: float | None
    best_step: int | None
    stopped_early: bool
    wall_s: float
    #: why training ended: ``steps``, ``patience``, ``lr_floor``, ``minutes`` (an interrupted run
    #: raises :class:`KeyboardInterrupt` instead of returning; its checkpoint says ``interrupted``)
    stop_reason: str = "steps"
    #: the learning rate of the last step
    final_lr: float | None = None
    #: the run's seconds (every session of a resumed run) outside validation, and in validation
    train_s: float = 0.0
    valid_s: float = 0.0
    #: the training or best validation loss was absurd (:mod:`probseq.train.divergence`)
    diverged: bool = False


@dataclass
class Progress:
    """The part of the training state that is not a tensor (saved in ``checkpoint.pt``).

    ``stop_reason`` is ``None`` while the run may go on; ``patience``, ``lr_floor`` and ``minutes``
    end it (a resume with a larger ``minutes`` budget lifts the last); ``interrupted`` marks a
    checkpoint written on Ctrl-C, which ``--resume`` clears and continues.
    """

    step: int = 0
    epoch: int = 0
    position: int = 0
    elapsed_s: float = 0.0
    stop_reason: str | None = None
    plateau: PlateauState = field(default_factory=PlateauState)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Progress":
        d = dict(d)
        return cls(**{**d, "plateau": PlateauState(**d.get("plateau", {}))})


def make_optimizer(model, opts: dict[str, Any]):
    """The optimiser ``opts["optimizer"]`` names, over the model's trainable parameters."""
    if opts["optimizer"] in CLOSURE_OPTIMIZERS:
        return make_closure_optimizer(model, opts)
    params = [p for p in model.parameters() if p.requires_grad]
    if opts["optimizer"] == "adam":
        return torch.optim.Adam(params, lr=float(opts["lr"]), weight_decay=float(opts["weight_decay"]))
    return torch.optim.SGD(params, lr=float(opts["lr"]), momentum=float(opts["momentum"]),
                           weight_decay=float(opts["weight_decay"]))


def _finite(x: float) -> float | None:
    return None if math.isinf(x) else x


class Trainer:
    """A run of :func:`probseq.train.fit.fit`, stage by stage (see the module docstring).

    The constructor checks the options and builds the optimiser; it reads and writes no file
    other than creating ``run_dir``. Arguments are those of :func:`~probseq.train.fit.fit`, plus
    ``clock``: seconds as a float, :func:`time.perf_counter` by default.
    """

    def __init__(self, model, dataset, run_dir: str | Path, *, steps: int | None = None,
                 epochs: float | None = None, minutes: float | None = None, seed: int = 0,
                 options: dict[str, Any] | None = None, progress: bool = True,
                 device: str | torch.device | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.opts = opts = training_options(model, options)
        self.job = job = parallel.current()   # torchrun: this process's rank (one process: rank 0 of 1)
        # train_chunk=auto and carry_state: windows of long sequences, carried or not (probseq.train.streams)
        self.windows = choose_windows(model, opts, dataset.split("train"), batch_size=int(opts["batch_size"]),
                                      distributed=job.enabled)
        opts["train_chunk"], opts["carry_state"] = self.windows.chunk, self.windows.carry
        check_plan_options(opts, dataset)
        if device is not None:
            model.to(resolve_device(device))
        if job.enabled and opts["optimizer"] in CLOSURE_OPTIMIZERS:
            raise UserError(f"optimizer {opts['optimizer']} trains in one process; start it without torchrun")
        check_budget(steps, epochs, minutes)     # positive and finite (probseq.train.run_directory)
        self.model, self.dataset, self.seed, self.clock = model, dataset, seed, clock
        self.train = dataset.split("train")
        self.valid = dataset.splits.get("valid") or []
        self.batch_size = int(opts["batch_size"]) * job.world_size   # the global batch: per process x processes
        self.progress = Progress()
        self.per_epoch = self._epoch_length(self._plan_for(0))
        if steps is None and epochs is not None:
            steps = max(1, round(epochs * self.per_epoch))
        if steps is None and (not self.valid or opts["lr_schedule"] == "linear"):
            steps = NOMINAL_EPOCHS * self.per_epoch
        if steps is not None and steps < 1:
            raise UserError(f"the number of training steps must be positive, got {steps}")
        self.steps = steps
        self.total_for_schedules = steps or NOMINAL_EPOCHS * self.per_epoch
        self.minutes = minutes
        self.budget_s = None if minutes is None else 60.0 * float(minutes)
        self.eval_every = int(opts["eval_every"])
        self.valid_budget = float(opts["valid_budget"])
        # a schedule that decays to 0 at the last step is a fixed-length recipe (the thesis presets):
        # validation only selects weights; it never decays the rate or stops the run early
        self.fixed_length = opts["lr_schedule"] == "linear"
        self.base_lr, self.lr_decay = float(opts["lr"]), float(opts["lr_decay"])
        self.keep_best = opts["keep"] == "best"
        self.optimizer = make_optimizer(model, opts)
        self.precision = TrainingPrecision(opts["precision"], model_device(model))   # fp32: plain steps
        self.loss_gen = generator_for(model, seed + 1)
        self.checkpoint_path = self.run_dir / "checkpoint.pt"
        self.show_progress = progress
        self.averaged: WeightAverage | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.validation_time = ValidationTime()
        self.divergence = DivergenceWatch()
        self.plan: EpochPlan | StreamPlan | None = None
        self.carried = CarriedStates() if self.windows.carry else None   # truncated BPTT's lane states
        self.resumed = False
        # per-step flags and display
        self.lr = self.base_lr
        self.last_valid: float | None = None
        self.running_loss: float | None = None
        self._end_of_epoch = self._out_of_time = self._validated = False
        self._checkpoint: dict[str, Any] | None = None
        self._log_file = None
        self._bar = None
        self._started, self._spent_before = 0.0, 0.0

    # ------------------------------------------------------------------ set-up
    def set_up(self) -> None:
        """A new run: seed torch, let the model look at the data, initialise the weights."""
        torch.manual_seed(self.seed)
        self.model.prepare(self.dataset)
        initialise(self.model, self.opts, self.seed)        # init=sparse|echo_state (probseq.optim.init)

    def resume(self) -> bool:
        """Continue from ``checkpoint.pt``; ``False`` when that run is already over (nothing to train).

        A checkpoint that stopped on its ``minutes`` budget continues under a larger (or no)
        budget; one written on an interruption always continues.
        """
        ckpt = safe_load(self.checkpoint_path)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.loss_gen.set_state(ckpt["loss_generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            self.progress = Progress.from_dict(ckpt["progress"])
            self.validation_time = ValidationTime.from_dict(ckpt.get("validation_time"))
            watch = ckpt.get("divergence") or {}
            self.divergence.reference, self.divergence.warned_at = watch.get("reference"), watch.get("warned_at")
            if self.carried is not None:
                self.carried.load_state_dict(ckpt.get("carried", {}), self._window_state_template())
        except (KeyError, RuntimeError, TypeError, ValueError):
            raise UserError(f"{self.checkpoint_path} does not match this run; cannot resume") from None
        state = self.progress
        if state.stop_reason == "interrupted":
            state.stop_reason = None
        if state.stop_reason == "minutes" and (self.budget_s is None or state.elapsed_s < self.budget_s):
            state.stop_reason = None          # resumed with a larger (or no) budget
        self.resumed, self._checkpoint = True, ckpt
        return not (state.stop_reason is not None or (self.steps is not None and state.step >= self.steps))

    @contextlib.contextmanager
    def session(self) -> Iterator["Trainer"]:
        """Start training (log, progress bar, clock); close the log and the bar however it ends."""
        try:
            self._begin()
            yield self
        finally:
            if self._bar is not None:
                self._bar.close()
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None

    def _begin(self) -> None:
        model, job, opts = self.model, self.job, self.opts
        job.broadcast_module(model)          # every process starts from rank 0's weights
        if float(opts["average"]) > 0:
            self.averaged = WeightAverage(model, float(opts["average"]))
            if self._checkpoint is not None and "averaged" in self._checkpoint:
                self.averaged.load_state_dict(self._checkpoint["averaged"])   # else: a run without it starts it now
        self._checkpoint = None
        self.plan = self._plan_for(self.progress.epoch)
        self._log_file = open(self.run_dir / "log.jsonl", "a") if job.is_main else None
        self.log(event="resume" if self.resumed else "start", options=opts, steps=self.steps,
                 minutes=self.minutes, seed=self.seed, world_size=job.world_size, device=str(model_device(model)))
        if self.windows.notice is not None:
            self.log(event="windows", message=self.windows.notice)
            if job.is_main and self.show_progress:
                print(f"probseq: {self.windows.notice}", file=sys.stderr)
        self._started, self._spent_before = self.clock(), self.progress.elapsed_s
        self._bar = tqdm(total=self.steps, initial=self.progress.step,
                         disable=not self.show_progress or not job.is_main, desc=f"fit {model.name}",
                         unit="step", dynamic_ncols=True)
        model.train()
        self.lr = self.current_lr()

    # ------------------------------------------------------------------ one step
    def finished(self) -> bool:
        """Every step of a run with a known length is done."""
        return self.steps is not None and self.progress.step >= self.steps

    def next_batch(self):
        """This process's slice of the next global batch, collated."""
        if self.plan is None:
            examples = fresh_examples(self.dataset, self.batch_size, seed=self.seed, step=self.progress.step)
        elif isinstance(self.plan, StreamPlan):      # carried state: one process, no sharding
            windows = self.plan.windows_at(self.progress.position // self.batch_size)
            return StreamBatch(self.model.collate([self.plan.materialise(w.piece) for w in windows]), windows)
        else:
            examples = self.plan.examples_at(self.progress.position, self.batch_size)
        return self.model.collate(self.job.shard(examples))

    def step(self, batch) -> float:
        """One optimisation step on ``batch``; returns the global batch's pooled loss.

        Raises:
            UserError: the loss is not finite (a finite but absurd one only warns, see
                :mod:`probseq.train.divergence`).
        """
        model, job, opts, state = self.model, self.job, self.opts, self.progress
        job.reseed_step(self.loss_gen, self.seed, state.step)
        model.on_train_step(state.step, self.total_for_schedules)
        self.lr = lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        if getattr(self.optimizer, "takes_closure", False):     # nag, hf: probseq.optim.training
            loss = closure_step(self.optimizer, model, batch, generator=self.loss_gen, opts=opts)
        else:
            # scaled: this process's share of the global batch's loss; loss: the global batch's
            with self.precision.autocast():       # precision=bf16|fp16 (probseq.precision)
                if isinstance(batch, StreamBatch):    # truncated BPTT: windows continue carried states
                    own_loss = self.carried.loss(model, batch, generator=self.loss_gen)
                    batch = batch.batch
                else:
                    own_loss = model.loss(batch, generator=self.loss_gen)
            scaled, loss = job.pool_loss(upcast(own_loss), batch.n_frames)
            if not torch.isfinite(loss):
                raise UserError(f"training diverged at step {state.step} (the loss is {float(loss.detach())}); "
                                "try a smaller learning rate (--set lr=...)")
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward(scaled)       # fp16: of the scaled loss
            job.sum_gradients(model.parameters())
            self.precision.unscale_(self.optimizer)    # fp16: clip the true gradients
            if float(opts["clip"]) > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(opts["clip"]))
            self.precision.step(self.optimizer)        # fp16: skipped when the gradients overflowed
        if self.averaged is not None:
            self.averaged.update(model)
        state.step += 1
        state.position += self.batch_size
        self._end_of_epoch = state.position >= (len(self.train) if self.plan is None else len(self.plan))
        if self._end_of_epoch:
            state.epoch += 1
            state.position = 0
            self.plan = self._plan_for(state.epoch)
        value = float(loss.detach())
        self.running_loss = value if self.running_loss is None else 0.95 * self.running_loss + 0.05 * value
        self._bar.update(1)
        if state.step % int(opts["log_every"]) == 0:
            self.log(event="train", loss=value, lr=lr, elapsed_s=round(self.elapsed(), 3))
        if math.isfinite(value):
            message = self.divergence.check(value, state.step, warn=job.is_main)
            if message is not None:
                self.log(event="divergence", loss=value, reference=self.divergence.reference, message=message)
        self._out_of_time = self.budget_s is not None and bool(job.broadcast_value(self.elapsed() >= self.budget_s))
        self._validated = False
        self._show()
        return value

    # ------------------------------------------------------------------ validation
    def start_validation_due(self) -> bool:
        """Whether to validate the starting weights before the first step (``validate_at_start``).

        Only a new run at step 0 with a validation split; the score competes for ``keep=best``
        and starts the plateau count like any other validation.
        """
        return bool(self.opts["validate_at_start"]) and bool(self.valid) and self.progress.step == 0

    def validation_due(self) -> bool:
        """Whether the step just taken ends with a validation.

        Always at the last step and when the ``minutes`` budget is spent; with ``eval_every=N``
        every ``N`` steps; with ``eval_every=0`` at an epoch end that ``valid_budget`` allows
        (:mod:`probseq.train.validation_budget`; the decision is rank 0's, so that every process
        validates together).
        """
        last_step = self.finished()
        if last_step or self._out_of_time:
            return True
        if self.eval_every:
            return self.progress.step % self.eval_every == 0
        if not self._end_of_epoch or not self.valid:
            return self._end_of_epoch
        fits = validation_fits(self.valid_budget, self.validation_time, self.elapsed())
        if not bool(self.job.broadcast_value(fits)):
            self.validation_time.skipped += 1
            return False
        return True

    def validate(self) -> float | None:
        """Score the validation split by the model's own criterion; keep the best weights.

        Returns the score per frame (``None`` without a validation split). Updates the plateau state
        (and so the learning rate and the stop rules) and, with ``keep=best``, ``model.pt``.

        Raises:
            UserError: the score is not finite (training stops; the best weights so far are kept).
        """
        if not self.valid:
            return None
        model, job, state = self.model, self.job, self.progress
        started = self.clock()
        # every process scores its share of the validation batches; the sums are all-reduced, so
        # every process holds the same score and takes the same decisions
        with self.averaged_weights():
            total, frames = job.sum_values(*validation_totals(model, self.valid, batch_size=self.batch_size,
                                                              part=(job.rank, job.world_size)))
        score = total / max(frames, 1.0)
        if not math.isfinite(score):   # never counted as "no improvement": stop, keep what was good
            self.log(event="stop", reason="non-finite validation loss", valid_loss=str(score))
            kept = (f"model.pt keeps the best weights (step {state.plateau.best_step})"
                    if self.keep_best and state.plateau.best_step >= 0 else
                    "the last checkpoint before it is kept (continue from it with --resume)")
            raise UserError(f"the validation loss became {score} at step {state.step}, so training "
                            f"stopped; {kept}")
        extra = {}
        if hasattr(model, "diagnostics") and job.is_main:
            with torch.no_grad(), self.averaged_weights():
                extra = model.diagnostics(model.collate(self.valid[:self.batch_size]))
        decays = state.plateau.decays
        improved = state.plateau.update(score, state.step, min_delta=float(self.opts["min_delta"]),
                                        decay_patience=0 if self.fixed_length else int(self.opts["decay_patience"]))
        if improved and self.keep_best:
            with self.averaged_weights():
                self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if job.is_main:
                    save_weights(self.run_dir, model)
        self.validation_time.record(self.clock() - started)
        elapsed = self.elapsed()
        self.log(event="valid", valid_loss=score, elapsed_s=round(elapsed, 1),
                 **self.validation_time.split(elapsed), **extra)
        if state.plateau.decays > decays:
            self.log(event="lr_decay", lr=self.base_lr * state.plateau.scale(self.lr_decay))
        self.last_valid, self._validated = score, True
        self._show()
        return score

    def averaged_weights(self):
        """A block that sees the averaged weights when ``average`` is on (validation, keep=best)."""
        return contextlib.nullcontext() if self.averaged is None else self.averaged.applied(self.model)

    # ------------------------------------------------------------------ stop and checkpoint
    def should_stop(self) -> bool:
        """Decide, after a step (and its validation), whether training ends here; sets ``stop_reason``.

        After a validation: ``patience`` validations without improvement, or plateau decay below
        ``min_lr`` (never under the fixed-length linear schedule); at any step: the ``minutes``
        budget spent.
        """
        state = self.progress
        if self._validated and not self.fixed_length:
            state.stop_reason = state.plateau.should_stop(
                patience=int(self.opts["patience"]), lr=self.base_lr, lr_decay=self.lr_decay,
                min_lr=float(self.opts["min_lr"]))
        if state.stop_reason is None and self._out_of_time:
            state.stop_reason = "minutes"
        return state.stop_reason is not None

    def checkpoint_due(self) -> bool:
        """Every ``checkpoint_every`` steps, at the last step and when training stops."""
        return (self.progress.step % int(self.opts["checkpoint_every"]) == 0 or self.finished()
                or self.progress.stop_reason is not None)

    def checkpoint(self) -> None:
        """Write ``checkpoint.pt`` atomically (rank 0): everything :meth:`resume` reads."""
        self.progress.elapsed_s = self.elapsed()
        if not self.job.is_main:
            return
        atomic_save({
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "loss_generator": self.loss_gen.get_state(), "torch_rng": torch.get_rng_state(),
            "progress": asdict(self.progress),
            "validation_time": self.validation_time.state_dict(),
            "divergence": {"reference": self.divergence.reference, "warned_at": self.divergence.warned_at},
            **({} if self.averaged is None else {"averaged": self.averaged.state_dict()}),
            **({} if self.carried is None else {"carried": self.carried.state_dict()}),
        }, self.checkpoint_path)

    def interrupt(self) -> None:
        """On Ctrl-C: a checkpoint marked ``interrupted`` (which ``--resume`` continues) and a log line."""
        self.progress.stop_reason = "interrupted"
        self.checkpoint()
        self.log(event="interrupted", reason="interrupted")

    # ------------------------------------------------------------------ the end
    def finish(self) -> FitSummary:
        """Leave the kept weights in the model (and ``model.pt``), log the end, return the summary.

        ``keep=best`` with a validation split: the best validation weights; otherwise the final
        weights (averaged, when ``average`` is on). Warns when the best validation loss is absurd
        (:mod:`probseq.train.divergence`), so a diverged run never ends in silence.
        """
        model, job, state = self.model, self.job, self.progress
        best = _finite(state.plateau.best)
        if state.stop_reason is not None:
            self.log(event="stop", reason=state.stop_reason, best_step=state.plateau.best_step, best_valid=best)
        if self.keep_best and self.best_state is not None:
            model.load_state_dict(self.best_state)
        elif self.keep_best and state.plateau.best_step >= 0:  # resumed run: the best weights are on disk
            model.load_state_dict(safe_load(self.run_dir / "model.pt")["state_dict"])
        else:       # keep=last, or no validation split: the final (averaged, if on) weights are the result
            if self.averaged is not None:
                self.averaged.copy_to(model)
            if job.is_main:
                save_weights(self.run_dir, model)
        if absurd_loss(best):
            message = (f"the best validation loss is {best:.4g} per frame: training diverged; "
                       "try a smaller learning rate (--set lr=...)")
            if job.is_main:
                warnings.warn(message, TrainingDivergedWarning, stacklevel=3)
            self.log(event="divergence", valid_loss=best, message=message)
        wall = self.clock() - self._started
        elapsed = self.elapsed()
        times = self.validation_time.split(elapsed)
        self.log(event="end", wall_s=wall, elapsed_s=round(elapsed, 1), best_step=state.plateau.best_step,
                 best_valid=best, **times, validations=self.validation_time.validations,
                 valid_skipped=self.validation_time.skipped)
        return self.summary(wall, self.lr)

    def summary(self, wall: float = 0.0, lr: float | None = None) -> FitSummary:
        """The run so far as a :class:`FitSummary` (``lr``: the last step's rate; default the base rate)."""
        state, best = self.progress, self.progress.plateau
        epochs = state.epoch + state.position / self.batch_size / max(self.per_epoch, 1)
        times = self.validation_time.split(self.elapsed() if self._bar is not None else state.elapsed_s)
        return FitSummary(state.step, epochs, _finite(best.best),
                          None if best.best_step < 0 else best.best_step,
                          state.stop_reason in ("patience", "lr_floor"), wall,
                          state.stop_reason or "steps", self.base_lr if lr is None else lr,
                          train_s=times["train_s"], valid_s=times["valid_s"],
                          diverged=self.divergence.warned_at is not None or absurd_loss(_finite(best.best)))

    # ------------------------------------------------------------------ helpers
    def elapsed(self) -> float:
        """The run's seconds so far, the sessions before a resume included."""
        return self._spent_before + self.clock() - self._started

    def current_lr(self) -> float:
        """The step schedule's rate at this step, times the plateau decays so far."""
        return (self.base_lr * step_factor(self.opts["lr_schedule"], self.progress.step, self.steps)
                * self.progress.plateau.scale(self.lr_decay))

    def log(self, **event) -> None:
        """One line of ``log.jsonl`` (rank 0 only), stamped with the step."""
        if self._log_file is None:
            return
        self._log_file.write(json.dumps({"step": self.progress.step, **event}) + "\n")
        self._log_file.flush()

    def _show(self) -> None:
        if self._bar is not None and self.running_loss is not None:
            self._bar.set_postfix(loss=f"{self.running_loss:.4f}", lr=f"{self.lr:.2g}",
                                  **({} if self.last_valid is None else {"valid": f"{self.last_valid:.4f}"}))

    def _plan_for(self, epoch: int) -> EpochPlan | None:
        if self.opts["fresh"]:
            return None
        if self.windows.carry:
            return StreamPlan(self.train, seed=self.seed, epoch=epoch, lanes=self.batch_size,
                              window=self.windows.chunk, transpose=int(self.opts["transpose"]))
        return EpochPlan(self.train, seed=self.seed, epoch=epoch, train_chunk=int(self.opts["train_chunk"]),
                         transpose=int(self.opts["transpose"]))

    def _window_state_template(self):
        """A window state of the model (its class, for restoring the carried states)."""
        with torch.no_grad():
            return self.model.window_state(self.model.collate([self.train[0][:1]]))

    def _epoch_length(self, plan: EpochPlan | None) -> int:
        return math.ceil((len(self.train) if plan is None else len(plan)) / self.batch_size)
