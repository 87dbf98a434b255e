"""Pictures of runs (``probseq plot``): learning curves from ``log.jsonl``, per-sequence NLL comparisons.

* :func:`read_training_log` reads a run's JSON-lines log (written by :func:`probseq.train.fit.fit`):
  ``{"step", "event": "train", "loss"}`` and ``{"step", "event": "valid", "valid_loss"}`` records.
  A resumed run appends to the same log after a ``"resume"`` record, re-logging steps it had
  already passed; the later record of a step wins, so the curve is the one the final weights
  followed.
* :func:`plot_runs` draws, for one or more runs, the training loss and the validation loss against
  the optimisation step (one colour per run), the validation legend saying how the run's time
  divided between training and validation (``train_s`` and ``valid_s``, the latest the log records:
  :mod:`probseq.train.validation_budget`), and optionally, when the runs were scored on the same
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

__all__ = ["TrainingLog", "read_training_log", "read_log_records", "plot_runs", "kind_label", "time_label",
           "FIGURE_FORMATS"]

#: file extensions :func:`plot_runs` writes
FIGURE_FORMATS = (".png", ".svg", ".pdf")


@dataclass
class TrainingLog:
    """The curves of one run: steps and losses, each in step order."""

    train_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    valid_steps: list[int] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    #: seconds of the run outside and inside validation, from the log's latest record of them
    #: (``None``: a log written before they were recorded)
    train_s: float | None = None
    valid_s: float | None = None
    #: the lines of the log that were skipped, and why (``"line 3 is not JSON"``)
    skipped: list[str] = field(default_factory=list)


def read_training_log(run_dir: str | Path) -> TrainingLog:
    """Read ``run_dir/log.jsonl`` into curves (see the module docstring for resumed runs).

    Lines that cannot be read (a line cut short by a killed process, bytes that are not UTF-8,
    JSON that is not an object, a record without an integer ``step`` or with a loss that is not
    a number) are skipped and listed in :attr:`TrainingLog.skipped`, for the caller to warn about.

    Raises:
        UserError: no log.
    """
    path = Path(run_dir) / "log.jsonl"
    if not path.is_file():
        raise UserError(f"{run_dir} has no log.jsonl; is it a run directory made by probseq fit?")
    train: dict[int, float] = {}
    valid: dict[int, float] = {}
    seconds: tuple[float, float] | None = None
    records, skipped = read_log_records(path)
    for number, record in records:
        event, step = record.get("event"), record["step"]
        for name, kind, curve in (("loss", "train", train), ("valid_loss", "valid", valid)):
            if event == kind and name in record:
                if _is_number(record[name]):
                    curve[step] = float(record[name])
                else:
                    skipped.append(f"line {number} has a {name} that is not a number")
        if "train_s" in record and "valid_s" in record:
            try:
                seconds = (float(record["train_s"]), float(record["valid_s"]))
            except (TypeError, ValueError):
                pass             # an unreadable time leaves the earlier one
    log = TrainingLog(skipped=skipped)
    if seconds is not None:
        log.train_s, log.valid_s = seconds
    for step in sorted(train):
        log.train_steps.append(step)
        log.train_loss.append(train[step])
    for step in sorted(valid):
        log.valid_steps.append(step)
        log.valid_loss.append(valid[step])
    return log


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_log_records(path: str | Path) -> tuple[list[tuple[int, dict]], list[str]]:
    """The records of a JSON-lines run log: ``([(line number, record), ...], [why a line was skipped, ...])``.

    A record is a JSON object with an integer ``step``; any other line (not UTF-8, not JSON, a JSON
    array or number, no ``step``) is skipped and described instead of stopping the reader.
    """
    records: list[tuple[int, dict]] = []
    skipped: list[str] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                skipped.append(f"line {number} is not UTF-8 text")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:       # JSONDecodeError, or a number too large to hold
                skipped.append(f"line {number} is not JSON")
                continue
            if not isinstance(record, dict):
                skipped.append(f"line {number} is not a JSON object")
            elif isinstance(record.get("step"), bool) or not isinstance(record.get("step"), int):
                skipped.append(f"line {number} has no integer step")
            else:
                records.append((number, record))
    return records, skipped


def time_label(log: TrainingLog) -> str:
    """``"train 26 s, valid 4 s (13%)"``: how the run's time divided (``""`` when not recorded)."""
    if log.train_s is None or log.valid_s is None:
        return ""
    total = log.train_s + log.valid_s
    share = f" ({100 * log.valid_s / total:.0f}%)" if total > 0 else ""
    return f"train {log.train_s:.0f} s, valid {log.valid_s:.0f} s{share}"


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
            seconds = time_label(log)
            axes[1].plot(log.valid_steps, log.valid_loss, "o-", color=colour, ms=3, lw=1,
                         label=f"{label}: {seconds}" if seconds else label)
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
