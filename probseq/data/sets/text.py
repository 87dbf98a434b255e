"""``text``: any UTF-8 file as a sequence of characters, for character-level models (thesis ch. 5).

Processing, in order (every step is an option with ``--set``, so a run can be reproduced):

1. Read the file as UTF-8 (``--data-file``; without one, the embedded sample
   ``probseq/data/embedded/kjv_genesis_1-11.txt``, Genesis 1-11 of the King James Version, public
   domain, 36 KB). ``\\r\\n`` becomes ``\\n``.
2. Split the characters *contiguously*: the first ``1 - valid_fraction - test_fraction`` (default
   90 %) train, the next 5 % validation, the last 5 % test. Contiguous splits, not shuffled
   windows, so no test text is seen in training.
3. The alphabet: characters of the *training* split by decreasing frequency, kept while seen at
   least ``min_count`` times and at most ``max_vocab`` symbols in all; symbol 0 is the unknown
   symbol :data:`UNKNOWN` that every other character (rare, or unseen in training) becomes.
4. Training examples: windows of ``window`` characters every ``stride`` characters (defaults 250
   and 200, the thesis's protocol). With ``--set train_context=50`` the recurrent models score
   only the last ``window - 50 = 200`` characters of each window in their training loss, the first
   50 only setting up the hidden state, so every training character is scored once and always
   with context. Evaluation examples (validation, test) are consecutive segments of
   ``eval_length`` characters (default 10,000), each scored in full, exactly, from the start of
   the segment (the cold start costs a few characters per segment).

``probseq evaluate`` reports bits per character beside nats (``bits_per_char`` =
``nll_per_frame / ln 2``), and ``probseq sample RUN --prime phrase.txt --length 300`` continues
a phrase (``.txt`` files are read and written as text with this dataset's alphabet).

The dataset's ``meta`` holds ``media = "text"``, ``unit = "character"`` and ``alphabet`` (the
symbols in id order, ``alphabet[0]`` the unknown symbol), everything needed to encode a prime and
decode samples after a reload.
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.io.media import register_prime_reader, register_writer

__all__ = ["load_text", "build_alphabet", "encode_text", "decode_text", "bits_per_character",
           "is_text", "format_samples", "UNKNOWN", "EMBEDDED_TEXT", "DEFAULTS"]

#: how the unknown symbol (id 0) is written when decoding: U+FFFD, the replacement character
UNKNOWN = "\ufffd"
EMBEDDED_TEXT = Path(__file__).resolve().parents[1] / "embedded" / "kjv_genesis_1-11.txt"


def build_alphabet(text: str, *, max_vocab: int, min_count: int) -> list[str]:
    """``[UNKNOWN] +`` the characters of ``text`` by decreasing count (ties by code point), at most
    ``max_vocab`` symbols in all, each seen at least ``min_count`` times."""
    if max_vocab < 2:
        raise UserError(f"text option max_vocab must be at least 2 (the unknown symbol and one "
                        f"character), got {max_vocab}")
    counts = Counter(text)
    kept = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
    return [UNKNOWN] + kept[: max_vocab - 1]


def encode_text(text: str, alphabet: list[str]) -> Tensor:
    """``(len(text),)`` int64 ids; characters outside ``alphabet`` become 0 (unknown)."""
    index = {c: i for i, c in enumerate(alphabet)}
    index.pop(UNKNOWN, None)
    return torch.tensor([index.get(c, 0) for c in text], dtype=torch.long)


def decode_text(ids: Tensor, alphabet: list[str]) -> str:
    return "".join(alphabet[i] for i in ids.tolist())


def bits_per_character(nll_per_frame_nats: float) -> float:
    """Nats per character to bits per character: divide by ``ln 2``."""
    return nll_per_frame_nats / math.log(2)


def is_text(meta: Mapping[str, Any]) -> bool:
    return meta.get("media") == "text" and bool(meta.get("alphabet"))


def _windows(ids: Tensor, window: int, stride: int) -> list[Tensor]:
    if len(ids) <= window:
        return [ids]
    starts = list(range(0, len(ids) - window + 1, stride))
    if starts[-1] + window < len(ids):        # the tail gets a window of its own
        starts.append(len(ids) - window)
    return [ids[s:s + window] for s in starts]


def _segments(ids: Tensor, length: int) -> list[Tensor]:
    return [ids[s:s + length] for s in range(0, len(ids), length)]


@register_dataset(
    "text",
    description="characters of any UTF-8 file, contiguous 90/5/5 splits, training windows of 250 "
                "(options max_vocab, min_count, window, stride, eval_length, valid_fraction, "
                "test_fraction); evaluate reports bits per character",
    source="your own file (--data-file); embedded: Genesis 1-11, King James Version (public domain)",
    needs="file-or-embedded",
)
def load_text(data_file=None, data_dir=None, *, max_vocab: int = 100, min_count: int = 1,
              window: int = 250, stride: int = 200, eval_length: int = 10000,
              valid_fraction: float = 0.05, test_fraction: float = 0.05) -> Dataset:
    """Load a text file as character sequences (see the module docstring for every step)."""
    if data_dir is not None:
        raise UserError("the text dataset reads one file: use --data-file PATH, not --data-dir")
    path = Path(data_file) if data_file is not None else EMBEDDED_TEXT
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded)") from None
    text = text.replace("\r\n", "\n")
    for name, value in (("window", window), ("stride", stride), ("eval_length", eval_length),
                        ("max_vocab", max_vocab), ("min_count", min_count)):
        if int(value) != value or value < 1:
            raise UserError(f"text option {name} must be a positive integer, got {value!r}")
    if stride > window:
        raise UserError(f"text option stride ({stride}) must not exceed window ({window}): "
                        "characters between windows would never be trained on")
    if not (0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1):
        raise UserError("text options valid_fraction and test_fraction must be in (0, 1) and sum "
                        f"to less than 1, got {valid_fraction} and {test_fraction}")
    n = len(text)
    n_test, n_valid = int(n * test_fraction), int(n * valid_fraction)
    n_train = n - n_valid - n_test
    if min(n_train, n_valid, n_test) < 1:
        raise UserError(f"{path} holds {n} characters, too few for a train/valid/test split")
    pieces = {"train": text[:n_train], "valid": text[n_train:n_train + n_valid],
              "test": text[n_train + n_valid:]}
    alphabet = build_alphabet(pieces["train"], max_vocab=int(max_vocab), min_count=int(min_count))
    ids = {k: encode_text(v, alphabet) for k, v in pieces.items()}
    splits = {"train": _windows(ids["train"], int(window), int(stride)),
              "valid": _segments(ids["valid"], int(eval_length)),
              "test": _segments(ids["test"], int(eval_length))}
    meta = {
        "media": "text", "unit": "character", "alphabet": alphabet,
        "characters": {k: len(v) for k, v in pieces.items()},
        "unknown_in_train": int((ids["train"] == 0).sum()),
        "window": int(window), "stride": int(stride), "eval_length": int(eval_length),
        "source": str(path.name),
    }
    return Dataset(name="text", spec=DataSpec("categorical", len(alphabet)), splits=splits, meta=meta)


#: loader options and their defaults, read off the signature
DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(load_text).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
}


# ---------------------------------------------------------------------------- media: .txt
def _read_text_prime(path: Path, meta: dict) -> Tensor:
    """A phrase to continue: the file's text (one trailing newline dropped) in the run's alphabet."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"the prime {path} is not UTF-8 text") from None
    text = text.replace("\r\n", "\n")
    if text.endswith("\n"):
        text = text[:-1]
    if not text:
        raise UserError(f"the prime {path} is empty")
    return encode_text(text, list(meta["alphabet"]))


def _write_text(samples: Batch, path: Path, meta: dict) -> Path:
    path.write_text(format_samples(samples, meta) + "\n", encoding="utf-8")
    return path


def format_samples(samples: Batch, meta: Mapping[str, Any]) -> str:
    """The sampled sequences as text, separated by a blank line."""
    alphabet = list(meta["alphabet"])
    return "\n\n".join(decode_text(s, alphabet) for s in samples.sequences())


register_writer(".txt", _write_text, when=is_text)
register_prime_reader(".txt", _read_text_prime, when=is_text)
