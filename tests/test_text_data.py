"""The ``text`` dataset: contiguous splits, the alphabet with its unknown symbol, training windows,
bits per character in ``evaluate``, and continuing a phrase with ``sample --prime``."""

from __future__ import annotations

import json
import math

import pytest
import torch

from probseq.cli import main
from probseq.data.registry import load_dataset
from probseq.data.sets.text import EMBEDDED_TEXT, UNKNOWN, build_alphabet, decode_text, encode_text
from probseq.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def _text(path):
    return path.read_text(encoding="utf-8").replace("\r\n", "\n")


def test_embedded_sample_splits_are_contiguous_and_complete():
    data = load_dataset("text", max_vocab=1000)
    alphabet = data.meta["alphabet"]
    text = _text(EMBEDDED_TEXT)
    n = data.meta["characters"]
    assert sum(n.values()) == len(text) and n["valid"] == int(0.05 * len(text))
    train_text = text[:n["train"]]
    valid = "".join(decode_text(s, alphabet) for s in data.split("valid"))
    test = "".join(decode_text(s, alphabet) for s in data.split("test"))
    # test characters unseen in training become the unknown symbol; everything else round-trips
    assert valid == "".join(c if c in alphabet else UNKNOWN for c in text[n["train"]:n["train"] + n["valid"]])
    assert test == "".join(c if c in alphabet else UNKNOWN for c in text[n["train"] + n["valid"]:])
    windows = data.split("train")
    assert all(len(w) == 250 for w in windows)
    for i, w in enumerate(windows[:-1]):   # stride 200: windows overlap by 50 characters
        assert decode_text(w, alphabet) == train_text[200 * i:200 * i + 250]
    assert decode_text(windows[-1], alphabet) == train_text[-250:]
    assert data.spec.kind == "categorical" and data.spec.dim == len(alphabet)


def test_alphabet_from_training_text_with_unknown_symbol():
    alphabet = build_alphabet("aaabbc", max_vocab=3, min_count=1)
    assert alphabet == [UNKNOWN, "a", "b"]
    assert build_alphabet("aaabbc", max_vocab=10, min_count=2) == [UNKNOWN, "a", "b"]
    assert encode_text("abcz", alphabet).tolist() == [1, 2, 0, 0]
    assert decode_text(torch.tensor([1, 0, 2]), alphabet) == f"a{UNKNOWN}b"


def test_bad_files_and_options_are_user_errors(tmp_path):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("caf\xe9 ".encode("latin-1") * 50)
    with pytest.raises(UserError, match="UTF-8"):
        load_dataset("text", data_file=latin1)
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("abc")
    with pytest.raises(UserError, match="too few"):
        load_dataset("text", data_file=tiny)
    with pytest.raises(UserError, match="stride"):
        load_dataset("text", window=10, stride=20)


def test_fit_evaluate_in_bits_and_continue_a_phrase(tmp_path, capsys):
    run = tmp_path / "mrnn"
    assert main(["fit", "mrnn", "--data", "text", "--steps", "2", "--quiet", "--set", "hidden=8",
                 "--set", "train_context=50", "--set", "window=60", "--set", "stride=10",
                 "--set", "eval_length=500", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "exact"
    assert result["bits_per_char"] == pytest.approx(result["nll_per_frame"] / math.log(2))
    prime = tmp_path / "p.txt"
    prime.write_text("And God said\n")
    assert main(["sample", str(run), "--prime", str(prime), "--length", "40"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("And God said") and len(out) == 40 + 1   # 40 characters and print's newline
    txt = tmp_path / "s.txt"
    assert main(["sample", str(run), "-n", "2", "--length", "30", "--out", str(txt)]) == 0
    assert len(txt.read_text(encoding="utf-8")) == 30 + 2 + 30 + 1   # two samples, a blank line between
