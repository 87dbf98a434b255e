"""Dialogue corpora as sequences of turns of word ids: ``dialogue`` and ``dialogue-sample``.

``dialogue`` reads a directory (``--data-dir``) holding ``train.jsonl.gz``, ``valid.jsonl.gz`` and
``test.jsonl.gz`` (plain ``.jsonl`` is accepted too; ``valid`` and ``test`` may be absent), one
conversation per line: ``{"id": str, "topic": str, "turns": [str, ...]}``. The project's copy is
the Self-dialogue Corpus (Fainberg et al. 2018, BSD-3; ``shared/data/dialogue/SOURCE.md``).
``dialogue-sample`` is 200 conversations of that corpus shipped inside the package
(``probseq/data/embedded/dialogue_sample.jsonl.gz``, notice next to it), split 160/20/20, for tests
and demos without the corpus.

Processing, in order (each step documented so a run can be reproduced):

1. Read the splits; keep the first ``max_dialogues`` conversations of ``train`` and the first
   ``max_eval_dialogues`` of ``valid`` and ``test`` (file order; ``None`` keeps all).
2. Keep the first ``max_turns`` turns of each conversation.
3. Build the :class:`~probseq.text.vocab.Vocabulary` from the kept *training* turns:
   :func:`~probseq.text.tokenizer.tokenize` (lowercase + regex), words by frequency, at most
   ``vocab_size`` entries including ``<pad>``, ``<unk>``, ``<eot>``, each seen ``min_count`` times.
4. Encode every turn: its first ``max_turn_length`` words (unknown ones as ``<unk>``), then ``<eot>``.

Each example is a :class:`~probseq.text.batch.Dialogue` (a list of ``(L_n,)`` int64 tensors that also
carries its text, so a model with another vocabulary re-encodes it). The spec is
``DataSpec("categorical", len(vocab))``; ``meta["vocab"]`` holds the vocabulary as a list of strings.
All options can be given as ``probseq fit ... --set max_dialogues=2000``.

Media: ``probseq sample RUN -n N --length TURNS --out FILE`` writes whole generated dialogues as
``.txt`` (speakers ``A:``/``B:`` alternate, a blank line between dialogues), ``.jsonl`` (the
corpus format, ``{"id": "sample-1", "turns": [...]}``), decoding with ``meta["vocab"]``, or ``.npz``
(the padded ids).
"""

from __future__ import annotations

import gzip
import json
from importlib import resources
from pathlib import Path
from typing import Any

from probseq.io.media import register_writer
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.text.batch import Dialogue, DialogueBatch
from probseq.text.vocab import Vocabulary

__all__ = ["load_dialogue", "load_dialogue_sample", "read_dialogues", "build_dialogue_dataset",
           "EMBEDDED_DIALOGUES"]

#: file name of the embedded sample inside ``probseq/data/embedded``
EMBEDDED_DIALOGUES = "dialogue_sample.jsonl.gz"
SPLITS = ("train", "valid", "test")
_SOURCE = ("Self-dialogue Corpus, Fainberg et al. 2018, arXiv:1809.06641, "
           "github.com/jfainberg/self_dialogue_corpus (BSD-3)")


def read_dialogues(path: str | Path) -> list[dict[str, Any]]:
    """Parse a ``.jsonl`` or ``.jsonl.gz`` file of ``{"id", "topic", "turns": [str, ...]}`` objects."""
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    out = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    raise UserError(f"{path}, line {line_no}: not valid JSON") from None
                turns = obj.get("turns") if isinstance(obj, dict) else None
                if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
                    raise UserError(f"{path}, line {line_no}: expected an object with \"turns\": a list "
                                    "of strings")
                if not turns:
                    raise UserError(f"{path}, line {line_no}: the conversation has no turns")
                out.append({"id": str(obj.get("id", f"{path.name}:{line_no}")),
                            "topic": obj.get("topic"), "turns": turns})
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} ({type(exc).__name__}: {exc})") from None
    return out


def _split_file(data_dir: Path, split: str) -> Path | None:
    for name in (f"{split}.jsonl.gz", f"{split}.jsonl"):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _check_cap(name: str, value: Any, minimum: int = 1) -> int | None:
    if value is None:
        return None
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise UserError(f"dataset option {name} must be an integer, got {value!r}") from None
    if value < minimum:
        raise UserError(f"dataset option {name} must be at least {minimum}, got {value}")
    return value


def build_dialogue_dataset(name: str, raw: dict[str, list[dict[str, Any]]], *, source: str,
                           max_dialogues: int | None = None, max_eval_dialogues: int | None = None,
                           max_turns: int | None = None, max_turn_length: int | None = None,
                           vocab_size: int = 10000, min_count: int = 1) -> Dataset:
    """Steps 1-4 of the module docstring on already-parsed conversations ``raw[split]``."""
    max_dialogues = _check_cap("max_dialogues", max_dialogues)
    max_eval_dialogues = _check_cap("max_eval_dialogues", max_eval_dialogues)
    max_turns = _check_cap("max_turns", max_turns)
    max_turn_length = _check_cap("max_turn_length", max_turn_length, minimum=0)
    vocab_size = _check_cap("vocab_size", vocab_size, minimum=4)
    min_count = _check_cap("min_count", min_count)
    kept = {}
    for split, convs in raw.items():
        cap = max_dialogues if split == "train" else max_eval_dialogues
        kept[split] = [{**c, "turns": c["turns"][:max_turns]} for c in convs[:cap]]
    if not kept.get("train"):
        raise UserError(f"dataset {name!r} has no training conversations")
    vocab = Vocabulary.build((t for c in kept["train"] for t in c["turns"]), max_size=vocab_size,
                             min_count=min_count)
    fingerprint = vocab.fingerprint
    splits = {}
    for split in SPLITS:
        splits[split] = [
            Dialogue([vocab.encode(t, max_words=max_turn_length) for t in c["turns"]], text=c["turns"],
                     vocab_fingerprint=fingerprint, max_turn_length=max_turn_length, id=c["id"],
                     topic=c.get("topic"))
            for c in kept.get(split, [])
        ]
    meta = {
        "media": "dialogue", "vocab": vocab.to_list(), "vocab_fingerprint": fingerprint,
        "max_turn_length": max_turn_length, "max_turns": max_turns, "source": source,
        "n_dialogues": {s: len(v) for s, v in splits.items()},
    }
    return Dataset(name, DataSpec("categorical", len(vocab)), splits, meta)


@register_dataset("dialogue", description="open-domain two-speaker dialogues (turns of lowercased word "
                  "tokens, <eot> ends a turn); for vhred / hred", source=_SOURCE, needs="dir",
                  home="dialogue/train.jsonl*")
def load_dialogue(data_file: str | Path | None = None, data_dir: str | Path | None = None, *,
                  max_dialogues: int | None = None, max_eval_dialogues: int | None = None,
                  max_turns: int | None = None, max_turn_length: int | None = None,
                  vocab_size: int = 10000, min_count: int = 1) -> Dataset:
    """Load a directory of ``{train,valid,test}.jsonl[.gz]`` dialogue files (see the module docstring)."""
    if data_file is not None:
        raise UserError("dataset 'dialogue' reads a directory of train/valid/test .jsonl.gz files; "
                        "pass it with --data-dir")
    if data_dir is None:
        raise UserError("dataset 'dialogue' needs --data-dir DIR holding train.jsonl.gz (and valid, test); "
                        "use --data dialogue-sample for the small sample shipped with probseq")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data-dir {data_dir} is not a directory")
    raw = {}
    for split in SPLITS:
        path = _split_file(data_dir, split)
        if path is None:
            if split == "train":
                raise UserError(f"{data_dir} holds no train.jsonl.gz or train.jsonl")
            continue
        raw[split] = read_dialogues(path)
    return build_dialogue_dataset("dialogue", raw, source=str(data_dir), max_dialogues=max_dialogues,
                                  max_eval_dialogues=max_eval_dialogues, max_turns=max_turns,
                                  max_turn_length=max_turn_length, vocab_size=vocab_size,
                                  min_count=min_count)


@register_dataset("dialogue-sample", description="200 conversations of the Self-dialogue Corpus shipped "
                  "with probseq (160/20/20 split), for tests and demos of vhred / hred",
                  source=_SOURCE + "; see probseq/data/embedded/DIALOGUE_SAMPLE_NOTICE.md", needs="embedded")
def load_dialogue_sample(data_file: str | Path | None = None, data_dir: str | Path | None = None, *,
                         max_dialogues: int | None = None, max_eval_dialogues: int | None = None,
                         max_turns: int | None = None, max_turn_length: int | None = None,
                         vocab_size: int = 10000, min_count: int = 1) -> Dataset:
    """The embedded sample, split 160/20/20 in file order (options as for ``dialogue``)."""
    if data_file is not None or data_dir is not None:
        raise UserError("dataset 'dialogue-sample' is embedded; use --data dialogue --data-dir DIR for "
                        "your own files")
    with resources.as_file(resources.files("probseq.data") / "embedded" / EMBEDDED_DIALOGUES) as path:
        if not Path(path).is_file():
            raise UserError(f"the embedded dialogue sample {path} is missing; reinstall probseq")
        convs = read_dialogues(path)
    raw = {"train": convs[:160], "valid": convs[160:180], "test": convs[180:200]}
    return build_dialogue_dataset("dialogue-sample", raw, source=f"embedded:{EMBEDDED_DIALOGUES}",
                                  max_dialogues=max_dialogues, max_eval_dialogues=max_eval_dialogues,
                                  max_turns=max_turns, max_turn_length=max_turn_length,
                                  vocab_size=vocab_size, min_count=min_count)


# ---------------------------------------------------------------------------- media writers
def _decoded(samples: Any, meta: dict) -> list[list[str]]:
    if not isinstance(samples, DialogueBatch):
        raise UserError(f"dialogue files hold generated dialogues; got {type(samples).__name__}")
    if not meta.get("vocab"):
        raise UserError("the run's metadata holds no vocabulary, so the dialogues cannot be written as text")
    vocab = Vocabulary.from_list(meta["vocab"])
    return [[vocab.decode(t.tolist()) for t in d] for d in samples.dialogues()]


def write_dialogue_text(samples: DialogueBatch, path: Path, meta: dict) -> Path:
    """Readable text: one ``A: ...`` / ``B: ...`` line per turn, a blank line between dialogues."""
    blocks = ["\n".join(f"{'AB'[n % 2]}: {turn}" for n, turn in enumerate(d)) for d in _decoded(samples, meta)]
    Path(path).write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
    return Path(path)


def write_dialogue_jsonl(samples: DialogueBatch, path: Path, meta: dict) -> Path:
    """The corpus format: one ``{"id": "sample-i", "turns": [...]}`` object per line."""
    lines = [json.dumps({"id": f"sample-{i + 1}", "turns": d}, ensure_ascii=False)
             for i, d in enumerate(_decoded(samples, meta))]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Path(path)


def write_dialogue_npz(samples: DialogueBatch, path: Path, meta: dict) -> Path:
    """The padded ids: arrays ``tokens (B, N, L)``, ``turn_lengths (B, N)``, ``n_turns (B,)``."""
    import numpy as np

    if not isinstance(samples, DialogueBatch):
        raise UserError(f"dialogue files hold generated dialogues; got {type(samples).__name__}")
    np.savez_compressed(path, tokens=samples.tokens.numpy(), turn_lengths=samples.turn_lengths.numpy(),
                        n_turns=samples.n_turns.numpy())
    return Path(path)


def _not_for_dialogues(samples: Any, path: Path, meta: dict) -> None:
    raise UserError(f"{Path(path).suffix} files cannot hold dialogues; write .txt, .jsonl or .npz")


def _is_dialogue(meta) -> bool:
    return meta.get("media") == "dialogue"


register_writer(".txt", write_dialogue_text, when=_is_dialogue)
register_writer(".jsonl", write_dialogue_jsonl, when=_is_dialogue)
register_writer(".npz", write_dialogue_npz, when=_is_dialogue)
for _ext in (".png", ".gif", ".mid", ".midi"):
    register_writer(_ext, _not_for_dialogues, when=_is_dialogue)
