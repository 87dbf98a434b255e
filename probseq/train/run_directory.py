"""A run directory's life: one owner at a time, created complete or not at all, no leftovers.

:mod:`probseq.train.checkpoint` says what a run directory holds; this module says who may write it
and in which states ``probseq fit`` finds it:

* **One owner.** ``fit`` holds ``RUN/.lock`` (the ``filelock`` package: an OS lock on an open
  file, ``flock`` on POSIX) for as long as it runs. The operating system drops the lock when the
  process ends, however it ends (``kill -9`` included), so a crash never leaves a directory stuck;
  a second ``fit`` on the same directory is refused with one sentence instead of interleaving its
  files with the first one's. Under ``torchrun`` rank 0 takes the lock and broadcasts whether it
  got it, so every rank stops together. ``evaluate``, ``sample`` and ``compare`` only read and do
  not lock.
* **States** (:func:`run_state`): ``new`` (no ``run.json``), ``started`` (``run.json`` but neither
  ``checkpoint.pt`` nor ``model.pt``: a start that failed or was killed before its first
  checkpoint, which ``fit`` starts over, saying so), ``weights`` (``model.pt`` without a
  checkpoint: it can be evaluated but not resumed) and ``resumable`` (``checkpoint.pt``).
* **Complete or not at all.** Options, budgets, the model and the data are all checked before
  ``run.json`` is written; a start that still fails before its first checkpoint (divergence at
  step 1) leaves nothing behind (:func:`discard_failed_start`): the files it wrote are removed,
  and the directory too when the start created it.
* **No leftovers.** Every ``.pt`` and ``run.json`` is written to a hidden temporary file and
  renamed into place; a process killed mid-write leaves that temporary file, which the next
  ``fit`` removes (:func:`remove_temporaries`).
"""

from __future__ import annotations

import contextlib
import math
import shutil
from pathlib import Path
from typing import Iterator

from probseq.errors import UserError

__all__ = ["LOCK_NAME", "TEMPORARY_PATTERNS", "check_budget", "own_run_directory", "run_state",
           "remove_temporaries", "discard_failed_start"]

#: the lock file inside a run directory
LOCK_NAME = ".lock"
#: the temporary files of atomic writes (``atomic_save``, ``write_run_info``) a kill can leave
TEMPORARY_PATTERNS = (".checkpoint.pt.*.tmp", ".model.pt.*.tmp", ".run.json.*.tmp")
#: what a start writes before its first checkpoint (removed when that start fails)
_STARTED_FILES = ("run.json", "log.jsonl")


def check_budget(steps: int | None, epochs: float | None, minutes: float | None) -> None:
    """Refuse, in one sentence, a training length that is not a positive finite number."""
    if steps is not None and not (isinstance(steps, int) and steps >= 1):
        raise UserError(f"the number of training steps must be a positive integer, got {steps}")
    if epochs is not None and not (math.isfinite(epochs) and epochs > 0):
        raise UserError(f"the number of epochs must be positive, got {epochs}")
    if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
        raise UserError(f"the time budget must be a positive number of minutes, got {minutes}")


def run_state(run_dir: Path) -> str:
    """``new``, ``started``, ``weights`` or ``resumable`` (see the module docstring)."""
    run_dir = Path(run_dir)
    if (run_dir / "checkpoint.pt").is_file():
        return "resumable"
    if not (run_dir / "run.json").is_file():
        return "new"
    return "weights" if (run_dir / "model.pt").is_file() else "started"


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporary files interrupted atomic writes left in ``run_dir``; returns them."""
    removed = []
    for pattern in TEMPORARY_PATTERNS:
        for path in Path(run_dir).glob(pattern):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def discard_failed_start(run_dir: Path, *, created: bool) -> None:
    """Remove what a start wrote when it failed before its first checkpoint or saved weights.

    A directory in any other state is left as it is (its checkpoint or weights are the user's).
    With ``created`` (this start made the directory) the directory itself goes too.
    """
    run_dir = Path(run_dir)
    if run_state(run_dir) not in ("new", "started") or not run_dir.is_dir():
        return
    remove_temporaries(run_dir)
    for name in _STARTED_FILES:
        (run_dir / name).unlink(missing_ok=True)
    if created and {p.name for p in run_dir.iterdir()} <= {LOCK_NAME}:
        shutil.rmtree(run_dir, ignore_errors=True)


@contextlib.contextmanager
def own_run_directory(run_dir: Path, job=None) -> Iterator[bool]:
    """Hold ``run_dir``'s lock for the block (creating the directory); yields whether it was created.

    ``job`` (:class:`probseq.parallel.Distributed`, or ``None`` for one process): rank 0 takes the
    lock and every rank learns the outcome, so all of them refuse together. On the way out, a
    failure before the first checkpoint leaves nothing behind (:func:`discard_failed_start`).

    Raises:
        UserError: another process holds the directory.
    """
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    is_main = job is None or job.is_main
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a run directory; choose another --out")
    created = not run_dir.exists()
    lock, held = None, True
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(run_dir / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            held = False
    if job is not None:
        held = bool(job.broadcast_value(held))
        created = bool(job.broadcast_value(created))
    if not held:
        raise UserError(f"{run_dir} is in use by another probseq process; wait for it to finish or "
                        "choose another --out")
    try:
        if is_main:
            remove_temporaries(run_dir)
        yield created
    except BaseException:
        if is_main:
            discard_failed_start(run_dir, created=created)
        raise
    finally:
        if lock is not None:
            lock.release()
