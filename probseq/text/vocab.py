"""A vocabulary built from a corpus: special symbols first, then words by frequency, capped.

Ids are fixed for the special symbols, so models can rely on them without a vocabulary at hand:

=========  ====  ===========================================================================
symbol     id    meaning
=========  ====  ===========================================================================
``<pad>``  0     padding; never a target, its logit is masked out of every softmax
``<unk>``  1     any word not in the vocabulary (and the word-dropout replacement)
``<eot>``  2     end of turn: the last token of every turn (the dialogue's end symbol)
=========  ====  ===========================================================================

Words follow in order of decreasing count in the corpus, ties broken alphabetically, so the
vocabulary is a deterministic function of the corpus and the options ``max_size`` (total size,
specials included) and ``min_count``. A :class:`Vocabulary` is stored in a checkpoint as a plain
list of strings (:meth:`Vocabulary.to_list`), which ``torch.load(weights_only=True)`` accepts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Iterable, Sequence

from probseq.errors import UserError
from probseq.text.tokenizer import detokenize, tokenize

__all__ = ["Vocabulary", "PAD", "UNK", "EOT", "PAD_ID", "UNK_ID", "EOT_ID", "SPECIALS"]

PAD, UNK, EOT = "<pad>", "<unk>", "<eot>"
PAD_ID, UNK_ID, EOT_ID = 0, 1, 2
SPECIALS = (PAD, UNK, EOT)


class Vocabulary:
    """Maps tokens to ids and back; ``<pad>``, ``<unk>``, ``<eot>`` are ids 0, 1, 2."""

    def __init__(self, tokens: Sequence[str]) -> None:
        tokens = list(tokens)
        if tuple(tokens[:3]) != SPECIALS:
            raise UserError(f"a vocabulary must start with {', '.join(SPECIALS)}; got {tokens[:3]}")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t, c in Counter(tokens).items() if c > 1)
            raise UserError(f"the vocabulary lists {dup!r} twice")
        self.tokens = tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, texts: Iterable[str], *, max_size: int = 10000, min_count: int = 1) -> "Vocabulary":
        """Count the tokens of ``texts``; keep the ``max_size - 3`` most frequent with count >= ``min_count``."""
        if max_size < len(SPECIALS) + 1:
            raise UserError(f"vocabulary size must be at least {len(SPECIALS) + 1}, got {max_size}")
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(tokenize(text))
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        return cls(list(SPECIALS) + ranked[: max_size - len(SPECIALS)])

    @classmethod
    def from_list(cls, tokens: Sequence[str]) -> "Vocabulary":
        return cls(tokens)

    def to_list(self) -> list[str]:
        return list(self.tokens)

    # ------------------------------------------------------------------ use
    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def __contains__(self, token: str) -> bool:
        return token in self.index

    @property
    def fingerprint(self) -> str:
        """A short hash of the token list: equal fingerprints mean identical ids."""
        return hashlib.sha1("\n".join(self.tokens).encode("utf-8")).hexdigest()[:16]

    def encode(self, text: str, *, max_words: int | None = None, end: bool = True) -> list[int]:
        """Token ids of ``text`` (unknown words -> ``<unk>``), cut to ``max_words``, then ``<eot>`` if ``end``."""
        words = tokenize(text)
        if max_words is not None:
            words = words[:max_words]
        ids = [self.index.get(w, UNK_ID) for w in words]
        return ids + [EOT_ID] if end else ids

    def decode(self, ids: Iterable[int], *, stop_at_end: bool = True) -> str:
        """Readable text of ``ids``: stops at the first ``<eot>`` (if ``stop_at_end``), drops ``<pad>``."""
        words = []
        for i in ids:
            i = int(i)
            if i == EOT_ID and stop_at_end:
                break
            if i == PAD_ID:
                continue
            if not 0 <= i < len(self.tokens):
                raise ValueError(f"token id {i} is outside the vocabulary of size {len(self.tokens)}")
            words.append(self.tokens[i])
        return detokenize(words)
