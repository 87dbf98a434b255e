"""Dialogues as examples and padded batches of dialogues.

A dialogue is a sequence of turns, each turn a sequence of word ids ending with ``<eot>``
(:data:`probseq.text.vocab.EOT_ID`). A :class:`DialogueBatch` pads ``B`` dialogues into

* ``tokens``: ``(B, N, L)`` int64, ``tokens[b, n, :turn_lengths[b, n]]`` the ids of turn ``n`` of
  dialogue ``b`` (its last one ``<eot>``), for ``n < n_turns[b]``;
* ``turn_lengths``: ``(B, N)`` tokens per turn, ``<eot>`` included;
* ``n_turns``: ``(B,)`` turns per dialogue.

Everything outside those ranges is padding and never changes a result: the masks
(:attr:`DialogueBatch.turn_mask`, :attr:`DialogueBatch.token_mask`) are derived from the lengths
here and nowhere else, and ``turn_lengths`` of padding turns are ignored too.

``n_frames`` is the number of *predicted tokens*, words plus one ``<eot>`` per turn: the
denominator of the per-word NLL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.text.vocab import EOT_ID, PAD_ID

__all__ = ["Dialogue", "DialogueBatch"]


class Dialogue(list):
    """One dialogue: a list of ``(L_n,)`` int64 tensors (turn ``n``'s ids, ``<eot>`` last).

    It also remembers where it came from, so that a model with a different vocabulary can re-encode
    it from the text (:meth:`probseq.models.vhred.HRED.collate` does):

    Attributes:
        text: the turns as strings (after ``max_turns``), or ``None``.
        vocab_fingerprint: :attr:`probseq.text.vocab.Vocabulary.fingerprint` of the ids' vocabulary.
        max_turn_length: words kept per turn when it was encoded (``None``: all).
        id, topic: the corpus's identifiers, when known.
    """

    def __init__(self, turns: Sequence[Tensor], *, text: Sequence[str] | None = None,
                 vocab_fingerprint: str | None = None, max_turn_length: int | None = None,
                 id: str | None = None, topic: str | None = None) -> None:
        super().__init__(torch.as_tensor(t, dtype=torch.long) for t in turns)
        self.text = None if text is None else list(text)
        self.vocab_fingerprint = vocab_fingerprint
        self.max_turn_length = max_turn_length
        self.id = id
        self.topic = topic

    @property
    def n_tokens(self) -> int:
        return sum(int(t.numel()) for t in self)


@dataclass(frozen=True)
class DialogueBatch:
    """``B`` padded dialogues (see the module docstring for the layout)."""

    tokens: Tensor
    turn_lengths: Tensor
    n_turns: Tensor

    def __post_init__(self) -> None:
        if self.tokens.dim() != 3:
            raise UserError(f"dialogue tokens must have shape (dialogues, turns, tokens), got "
                            f"{tuple(self.tokens.shape)}")
        b, n, length = self.tokens.shape
        if self.turn_lengths.shape != (b, n):
            raise UserError(f"turn_lengths must have shape {(b, n)}, got {tuple(self.turn_lengths.shape)}")
        if self.n_turns.shape != (b,):
            raise UserError(f"n_turns must have shape ({b},), got {tuple(self.n_turns.shape)}")
        object.__setattr__(self, "tokens", self.tokens.long())
        object.__setattr__(self, "turn_lengths", self.turn_lengths.long())
        object.__setattr__(self, "n_turns", self.n_turns.long())
        if b and (int(self.n_turns.min()) < 1 or int(self.n_turns.max()) > n):
            raise UserError(f"every dialogue needs between 1 and {n} turns, got "
                            f"{int(self.n_turns.min())}..{int(self.n_turns.max())}")
        real = self.turn_lengths[self.turn_mask]
        if real.numel() and (int(real.min()) < 1 or int(real.max()) > length):
            raise UserError(f"every turn needs between 1 and {length} tokens, got "
                            f"{int(real.min())}..{int(real.max())}")

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_dialogues(cls, dialogues: Sequence[Sequence[Tensor]]) -> "DialogueBatch":
        """Pad a list of dialogues (lists of ``(L_n,)`` id tensors, each ending with ``<eot>``)."""
        if len(dialogues) == 0:
            raise UserError("cannot build a batch from zero dialogues")
        first = next((t for d in dialogues for t in d), None)
        device = first.device if isinstance(first, Tensor) else torch.device("cpu")  # ids stay put
        for i, d in enumerate(dialogues):
            if len(d) == 0:
                raise UserError(f"dialogue {i} has no turns")
            for n, t in enumerate(d):
                t = torch.as_tensor(t, device=device)
                if t.dim() != 1 or t.numel() == 0:
                    raise UserError(f"turn {n} of dialogue {i} must be a non-empty 1-d tensor of ids, "
                                    f"got shape {tuple(t.shape)}")
                if int(t[-1]) != EOT_ID:
                    raise UserError(f"turn {n} of dialogue {i} does not end with <eot> (id {EOT_ID})")
        n_max = max(len(d) for d in dialogues)
        l_max = max(int(torch.as_tensor(t, device=device).numel()) for d in dialogues for t in d)
        tokens = torch.full((len(dialogues), n_max, l_max), PAD_ID, dtype=torch.long, device=device)
        turn_lengths = torch.zeros(len(dialogues), n_max, dtype=torch.long, device=device)
        for i, d in enumerate(dialogues):
            for n, t in enumerate(d):
                t = torch.as_tensor(t, dtype=torch.long, device=device)
                tokens[i, n, : t.numel()] = t
                turn_lengths[i, n] = t.numel()
        n_turns = torch.tensor([len(d) for d in dialogues], dtype=torch.long, device=device)
        return cls(tokens, turn_lengths, n_turns)

    def to(self, device: torch.device | str) -> "DialogueBatch":
        return DialogueBatch(self.tokens.to(device), self.turn_lengths.to(device), self.n_turns.to(device))

    # ---------------------------------------------------------------- derived views
    @property
    def turn_mask(self) -> Tensor:
        """``(B, N)`` bool, True on real turns."""
        steps = torch.arange(self.tokens.shape[1], device=self.n_turns.device)
        return steps.unsqueeze(0) < self.n_turns.unsqueeze(1)

    @property
    def token_mask(self) -> Tensor:
        """``(B, N, L)`` bool, True on real tokens of real turns."""
        steps = torch.arange(self.tokens.shape[2], device=self.turn_lengths.device)
        within = steps.view(1, 1, -1) < self.turn_lengths.unsqueeze(-1)
        return within & self.turn_mask.unsqueeze(-1)

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def n_frames(self) -> int:
        """Number of predicted tokens (words and ``<eot>`` s) in the batch."""
        return int(self.frames_per_example.sum())

    @property
    def frames_per_example(self) -> Tensor:
        """``(B,)`` predicted tokens per dialogue (used by :func:`probseq.evaluate.scoring.score_split`)."""
        return torch.where(self.turn_mask, self.turn_lengths, torch.zeros_like(self.turn_lengths)).sum(1)

    @property
    def lengths(self) -> Tensor:
        """``(B,)`` turns per dialogue (the dialogue's length in turns)."""
        return self.n_turns

    def __len__(self) -> int:
        return self.batch_size

    def dialogues(self) -> list[list[Tensor]]:
        """The unpadded dialogues: lists of ``(L_n,)`` id tensors."""
        return [[self.tokens[b, n, : int(self.turn_lengths[b, n])] for n in range(int(self.n_turns[b]))]
                for b in range(self.batch_size)]

    def select(self, index: Sequence[int]) -> "DialogueBatch":
        """A sub-batch (re-padded to its own sizes)."""
        dialogues = self.dialogues()
        return DialogueBatch.from_dialogues([dialogues[i] for i in index])
