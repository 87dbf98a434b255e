"""``probseq demo`` (three kinds of likelihood in one table) and the documentation's figure script."""

from __future__ import annotations

import importlib.util
from argparse import Namespace
from pathlib import Path

import pytest
import torch

from probseq.errors import UserError
from probseq.io.plots import plot_ctc_alignment

pytestmark = pytest.mark.usefixtures("one_thread")

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_figure_script_draws_the_ctc_alignment_and_the_dialogue_sample(tmp_path):
    written = _make_figures().main(Namespace(out=str(tmp_path), only=["ctc_alignment", "dialogue_sample"],
                                             dpi=40))
    assert [p.name for p in written] == ["ctc_alignment.png", "dialogue_sample.txt"]
    assert written[0].read_bytes().startswith(b"\x89PNG")
    lines = written[1].read_text().splitlines()
    assert len(lines) >= 2 and lines[0].startswith("A: ") and lines[1].startswith("B: ")


def test_plot_ctc_alignment_refuses_a_flat_input(tmp_path):
    with pytest.raises(UserError, match=r"shape \(T, C\)"):
        plot_ctc_alignment(torch.zeros(5), [1], tmp_path / "x.png")


@pytest.mark.slow  # trains and scores three models on JSB, writes MIDI and plots (several seconds)
def test_demo_prints_three_kinds_of_likelihood_in_one_table(tmp_path, capsys):
    from probseq.demo import run_demo

    assert run_demo(tmp_path / "demo", steps=2, quiet=True, test_sequences=3) == 0
    out = capsys.readouterr().out
    table = out[out.index("run "):out.index("How to read it")]
    rows = {line.split()[0] + (" " + line.split()[1] if line.split()[1].startswith("(") else ""): line
            for line in table.splitlines()[2:] if line and not line.startswith(("-", "3 sequences", "vs true"))}
    assert " exact " in rows["gru"] and " bound " in rows["vrnn (iwae)"]
    assert " ≥ " in rows["vrnn (iwae)"]                              # a bound: NLL at least the true one
    assert " ≤ " in rows["rnn-rbm (ais)"] and " ≥ " in rows["rnn-rbm (raise)"]
    assert "3 sequences" in table
    for name in ("gru_samples.mid", "gru_samples.png", "demo.png", "gru/run.json", "rnn-rbm/model.pt"):
        assert (tmp_path / "demo" / name).is_file(), name
