"""The trainer's options: their defaults and the checks that turn ``--set key=value`` into them.

A run's options are, from weakest to strongest: :data:`TRAINING_DEFAULTS`, the model's own
``training_defaults`` (a recipe), and the user's overrides (``--set``, or ``options=`` of
:func:`probseq.train.fit.fit`). :func:`training_options` merges and types them and refuses, with one
sentence, a value the trainer cannot use. What each option does is described in
:mod:`probseq.train.fit`.
"""

from __future__ import annotations

import math
from typing import Any

from probseq.errors import UserError
from probseq.models.registry import parse_option_value
from probseq.optim.training import CLOSURE_OPTIMIZERS, OPTIMIZER_OPTIONS, check_optimizer_options
from probseq.precision import check_precision
from probseq.train.schedules import LR_SCHEDULES
from probseq.train.streams import TRAIN_FRAME_BUDGET

__all__ = ["TRAINING_DEFAULTS", "training_options", "NOMINAL_EPOCHS"]

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
    "eval_every": 0,         # steps between validations; 0 = at epoch ends, within valid_budget
    "valid_budget": 0.1,     # eval_every=0: largest share of the run's time epoch-end validation may take (1 = every epoch)
    "patience": 10,          # validations without improvement before stopping; 0 = never stop early
    "keep": "best",          # best (best-validation weights) | last (the weights of the last step)
    "validate_at_start": False,  # also validate the starting weights (step 0), so keep=best can keep them
    "train_chunk": "auto",   # train on windows of this many frames (0 = whole sequences; auto: probseq.train.streams)
    "train_frames": TRAIN_FRAME_BUDGET,  # train_chunk=auto: windows when batch x longest sequence exceeds this
    "carry_state": "auto",   # carry the recurrent state across windows (truncated BPTT): auto | true | false
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
        if isinstance(opts[key], float) and not math.isfinite(opts[key]):
            raise UserError(f"training option {key}={opts[key]} must be a finite number")
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
    if not 0 <= float(opts["valid_budget"]) <= 1:
        raise UserError(f"valid_budget is the share of the run's time that validation may take and must "
                        f"lie in [0, 1] (1: validate at every epoch end), got {opts['valid_budget']}")
    for key in ("decay_patience", "patience", "eval_every", "transpose"):
        if int(opts[key]) < 0:
            raise UserError(f"{key} must be non-negative, got {opts[key]}")
    _check_window_options(opts)
    if int(opts["checkpoint_every"]) < 1 or int(opts["log_every"]) < 1:
        raise UserError("checkpoint_every and log_every must be positive")
    return opts


def _check_window_options(opts: dict[str, Any]) -> None:
    """``train_chunk``: ``auto`` or frames >= 0; ``carry_state``: ``auto``, true or false;
    ``train_frames``: positive (:mod:`probseq.train.streams`). Normalised in place."""
    chunk = opts["train_chunk"]
    if not (isinstance(chunk, str) and chunk.lower() == "auto"):
        try:
            chunk = int(chunk)
        except (TypeError, ValueError):
            chunk = -1
        if chunk < 0 or isinstance(opts["train_chunk"], float) and opts["train_chunk"] != chunk:
            raise UserError(f"train_chunk must be auto or a number of frames (0: whole sequences), "
                            f"got {opts['train_chunk']!r}")
    opts["train_chunk"] = "auto" if isinstance(chunk, str) else chunk
    carry = opts["carry_state"]
    words = {"auto": "auto", "true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    carry = words.get(carry.lower()) if isinstance(carry, str) else carry
    if carry not in ("auto", True, False):
        raise UserError(f"carry_state must be auto, true or false, got {opts['carry_state']!r}")
    opts["carry_state"] = carry
    if int(opts["train_frames"]) < 1:
        raise UserError(f"train_frames must be a positive number of frames, got {opts['train_frames']}")
