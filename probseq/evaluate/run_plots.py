"""Pictures of runs (``probseq plot``): learning curves from ``log.jsonl``, per-sequence NLL comparisons.

* :func:`read_training_log` reads a run's JSON-lines log (written by :func:`probseq.train.fit.fit`):
  ``{"step", "event": "train", "loss"}`` and ``{"step", "event": "valid", "valid_loss"}`` records.
  A resumed run appends to the same log after a ``"resume"`` record, re-logging steps it had
  already passed; the later record of a step wins, so the curve is the one the final weights
  followed.
* :func:`plot_runs` draws, for one or more runs, the training loss and the validation loss against
  the optimisation step (one colour per run), and optionally, when the runs were scored on the same
  split, each sequence's NLL per frame (``NLL_i / T_i``, nats) under every run against the first
  run's: points below the diagonal are sequences the other run explains better. The panel title
  carries each run's kind and estimator, because an ELBO point below an exact point is not a
  better likelihood (evaluation conventions, DESIGN.md).

The file's extension picks the format: ``.png``, ``.svg`` or ``.pdf`` (matplotlib).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from probseq.errors import UserError

__all__ = ["TrainingLog", "read_training_log", "plot_runs", "kind_label", "FIGURE_FORMATS"]

#: file extensions :func:`plot_runs` writes
FIGURE_FORMATS = (".png", ".svg", ".pdf")


@dataclass
class TrainingLog:
    """The curves of one run: steps and losses, each in step order."""

    train_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    valid_steps: list[int] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)


def read_training_log(run_dir: str | Path) -> TrainingLog:
    """Read ``run_dir/log.jsonl`` into curves (see the module docstring for resumed runs).

    Raises:
        UserError: no log, or a line that is not JSON.
    """
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no log.jsonl; is it a run directory made by probseq fit?")
    train: dict[int, float] = {}
    valid: dict[int, float] = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                raise UserError(f"line {number} of {path} is not JSON") from None
            event, step = record.get("event"), record.get("step")
            if event == "train" and "loss" in record:
                train[int(step)] = float(record["loss"])
            elif event == "valid" and "valid_loss" in record:
                valid[int(step)] = float(record["valid_loss"])
    log = TrainingLog()
    for step in sorted(train):
        log.train_steps.append(step)
        log.train_loss.append(train[step])
    for step in sorted(valid):
        log.valid_steps.append(step)
        log.valid_loss.append(valid[step])
    return log


def kind_label(kind: str, estimator: str) -> str:
    """``"exact"``, or the kind and the estimator (``"bound iwae-20"``) for a legend."""
    return kind if estimator == kind else f"{kind} {estimator}"


def _check_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise UserError(f"cannot draw {path.name}: give --out a file ending in {', '.join(FIGURE_FORMATS)}")
    return suffix[1:]


def plot_runs(path: str | Path, logs: Sequence[tuple[str, TrainingLog]], *,
              per_sequence: Sequence[tuple[str, np.ndarray, str]] | None = None,
              split: str = "test") -> Path:
    """Draw learning curves (and optionally a per-sequence NLL comparison) into one figure.

    Args:
        path: the ``.png``, ``.svg`` or ``.pdf`` to write.
        logs: ``(label, log)`` per run.
        per_sequence: ``(label, nll_per_frame (N,), "kind estimator")`` per run, all over the same
            ``N`` sequences of one split, in the same order; the first run is the reference.
        split: the split's name, for the axis labels.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    path = Path(path)
    fmt = _check_format(path)
    if not logs:
        raise UserError("plot needs at least one run")
    panels = 3 if per_sequence else 2
    fig = Figure(figsize=(4.6 * panels, 3.8))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    colours = matplotlib.colormaps["tab10"]
    for i, (label, log) in enumerate(logs):
        colour = colours(i % 10)
        if log.train_steps:
            axes[0].plot(log.train_steps, log.train_loss, color=colour, lw=1, label=label)
        if log.valid_steps:
            axes[1].plot(log.valid_steps, log.valid_loss, "o-", color=colour, ms=3, lw=1, label=label)
    axes[0].set(title="training loss", xlabel="step", ylabel="loss (the model's objective)")
    axes[1].set(title="validation loss", xlabel="step", ylabel="loss per frame")
    for ax in axes[:2]:
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "nothing logged", ha="center", va="center", transform=ax.transAxes)
    if per_sequence:
        _per_sequence_panel(axes[2], per_sequence, split, colours)
    fig.tight_layout()
    try:
        fig.savefig(str(path), format=fmt)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def _per_sequence_panel(ax, per_sequence, split: str, colours) -> None:
    reference_label, reference, reference_kind = per_sequence[0]
    reference = np.asarray(reference, dtype=float)
    if len(per_sequence) < 2:
        raise UserError("a per-sequence comparison needs at least two runs")
    for i, (label, values, kind) in enumerate(per_sequence[1:], 1):
        values = np.asarray(values, dtype=float)
        if values.shape != reference.shape:
            raise UserError(f"{label} was scored on {values.shape[0]} sequences and {reference_label} "
                            f"on {reference.shape[0]}; compare runs on the same split")
        better = int(np.sum(values < reference))
        ax.scatter(reference, values, s=9, alpha=0.7, color=colours(i % 10),
                   label=f"{label} [{kind}]: lower on {better}/{len(values)}")
    low = min(float(np.min(v)) for _, v, _ in per_sequence)
    high = max(float(np.max(v)) for _, v, _ in per_sequence)
    ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--")
    ax.set(title=f"per-sequence NLL per frame ({split})",
           xlabel=f"{reference_label} [{reference_kind}] (nats)", ylabel="other run (nats)")
    ax.legend(fontsize=7)
