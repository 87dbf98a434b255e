"""Run directories you can trust (issue 20, "Runs" 1-8), through the command line, in-process.

1. one process owns a run directory (a lock the OS drops when its holder dies);
2. ``reproduce --run`` checks the run against the protocol (mismatch refused, a short run partial);
3. ``fit --resume`` honours a new budget and refuses options that would change the run;
4. a run directory is created complete or not at all; a failed start is started over;
5. orphan temporary files are removed, a full disk is one sentence;
6. user input that used to end in a traceback (or be accepted) is one sentence (or a warning);
7. ``download`` and ``datasets`` check a file already in place;
8. every command that computes takes ``--threads``, and the default does not oversubscribe.
"""

from __future__ import annotations

import errno
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from probseq.cli import build_parser, main
from probseq.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["independent", "--data", "jsb", "--quiet", "--threads", "1"]


def fit(out, *extra):
    return main(["fit", *TINY, "--out", str(out), *map(str, extra)])


def one_sentence(capsys, *fragments):
    err = capsys.readouterr().err
    assert err.startswith("probseq: error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err
    return err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-step run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("runs") / "done"
    assert fit(out, "--steps", 2) == 0
    return out


def copy_run(run, tmp_path, name="copy"):
    import shutil

    target = tmp_path / name
    shutil.copytree(run, target)
    return target


def events(run):
    return [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------- 1. one owner
def test_a_second_fit_on_a_directory_in_use_is_refused_in_one_sentence(tmp_path, capsys):
    from filelock import FileLock

    out = tmp_path / "run"
    out.mkdir()
    with FileLock(str(out / ".lock")):        # another probseq process holds it
        assert fit(out, "--steps", 2) == 2
        one_sentence(capsys, f"{out} is in use by another probseq process")
        assert main(["fit", *TINY, "--out", str(out), "--resume"]) == 2
    assert not (out / "run.json").exists()
    assert fit(out, "--steps", 2) == 0       # free again


def test_the_lock_is_held_for_the_whole_fit(tmp_path, monkeypatch):
    from filelock import FileLock, Timeout

    import probseq.train.fit as fit_module

    real_fit, seen = fit_module.fit, []

    def fit_checking_the_lock(*args, **kwargs):
        with pytest.raises(Timeout):
            FileLock(str(tmp_path / "run" / ".lock")).acquire(timeout=0)
        seen.append(True)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(fit_module, "fit", fit_checking_the_lock)
    assert fit(tmp_path / "run", "--steps", 2) == 0 and seen


def test_a_killed_owner_does_not_leave_the_directory_stuck(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import filelock, sys, time\n"
         f"lock = filelock.FileLock({str(out / '.lock')!r})\nlock.acquire()\nprint('held', flush=True)\n"
         "time.sleep(120)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert fit(out, "--steps", 2) == 2
        one_sentence(capsys, "in use by another probseq process")
    finally:
        holder.kill()                        # SIGKILL: no clean-up code runs
        holder.wait()
    assert fit(out, "--steps", 2) == 0


# ---------------------------------------------------------------------------- 2. reproduce --run
def test_reproduce_refuses_a_run_of_another_model_or_dataset(finished, tmp_path, capsys):
    assert main(["reproduce", "bl2012-polyphonic", "jsb", "rnn-nade", "--run", str(finished),
                 "--out", str(tmp_path / "r")]) == 2
    one_sentence(capsys, "is not a run of bl2012-polyphonic", "independent model, the protocol trains rnn-nade")
    assert main(["reproduce", "bl2012-polyphonic", "piano-midi", "rnn-nade", "--run", str(finished),
                 "--out", str(tmp_path / "r")]) == 2
    one_sentence(capsys, "is not a run of bl2012-polyphonic")
    assert not (tmp_path / "r" / "result.json").exists()


def _fake_run(run, model, spec, hyper=None, training=None, data="jsb", data_options=None,
              log=({"event": "start"}, {"event": "stop", "reason": "patience"}, {"event": "end"}), step=7):
    """A run directory's run.json and log.jsonl as probseq fit writes them (no training)."""
    from probseq.data.spec import DataSpec
    from probseq.models.registry import build_model
    from probseq.train.checkpoint import write_run_info
    from probseq.train.fit import training_options

    model_obj = build_model(model, DataSpec.from_dict(spec), hyper or {})
    write_run_info(run, {"model": model, "spec": spec, "hyperparameters": model_obj.config,
                         "training": training_options(model_obj, training or {}), "seed": 0,
                         "steps": None, "epochs": None, "minutes": None,
                         "dataset": {"name": data, "data_file": None, "data_dir": None,
                                     "options": data_options or {}}})
    (run / "log.jsonl").write_text("".join(json.dumps({"step": step, **e}) + "\n" for e in log))


def test_reproduce_checks_the_protocols_recipe_options_and_how_the_run_ended(tmp_path):
    from probseq.reproduce import check_run, protocol

    balls = protocol("sutskever-bouncing-balls")
    spec = {"kind": "binary", "dim": 900}
    recipe = {k: v for k, v in balls.settings.items() if k in ("hidden", "preset", "cd_steps", "cd_steps_late",
                                                                "cd_switch", "pretrain_cd")}
    training = {k: balls.settings[k] for k in ("fresh", "batch_size", "lr", "lr_schedule", "eval_every")}
    _fake_run(tmp_path / "small", "rtrbm", spec, {**recipe, "hidden": 5}, training, "bouncing-balls",
              {"n_train": 30})
    with pytest.raises(UserError, match="has hidden=5, the protocol sets hidden=400"):
        check_run(balls, tmp_path / "small")
    _fake_run(tmp_path / "short", "rtrbm", spec, recipe, training, "bouncing-balls", {"n_train": 30},
              log=({"event": "start"}, {"event": "end"}), step=500)
    assert check_run(balls, tmp_path / "short") == ["it trained 500 of the protocol's 100000 steps"]
    nade = protocol("bl2012-polyphonic", ["jsb", "rnn-nade"])
    jsb = {"kind": "binary", "dim": 88}
    _fake_run(tmp_path / "done", "rnn-nade", jsb)                       # stopped by patience: complete
    assert check_run(nade, tmp_path / "done") == []
    _fake_run(tmp_path / "timed", "rnn-nade", jsb, {"hidden": 6},
              log=({"event": "start"}, {"event": "stop", "reason": "minutes"}, {"event": "end"}))
    assert check_run(nade, tmp_path / "timed") == [
        "options beyond the protocol: hidden=6",
        "the time budget ended it at step 7, before validation stopped improving"]
    _fake_run(tmp_path / "killed", "rnn-nade", jsb, log=({"event": "start"},))
    assert check_run(nade, tmp_path / "killed") == ["its log records no end of training (still running, or killed)"]


def test_reproduce_reports_a_shortened_run_as_partial(tmp_path, capsys):
    run = tmp_path / "nade"
    assert main(["fit", "rnn-nade", "--data", "jsb", "--steps", "2", "--set", "hidden=4", "--set", "nade_hidden=3",
                 "--out", str(run), "--quiet", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["reproduce", "bl2012-polyphonic", "jsb", "rnn-nade", "--run", str(run),
                 "--out", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out
    assert "PARTIAL: " in printed and "ended it at step 2, before validation stopped improving" in printed
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["partial"] is True and any("step 2" in r for r in result["partial_reasons"])


# ---------------------------------------------------------------------------- 3. --resume
def test_resume_honours_a_new_step_budget(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    capsys.readouterr()
    assert fit(run, "--resume", "--steps", 5) == 0
    assert "trained independent for 5 steps" in capsys.readouterr().out
    assert events(run)[-1]["event"] == "end" and events(run)[-1]["step"] == 5
    assert json.loads((run / "run.json").read_text())["steps"] == 5      # the new budget is the run's
    assert fit(run, "--resume") == 0                                     # nothing left to do: said so
    assert "nothing to train" in capsys.readouterr().out


@pytest.mark.parametrize("extra,fragment", [
    (["--set", "lr=0.5"], "--set lr=0.5 differs from the run's lr=0.05"),
    (["--seed", "3"], "was fitted with --seed 0, not 3"),
    (["--data-file", "{tmp}/other.json"], "was fitted to --data-file None"),
])
def test_resume_refuses_options_that_would_change_the_run(finished, tmp_path, capsys, extra, fragment):
    run = copy_run(finished, tmp_path)
    (tmp_path / "other.json").write_text("{}")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    assert fit(run, "--resume", "--steps", 4, *argv) == 2
    one_sentence(capsys, fragment, "--resume continues a run as it was set up")
    assert events(run)[-1]["step"] == 2                                  # nothing trained


def test_resume_accepts_the_runs_own_options_repeated(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    assert fit(run, "--resume", "--steps", 3, "--seed", 0, "--set", "lr=0.05") == 0
    assert main(["fit", "independent", "--data", "nottingham", "--out", str(run), "--resume"]) == 2


# ---------------------------------------------------------------------------- 4. complete or not at all
@pytest.mark.parametrize("extra,fragment", [
    (["--minutes", "-1"], "time budget must be a positive"),
    (["--minutes", "nan"], "time budget must be a positive"),
    (["--steps", "0"], "steps must be a positive integer"),
    (["--epochs", "-1"], "epochs must be positive"),
    (["--set", "lr=nan"], "lr=nan must be a finite number"),
    (["--set", "min_delta=nan"], "min_delta=nan must be a finite number"),
])
def test_a_refused_start_leaves_no_directory(tmp_path, capsys, extra, fragment):
    assert fit(tmp_path / "run", *extra) == 2
    one_sentence(capsys, fragment)
    assert not (tmp_path / "run").exists()


def test_a_start_that_fails_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch, capsys):
    import probseq.train.fit as fit_module

    def diverging_fit(model, dataset, run_dir, **kwargs):
        (Path(run_dir) / "log.jsonl").write_text('{"step": 0, "event": "start"}\n')
        raise UserError("training diverged at step 1 (the loss is nan)")

    monkeypatch.setattr(fit_module, "fit", diverging_fit)
    assert fit(tmp_path / "run", "--steps", 2) == 2
    one_sentence(capsys, "diverged at step 1")
    assert not (tmp_path / "run").exists()
    (tmp_path / "mine").mkdir()                          # a directory the user made stays, empty
    assert fit(tmp_path / "mine", "--steps", 2) == 2
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == [".lock"]


def test_fit_starts_over_a_run_killed_before_its_first_checkpoint(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    (run / "checkpoint.pt").unlink()
    (run / "model.pt").unlink()                          # as left by a kill before the first checkpoint
    capsys.readouterr()
    assert fit(run, "--steps", 3) == 0
    err = capsys.readouterr().err
    assert "holds a run that stopped before its first checkpoint; starting it over" in err
    assert [e["event"] for e in events(run)][0] == "start" and events(run)[-1]["step"] == 3
    (run / "checkpoint.pt").unlink()
    (run / "model.pt").unlink()
    assert fit(run, "--resume") == 0                     # --resume says it starts over, from run.json
    assert "starting it over with the settings in its run.json" in capsys.readouterr().err
    assert events(run)[-1]["step"] == 3 and (run / "checkpoint.pt").is_file()


def test_a_run_with_weights_but_no_checkpoint_is_kept(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    (run / "checkpoint.pt").unlink()
    assert fit(run, "--steps", 2) == 2
    one_sentence(capsys, "holds a run's weights but no checkpoint")
    assert fit(run, "--resume") == 2
    one_sentence(capsys, "cannot be resumed")
    assert (run / "model.pt").is_file() and (run / "run.json").is_file()


# ---------------------------------------------------------------------------- 5. leftovers, full disk
def test_fit_removes_orphan_temporary_files(finished, tmp_path):
    run = copy_run(finished, tmp_path)
    orphans = [run / ".checkpoint.pt.k9x1.tmp", run / ".model.pt.k9x2.tmp", run / ".run.json.k9x3.tmp"]
    for path in orphans:
        path.write_bytes(b"half a checkpoint")
    assert fit(run, "--resume", "--steps", 3) == 0
    assert not any(path.exists() for path in orphans)


def test_a_full_disk_while_checkpointing_is_one_sentence(tmp_path, monkeypatch, capsys):
    from probseq.train import checkpoint

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    (tmp_path / "run").mkdir()
    with pytest.raises(UserError, match="no space left on the device"):
        checkpoint.atomic_save({"x": 1}, tmp_path / "run" / "checkpoint.pt")
    assert list((tmp_path / "run").iterdir()) == []      # no temporary file left either
    assert fit(tmp_path / "run2", "--steps", 2) == 2
    one_sentence(capsys, "no space left on the device")


# ---------------------------------------------------------------------------- 6. clear errors
def test_plot_skips_unreadable_log_lines_with_a_warning(finished, tmp_path, capsys):
    run = copy_run(finished, tmp_path)
    with open(run / "log.jsonl", "ab") as f:
        f.write(b'{"event": "train", "loss": 1.0}\n[1, 2]\n{"step": 9, "event": "train", "loss": "low"}\n'
                b'\xff\xfe\n{"step": 9, "eve')
    capsys.readouterr()
    assert main(["plot", str(run), "--out", str(tmp_path / "curves.png")]) == 0
    err = capsys.readouterr().err
    assert "warning: skipped 5 unreadable line(s)" in err and "Traceback" not in err
    assert (tmp_path / "curves.png").is_file()


@pytest.mark.parametrize("value,fragment", [
    ("0", "hidden of model 'gru' must be at least 1, got 0"),
    ("-5", "must be at least 1, got -5"),
    ("1000000", "more than probseq builds"),
])
def test_model_sizes_are_checked(tmp_path, capsys, value, fragment):
    assert main(["fit", "gru", "--data", "jsb", "--set", f"hidden={value}", "--out", str(tmp_path / "r")]) == 2
    one_sentence(capsys, fragment)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("change,fragment", [
    ({"hyperparameters": {"length": "none", "max_length": 1e12}}, "must be an integer, got 1000000000000.0"),
    ({"hyperparameters": {"max_length": -3}}, "max_length of model 'independent' must be at least 1"),
    ({"seed": "zero"}, "the field 'seed' should be an integer"),
    ({"model": ["independent"]}, "the field 'model' should be a string"),
    ({"spec": {"kind": "binary", "dim": "88"}}, "the field 'spec' should be"),
    ({"dataset": {"name": 3}}, "the dataset should have a name"),
])
def test_a_damaged_run_json_is_one_sentence(finished, tmp_path, capsys, change, fragment):
    run = copy_run(finished, tmp_path)
    info = json.loads((run / "run.json").read_text())
    info.update(change)
    (run / "run.json").write_text(json.dumps(info))
    assert main(["evaluate", str(run), "--threads", "1"]) == 2
    one_sentence(capsys, fragment)


def test_demo_refuses_zero_steps(tmp_path, capsys):
    assert main(["demo", "--steps", "0", "--out", str(tmp_path / "d"), "--threads", "1"]) == 2
    one_sentence(capsys, "must be a positive integer, got 0")


# ---------------------------------------------------------------------------- 7. data in place
def test_download_checks_a_file_already_in_place_and_fetches_a_damaged_one_again(tmp_path, monkeypatch, capsys):
    from probseq.data import download as dl

    good = b'{"train": [[[60]]], "valid": [[[62]]], "test": [[[64]]]}'
    remote = dl.Remote("https://example.invalid/tiny.json", "polyphonic/tiny.json",
                       hashlib.sha256(good).hexdigest())
    monkeypatch.setitem(dl.DOWNLOADS, "tiny", dl.Download("test", (remote,)))
    fetched = []

    def fake_fetch(url, destination, *, progress, timeout):
        fetched.append(url)
        Path(destination).write_bytes(good)

    monkeypatch.setattr(dl, "_fetch", fake_fetch)
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path))
    target = tmp_path / "polyphonic" / "tiny.json"
    target.parent.mkdir()
    target.write_bytes(good[:-5])                        # a truncated copy
    assert main(["download", "tiny", "--quiet"]) == 0
    assert "is damaged (its SHA-256 is" in capsys.readouterr().err and fetched
    assert target.read_bytes() == good
    assert main(["download", "tiny", "--quiet"]) == 0 and len(fetched) == 1   # intact: not fetched again


def test_datasets_does_not_list_a_damaged_file_as_present(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBSEQ_DATA", str(tmp_path))
    (tmp_path / "polyphonic").mkdir()
    (tmp_path / "polyphonic" / "JSB_Chorales.mat").write_bytes(b"not the chorales")
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert f"DAMAGED  {tmp_path / 'polyphonic' / 'JSB_Chorales.mat'} (its SHA-256 is" in out
    assert "`probseq download jsb` fetches it again" in out
    assert f"present  {tmp_path / 'polyphonic' / 'JSB_Chorales.mat'}" not in out


# ---------------------------------------------------------------------------- 8. threads
@pytest.mark.parametrize("command", [["fit", "gru", "--data", "jsb", "--out", "x"], ["evaluate", "x"],
                                     ["sample", "x"], ["compare", "x", "y"], ["reproduce", "list"],
                                     ["plot", "x", "--out", "x.png"], ["demo"],
                                     ["infill", "x", "--input", "a.npz", "--out", "b.npz"]])
def test_every_command_that_computes_takes_threads(command):
    assert build_parser().parse_args([*command, "--threads", "3"]).threads == 3


def test_sample_runs_with_the_thread_count_asked_for(finished, tmp_path, monkeypatch):
    import probseq.cli as cli

    seen = []
    real = cli.cmd_sample
    monkeypatch.setattr(cli, "cmd_sample", lambda args: seen.append(torch.get_num_threads()) or real(args))
    before = torch.get_num_threads()
    assert main(["sample", str(finished), "-n", "1", "--length", "4", "--out", str(tmp_path / "s.npz"),
                 "--threads", "2"]) == 0
    assert seen == [2] and torch.get_num_threads() == before    # restored for the caller's process


@pytest.mark.parametrize("cores,load,threads", [(2, 0.1, 2), (2, 1.2, 1), (2, 5.0, 1), (16, 0.0, 4),
                                                (16, 13.6, 2), (1, 0.0, 1)])
def test_the_default_thread_count_leaves_busy_cores_alone(cores, load, threads):
    from probseq.threads import default_threads

    assert default_threads(cores, load) == threads


def test_without_threads_or_omp_num_threads_the_default_is_used(monkeypatch):
    import probseq.threads as threads

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "default_threads", lambda: 1)
    before = torch.get_num_threads()
    try:
        assert threads.use_threads(0) == 1 and torch.get_num_threads() == 1
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(2)
        assert threads.use_threads(0) == 2                   # the environment's choice is kept
    finally:
        torch.set_num_threads(before)


def test_the_python_api_refuses_the_same_budgets_and_options(tmp_path):
    from probseq.data.registry import load_dataset
    from probseq.models.registry import build_model
    from probseq.train.fit import fit as fit_model, training_options

    data = load_dataset("jsb")
    model = build_model("independent", data.spec)
    with pytest.raises(UserError, match="epochs must be positive"):
        fit_model(model, data, tmp_path / "r", epochs=-1, progress=False)
    with pytest.raises(UserError, match="lr=nan must be a finite number"):
        training_options(model, {"lr": float("nan")})
