"""The example script runs with tiny arguments (so it never rots), and its MIDI starts with the prime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from probseq.io.media import read_prime
from probseq.data.sets.polyphonic import load_polyphonic

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "continue_chorale.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("continue_chorale", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_continue_chorale_tiny(tmp_path):
    example = _load_example()
    args = example.parse_args(["--out", str(tmp_path / "out"), "--steps", "2", "--hidden", "8",
                               "--nade-hidden", "4", "--prime-steps", "6", "--length", "12",
                               "-n", "1", "--chorale", "3"])
    report = example.main(args)
    midi, png = (tmp_path / "out" / "continuation.mid"), (tmp_path / "out" / "continuation.png")
    assert midi.is_file() and png.is_file() and png.stat().st_size > 1000
    assert report["prime_frames"] == 6 and len(report["nll_per_frame_of_samples"]) == 1
    dataset = load_polyphonic("jsb")
    prime = dataset.split("test")[3][:6]
    back = read_prime(midi, dataset.meta)
    assert torch.equal(back[:6], prime)
    # the fitted run is a run the CLI can load, and the example can continue a MIDI file with it
    args2 = example.parse_args(["--out", str(tmp_path / "out2"), "--run", str(tmp_path / "out" / "run"),
                                "--midi", str(midi), "--prime-steps", "4", "--length", "8", "-n", "2"])
    report2 = example.main(args2)
    assert report2["n"] == 2
    assert torch.equal(read_prime(tmp_path / "out2" / "continuation.mid", dataset.meta)[:4], back[:4])
