"""A model's vocabulary kept in its ``state_dict``, so a checkpoint alone tokenises text as training did.

:class:`StoredVocabulary` is a mixin for :class:`torch.nn.Module` models of text (HRED, VHRED): the
:class:`~probseq.text.vocab.Vocabulary` lives in the ``uint8`` buffer ``vocab_bytes`` (UTF-8,
newline-separated), whose size follows the incoming checkpoint on load; the decoded vocabulary is
cached. The model sets ``vocab_size`` (the size its layers were built for) and ``name``.
"""

from __future__ import annotations

from typing import Sequence

import torch

from probseq.errors import UserError
from probseq.text.vocab import Vocabulary

__all__ = ["StoredVocabulary"]


class StoredVocabulary:
    """Mixin: the buffer ``vocab_bytes`` and the :attr:`vocabulary` it holds (``None`` when empty)."""

    vocab_size: int
    name: str

    def init_vocabulary_buffer(self, tokens: Sequence[str] | None = None) -> None:
        """Register the empty ``vocab_bytes`` buffer (call from ``__init__``), then store ``tokens`` if given."""
        self.register_buffer("vocab_bytes", torch.zeros(0, dtype=torch.uint8))
        self._vocab_cache: Vocabulary | None = None
        if tokens is not None:
            self.set_vocabulary(Vocabulary.from_list(tokens))

    def set_vocabulary(self, vocab: Vocabulary) -> None:
        """Store ``vocab`` in the ``vocab_bytes`` buffer (so it travels with the ``state_dict``)."""
        if len(vocab) != self.vocab_size:
            raise UserError(f"the vocabulary has {len(vocab)} entries but the model was built for "
                            f"{self.vocab_size}")
        data = "\n".join(vocab.to_list()).encode("utf-8")
        self.vocab_bytes = torch.tensor(list(data), dtype=torch.uint8)
        self._vocab_cache = vocab

    @property
    def vocabulary(self) -> Vocabulary | None:
        """The model's vocabulary, or ``None`` if it was never given one."""
        if self._vocab_cache is None and self.vocab_bytes.numel():
            tokens = bytes(self.vocab_bytes.tolist()).decode("utf-8").split("\n")
            self._vocab_cache = Vocabulary.from_list(tokens)
        return self._vocab_cache

    def _require_vocabulary(self) -> Vocabulary:
        vocab = self.vocabulary
        if vocab is None:
            raise UserError(f"model {self.name!r} has no vocabulary; fit it on a dialogue dataset or "
                            "build it with vocab=[...]")
        return vocab

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "vocab_bytes"
        if key in state_dict:  # the buffer's size depends on the vocabulary: take the incoming one
            self.vocab_bytes = torch.empty_like(state_dict[key])
            self._vocab_cache = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
