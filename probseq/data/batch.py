"""Batches of variable-length sequences: padded values plus lengths.

Every model in probseq consumes a :class:`Batch`: batch-first padded ``values`` of shape
``(B, T, *event_shape)`` and ``lengths`` of shape ``(B,)``. The mask is derived from the lengths in
exactly one place, :attr:`Batch.mask`; nothing else builds masks. Values beyond ``lengths[i]`` are
padding and must never change a result (the generic model tests fill them with garbage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor

from probseq.errors import UserError

__all__ = ["Batch", "iterate_minibatches"]


@dataclass(frozen=True)
class Batch:
    """Padded sequences.

    Attributes:
        values: ``(B, T, *event_shape)`` floats (binary or real frames) or ``(B, T)`` integers
            (categorical frames). Entries at ``t >= lengths[b]`` are padding.
        lengths: ``(B,)`` int64, each in ``[1, T]``.
    """

    values: Tensor
    lengths: Tensor

    def __post_init__(self) -> None:
        if self.values.dim() < 2:
            raise UserError(
                f"batch values must have shape (batch, time, ...), got shape {tuple(self.values.shape)}"
            )
        if self.lengths.dim() != 1 or self.lengths.shape[0] != self.values.shape[0]:
            raise UserError(
                f"lengths must have shape ({self.values.shape[0]},), got {tuple(self.lengths.shape)}"
            )
        if self.lengths.dtype != torch.long:
            object.__setattr__(self, "lengths", self.lengths.long())
        if self.lengths.numel() and (
            int(self.lengths.min()) < 1 or int(self.lengths.max()) > self.values.shape[1]
        ):
            raise UserError(
                f"every length must lie in [1, {self.values.shape[1]}], got "
                f"{int(self.lengths.min())}..{int(self.lengths.max())}"
            )

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_sequences(cls, sequences: Sequence[Tensor], *, dtype: torch.dtype | None = None,
                       pad_value: float = 0.0) -> "Batch":
        """Pad a list of ``(T_i, *event_shape)`` tensors into one batch."""
        if len(sequences) == 0:
            raise UserError("cannot build a batch from zero sequences")
        seqs = [torch.as_tensor(s) for s in sequences]
        event = seqs[0].shape[1:]
        for i, s in enumerate(seqs):
            if s.dim() < 1 or s.shape[0] == 0:
                raise UserError(f"sequence {i} is empty; every sequence needs at least one frame")
            if s.shape[1:] != event:
                raise UserError(
                    f"sequence {i} has frames of shape {tuple(s.shape[1:])}, expected {tuple(event)}"
                )
        dtype = dtype or seqs[0].dtype
        lengths = torch.tensor([s.shape[0] for s in seqs], dtype=torch.long)
        values = torch.full((len(seqs), int(lengths.max()), *event), pad_value, dtype=dtype)
        for i, s in enumerate(seqs):
            values[i, : s.shape[0]] = s.to(dtype)
        return cls(values, lengths)

    # ---------------------------------------------------------------- derived views
    @property
    def mask(self) -> Tensor:
        """``(B, T)`` bool, True on real frames. The only place a mask is made."""
        steps = torch.arange(self.values.shape[1], device=self.lengths.device)
        return steps.unsqueeze(0) < self.lengths.unsqueeze(1)

    @property
    def batch_size(self) -> int:
        return self.values.shape[0]

    @property
    def max_length(self) -> int:
        return self.values.shape[1]

    @property
    def event_shape(self) -> torch.Size:
        return self.values.shape[2:]

    @property
    def n_frames(self) -> int:
        return int(self.lengths.sum())

    def __len__(self) -> int:
        return self.batch_size

    def padded_with_zeros(self) -> Tensor:
        """``values`` with every padding entry set to zero (NaN-safe: uses ``where``, not a product)."""
        mask = self.mask.reshape(self.mask.shape + (1,) * (self.values.dim() - 2))
        return torch.where(mask, self.values, self.values.new_zeros(()))

    def sequences(self) -> list[Tensor]:
        """The unpadded sequences, a list of ``(T_i, *event_shape)`` tensors."""
        return [self.values[i, : int(n)] for i, n in enumerate(self.lengths)]

    def select(self, index: Tensor | Sequence[int] | slice) -> "Batch":
        """A sub-batch, trimmed to its own longest sequence."""
        lengths = self.lengths[index]
        values = self.values[index]
        if lengths.dim() == 0:
            lengths, values = lengths.unsqueeze(0), values.unsqueeze(0)
        return Batch(values[:, : int(lengths.max())], lengths)

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.values.to(device), self.lengths.to(device))

    def with_values(self, values: Tensor) -> "Batch":
        return Batch(values, self.lengths)


def iterate_minibatches(sequences: Sequence[Tensor], batch_size: int, *, shuffle: bool = True,
                        generator: torch.Generator | None = None,
                        dtype: torch.dtype | None = None) -> Iterator[Batch]:
    """Yield padded minibatches from a list of sequences (one pass, optionally shuffled)."""
    order = (torch.randperm(len(sequences), generator=generator) if shuffle
             else torch.arange(len(sequences)))
    for start in range(0, len(sequences), batch_size):
        idx = order[start : start + batch_size].tolist()
        yield Batch.from_sequences([sequences[i] for i in idx], dtype=dtype)
