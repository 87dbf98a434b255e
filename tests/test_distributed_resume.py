"""A distributed run killed with SIGKILL resumes from its last checkpoint (issue 11).

``torchrun --standalone --nproc_per_node=2 -m probseq fit gru --data jsb ...`` (gloo, free port
chosen by the c10d rendezvous) is started as a subprocess in its own process group, with
``checkpoint_every=1``. Once ``log.jsonl`` shows step ``KILL_AFTER`` trained, the whole job gets
SIGKILL -- the launcher's process group and each worker (torchrun puts every worker in a session of
its own, so killing the launcher's group alone leaves them training): no ``finally``, no
``KeyboardInterrupt`` checkpoint. Linux only (the workers are found in ``/proc``).
Then ``--resume`` on 2 processes finishes the run, and a third, uninterrupted 2-process run with the
same seed and options is the reference.

What is guaranteed, and therefore asserted:

* ``checkpoint.pt`` is readable after the kill (``atomic_save``: temporary file + ``os.replace``);
  a ``.checkpoint.pt.*.tmp`` left by a kill in the middle of a write is allowed, it is never read.
* The checkpoint's step ``c`` satisfies ``KILL_AFTER - 1 <= c <= last logged step`` and ``c < STEPS``:
  the log line of step ``s`` is written before its checkpoint, so the kill may land after the log
  line and before (or during) that step's checkpoint -- ``c`` is then one behind the log. Which of the
  two it is depends on where the kill interleaves, so the test does not pin it.
* The resumed run logs ``resume`` at step ``c`` (not 0) with ``world_size == 2``, its next training
  event is step ``c + 1``, and it ends at ``STEPS``.
* Its final weights equal the uninterrupted run's (float tolerance): the checkpoint holds model,
  optimiser, rank 0's generators and the data position, and ranks > 0 reseed from
  ``(seed, rank, step)`` every step, so the steps after ``c`` are the same computation whatever ``c`` is.
  The resumed run's training losses equal the reference's at the same steps (the killed run's log
  lines after ``c`` are repeated by the resumed run, so they are not compared).
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist

from probseq.train.checkpoint import safe_load

# slow: three torchrun jobs of two processes each, one of them killed part way (about a minute)
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers in /proc"),
              pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="this torch build has no torch.distributed gloo backend")]

STEPS, KILL_AFTER = 40, 6
SETS = ["hidden=6", "length=halting", "batch_size=4", "checkpoint_every=1", "log_every=1",
        "eval_every=1000", "keep=last", "patience=0"]


def _command(run_dir, resume=False):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "probseq", "fit", "gru", "--data", "jsb", "--out", str(run_dir), "--threads", "1",
           "--quiet"]
    if resume:      # the run's steps, seed and options come from run.json
        return cmd + ["--resume"]
    return cmd + ["--steps", str(STEPS), "--seed", "3"] + [
        a for s in SETS for a in ("--set", s)]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _events(run_dir):
    path = run_dir / "log.jsonl"
    if not path.exists():
        return []
    # complete lines only: while the job runs, the last one may be half written
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line.strip()]


def _last_train_step(run_dir):
    return max((e["step"] for e in _events(run_dir) if e.get("event") == "train"), default=0)


def _descendants(pid):
    """The process ids below ``pid`` (from ``/proc``); torchrun starts each worker in its own session."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for children in (pathlib.Path("/proc") / str(parent) / "task").glob("*/children"):
            try:
                kids = [int(k) for k in children.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def _kill_job(launcher, workers):
    """SIGKILL the launcher's process group, then every worker (torchrun gives each its own
    session, so the launcher's group does not reach them); the launcher goes first so that it
    cannot restart a worker."""
    os.killpg(os.getpgid(launcher.pid), signal.SIGKILL)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _state(pid):
    try:
        return (pathlib.Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _run(cmd, timeout=120):
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]


def test_a_killed_distributed_run_resumes_from_its_last_checkpoint(tmp_path):
    run = tmp_path / "killed"
    proc = subprocess.Popen(_command(run), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while _last_train_step(run) < KILL_AFTER:
            assert proc.poll() is None, "the run ended before it was killed: " + proc.stderr.read()[-4000:]
            assert time.monotonic() < deadline, "the run did not reach the kill step in time"
            time.sleep(0.02)
    finally:
        workers = _descendants(proc.pid)
        _kill_job(proc, workers)                        # the launcher and both workers, no clean-up
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while any(pathlib.Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker survived SIGKILL"
        time.sleep(0.02)

    logged = _last_train_step(run)
    ckpt = safe_load(run / "checkpoint.pt")      # readable: written atomically
    c = ckpt["progress"]["step"]
    assert KILL_AFTER - 1 <= c <= logged and c < STEPS, (c, logged)
    assert not any(e.get("event") == "end" for e in _events(run)), "the kill came after the end"
    before = len(_events(run))

    _run(_command(run, resume=True))
    _run(_command(tmp_path / "straight"))

    resumed = _events(run)[before:]
    assert resumed[0]["event"] == "resume" and resumed[0]["step"] == c and resumed[0]["world_size"] == 2
    trains = [e["step"] for e in resumed if e.get("event") == "train"]
    assert trains == list(range(c + 1, STEPS + 1))
    assert resumed[-1]["event"] == "end" and resumed[-1]["step"] == STEPS
    assert safe_load(run / "checkpoint.pt")["progress"]["step"] == STEPS

    straight_events = _events(tmp_path / "straight")
    straight_losses = {e["step"]: e["loss"] for e in straight_events if e.get("event") == "train"}
    torch.testing.assert_close(torch.tensor([e["loss"] for e in resumed if e.get("event") == "train"]),
                               torch.tensor([straight_losses[s] for s in trains]), rtol=1e-5, atol=1e-5)
    got = safe_load(run / "model.pt")["state_dict"]
    want = safe_load(tmp_path / "straight" / "model.pt")["state_dict"]
    assert got.keys() == want.keys()
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6, msg=key)
