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
  every ``eval_every`` steps, or with ``eval_every=0`` (the default) at epoch ends while it takes at
  most the share ``valid_budget`` (default 0.1) of the run's time -- an epoch end whose validation
  would take it over is skipped; the first epoch end, the last step and the end of a ``minutes``
  budget always validate; ``valid_budget=1`` validates at every epoch end
  (:mod:`probseq.train.validation_budget`). The best weights are kept in ``model.pt``
  (``keep=last`` keeps the final weights instead, for models whose cheap validation score is only a
  proxy of the likelihood). With ``validate_at_start=true`` the weights as ``prepare`` left them
  are validated before the first step (step 0), so ``keep=best`` returns them when training never
  improves on them (a data-fitted start such as the motion models' autoregression). ``log.jsonl``
  records the seconds spent outside and inside validation
  (``train_s``, ``valid_s``) on every ``valid`` line and on the ``end`` line;
* stopping when the first of these happens: ``steps`` (or ``epochs``) done; ``patience``
  validations without improvement; plateau decay took the learning rate below ``min_lr``; the
  wall-clock budget ``minutes`` spent (then one last validation, so the budget never discards the
  progress since the previous one). With neither ``steps`` nor ``epochs`` a run trains until
  validation stops improving — except without a validation split, or with the ``linear`` schedule
  (which needs a last step), where it trains for 10 epochs. The linear schedule is a fixed-length
  recipe: under it validation selects weights but never decays the rate or stops the run early;
* what each step trains on comes from :mod:`probseq.train.data_order`: shuffled whole sequences,
  random windows of long ones (``train_chunk``), transposed piano rolls (``transpose``), or freshly
  generated sequences (``fresh``), all a pure function of the seed and the position; long
  recordings (``batch_size x`` longest sequence above ``train_frames``) train on windows by default
  (``train_chunk=auto``), in order with the recurrent state carried between them where the model
  can (``carry_state``, truncated BPTT: :mod:`probseq.train.streams`), and the trainer says so;
* checkpoints written atomically every ``checkpoint_every`` steps and at the end, holding the
  model, the optimiser, the position in the data order, the plateau state, the elapsed time and
  every random generator, so that ``--resume`` after a crash continues exactly where the
  checkpoint left off;
* a tqdm progress bar showing the loss, and a JSON-lines log (``log.jsonl``);
* a non-finite training loss stops the run with one sentence; a finite but absurd one (above
  ``1e10`` per frame, or a million-fold above the first step's) gives a
  :class:`~probseq.train.divergence.TrainingDivergedWarning` and a ``divergence`` line in the log,
  as does a best validation loss above ``1e10`` at the end (:mod:`probseq.train.divergence`);
* Ctrl-C writes a checkpoint marked ``interrupted`` and re-raises; ``--resume`` continues it.

A run with the same seed, data and options repeats exactly (on the same machine and thread count),
unless the time-based validation schedule (``eval_every=0`` with ``0 < valid_budget < 1``) skips
different epoch ends and validation drives a decision (plateau decay, early stopping); a resumed
run continues an interrupted one bit for bit under a fixed schedule (``eval_every=N``).

The stages of the loop (set-up, step, validation, checkpoint, stop, finish) are the methods of
:class:`~probseq.train.trainer.Trainer`; :func:`fit` is the loop that calls them, and the options
with their checks are in :mod:`probseq.train.options`.

Models whose loss needs a schedule over training (KL annealing, the thesis CD-k switch) get
``on_train_step(step, total)``; ``total`` is the number of steps when it is known and a nominal
10 epochs otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from probseq.train.options import NOMINAL_EPOCHS, TRAINING_DEFAULTS, training_options
from probseq.train.trainer import FitSummary, Trainer

__all__ = ["TRAINING_DEFAULTS", "training_options", "fit", "FitSummary", "NOMINAL_EPOCHS", "Trainer"]


def fit(model, dataset, run_dir: str | Path, *, steps: int | None = None, epochs: float | None = None,
        minutes: float | None = None, seed: int = 0, options: dict[str, Any] | None = None,
        resume: bool = False, progress: bool = True, device: str | torch.device | None = None) -> FitSummary:
    """Train ``model`` on ``dataset.splits["train"]``, validating on ``"valid"`` when present.

    Args:
        run_dir: where ``model.pt``, ``checkpoint.pt`` and ``log.jsonl`` go (``run.json`` is the
            caller's; :func:`probseq.cli` writes it).
        steps / epochs: training length (optimisation steps, or passes over the training set);
            neither: until validation stops improving (see the module docstring). On ``resume``
            they are the whole run's length, so a larger value extends a finished run.
        minutes: wall-clock budget for training, validation included (resumed runs count the
            time already spent).
        seed: seeds the data order and the generator handed to ``model.loss``.
        options: training options (see :data:`TRAINING_DEFAULTS`).
        resume: continue from ``run_dir/checkpoint.pt``.
        device: move the model there first (``"auto"``, ``"cpu"``, ``"cuda:1"``...; ``None``: where it is).

    Under ``torchrun`` (an initialised process group) every process calls ``fit`` and they train
    one model together: ``batch_size`` is per process (:mod:`probseq.parallel`).

    Raises:
        UserError: a bad option, a non-finite loss, a checkpoint that does not match the run.
        KeyboardInterrupt: after writing a checkpoint marked ``interrupted``.
    """
    trainer = Trainer(model, dataset, run_dir, steps=steps, epochs=epochs, minutes=minutes, seed=seed,
                      options=options, progress=progress, device=device, clock=time.perf_counter)
    if resume:
        if not trainer.resume():          # that run is over: nothing left to train
            return trainer.summary()
    else:
        trainer.set_up()
    with trainer.session():               # log.jsonl and the progress bar are closed however it ends
        try:
            if trainer.start_validation_due():
                trainer.validate()            # validate_at_start: the starting weights compete too
            while not trainer.finished():
                trainer.step(trainer.next_batch())
                if trainer.validation_due():
                    trainer.validate()
                stop = trainer.should_stop()
                if stop or trainer.checkpoint_due():
                    trainer.checkpoint()
                if stop:
                    break
        except KeyboardInterrupt:
            trainer.interrupt()
            raise
        return trainer.finish()
