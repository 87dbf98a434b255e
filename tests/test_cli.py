"""The command line: the DESIGN.md contract end to end on the embedded JSB chorales, and errors.

Every error a user can cause must exit non-zero with one sentence on stderr and no traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from probseq.cli import main


def run(capsys, *argv):
    """Run the ``probseq`` command in this process; returns (exit code, stdout, stderr).

    ``main`` returns the exit code, argparse's errors raise ``SystemExit``; any other exception
    escapes and fails the test (the traceback a user would see). One test below starts the real
    entry point in a subprocess; the others save that process start.
    """
    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "gru"
    code = main(["fit", "gru", "--data", "jsb", "--steps", "12", "--set", "hidden=16",
                 "--set", "eval_every=6", "--out", str(out), "--quiet"])
    assert code == 0
    return out


def test_fit_then_evaluate_json_contract(gru_run, capsys):
    assert main(["evaluate", str(gru_run), "--split", "test", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("model", "dataset", "split", "n_sequences", "n_frames", "nll_per_frame",
                "nll_per_frame_seq_avg", "kind", "estimator", "stderr"):
        assert key in result
    assert (result["n_sequences"], result["n_frames"]) == (77, 4725)
    assert result["kind"] == "exact" and result["estimator"] == "exact" and result["stderr"] is None
    assert 0 < result["nll_per_frame"] < 88 * 0.7   # better than a fair coin per key


def test_evaluate_mse_reports_model_and_copy_baseline(gru_run, capsys):
    assert main(["evaluate", str(gru_run), "--metric", "mse", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["next_frame_se_per_frame"] == pytest.approx(88 * result["next_frame_mse_per_dim"])
    assert result["baseline_copy_last_mse_per_dim"] > 0


def test_sample_writes_midi_other_software_reads(gru_run, tmp_path, capsys):
    import mido
    import pretty_midi

    out = tmp_path / "s.mid"
    assert main(["sample", str(gru_run), "-n", "2", "--length", "64", "--out", str(out)]) == 0
    assert out.is_file()
    midi = pretty_midi.PrettyMIDI(str(out))
    assert sum(len(i.notes) for i in midi.instruments) > 0
    assert any(msg.type == "note_on" for track in mido.MidiFile(out).tracks for msg in track)


def test_compare_prints_one_table_with_paired_differences(gru_run, tmp_path, capsys):
    other = tmp_path / "indep"
    assert main(["fit", "independent", "--data", "jsb", "--steps", "30", "--out", str(other),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["compare", str(gru_run), str(other), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in rows} == {"gru", "independent"}
    assert rows[0]["diff_nll_per_frame"] == 0.0 and rows[1]["diff_nll_per_frame"] > 0
    assert rows[1]["diff_stderr"] > 0
    assert main(["compare", str(gru_run), str(other)]) == 0
    table = capsys.readouterr().out
    assert "exact" in table and "paired" in table


def test_fit_resume_continues_a_run(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["fit", "independent", "--data", "jsb", "--steps", "10", "--out", str(out), "--quiet"]) == 0
    assert main(["fit", "independent", "--data", "jsb", "--out", str(out), "--resume", "--quiet"]) == 0
    code, _, err = run(capsys, "fit", "independent", "--data", "jsb", "--steps", "5", "--out", out, "--quiet")
    assert code != 0 and "already holds a run" in err


def test_datasets_lists_the_registry(capsys):
    code, out, _ = run(capsys, "datasets")
    assert code == 0
    for name in ("jsb", "piano-midi", "nottingham", "musedata", "bouncing-balls"):
        assert name in out


@pytest.mark.parametrize("argv,message", [
    (["fit", "no-such-model", "--data", "jsb", "--out", "{tmp}/x"], "unknown model"),
    (["fit", "gru", "--data", "no-such-data", "--out", "{tmp}/x"], "unknown dataset"),
    (["fit", "gru", "--data", "nottingham", "--data-file", "{tmp}/missing.mat", "--out", "{tmp}/x"],
     "no such file"),
    (["fit", "gru", "--data", "jsb", "--set", "hiden=3", "--out", "{tmp}/x"], "unknown option"),
    (["fit", "gru", "--data", "jsb", "--set", "hidden=big", "--out", "{tmp}/x"], "not a valid int"),
    (["evaluate", "{tmp}"], "not a probseq run directory"),
    (["evaluate", "{tmp}/missing"], "not a probseq run directory"),
    (["fit", "gru", "--data", "nottingham", "--data-file", "{tmp}/corrupt.mat", "--out", "{tmp}/x"], ""),
])
def test_user_errors_are_one_sentence_without_traceback(tmp_path, capsys, argv, message):
    (tmp_path / "corrupt.mat").write_bytes(b"this is not a MATLAB file")
    code, _, err = run(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert code != 0
    assert "Traceback" not in err
    assert err.startswith("probseq: error: ") and message in err
    assert len(err.strip().splitlines()) == 1


def test_corrupt_weights_are_reported(gru_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(gru_run, broken)
    (broken / "model.pt").write_bytes(b"garbage")
    code, _, err = run(capsys, "evaluate", broken)
    assert code != 0 and "Traceback" not in err and "not a readable probseq checkpoint" in err


def test_evaluating_on_data_of_another_shape_is_refused(gru_run, tmp_path, capsys):
    import numpy as np

    frames = tmp_path / "three_wide.npy"                  # 0/1 frames of 3 values; the run models 88 keys
    np.save(frames, (np.arange(30).reshape(10, 3) % 2).astype(np.float32))
    code, _, err = run(capsys, "evaluate", gru_run, "--data", "arrays", "--data-file", frames)
    assert code != 0 and "dimension" in err and "Traceback" not in err


def test_the_installed_entry_point_exits_2_with_one_sentence(tmp_path):
    """The real process: ``python -m probseq`` (what the ``probseq`` script runs), exit status and stderr.

    An error found before any model is imported, so the process start costs little more than torch's import."""
    proc = subprocess.run([sys.executable, "-m", "probseq", "evaluate", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("probseq: error: ") and "not a probseq run directory" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
