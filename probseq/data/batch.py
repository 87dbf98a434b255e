"""Batches of variable-length sequences: padded values plus lengths.

Every model in probseq consumes a :class:`Batch`: batch-first padded ``values`` of shape
``(B, T, *event_shape)`` and ``lengths`` of shape ``(B,)``. The mask is derived from the lengths in
exactly one place, :attr:`Batch.mask`; nothing else builds masks. Values beyond ``lengths[i]`` are
padding and must never change a result (the generic model tests fill them with garbage).

**Missing values are not padding.** A batch may also carry ``observed``, a boolean tensor of the
values' shape: ``False`` marks a value that was never observed (a NaN in the input file, a dropped
marker, a region of a score marked missing). Missing entries hold 0 in ``values`` (never NaN, so
arithmetic stays finite), always together with a ``False`` in ``observed``; ``observed=None`` means
everything was observed. Models score the observed part and say how (:mod:`probseq.missing`).
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
        observed: ``None`` (everything observed) or a bool tensor of the shape of ``values``,
            ``False`` where a value is missing (``values`` holds 0 there). Entries in the padding
            are ignored. At least one value of the real frames must be observed.
    """

    values: Tensor
    lengths: Tensor
    observed: Tensor | None = None

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
        if self.observed is not None:
            self._check_observed()

    def _check_observed(self) -> None:
        observed = self.observed
        if tuple(observed.shape) != tuple(self.values.shape):
            raise UserError(
                f"the observed mask must have the shape of the values {tuple(self.values.shape)}, "
                f"got {tuple(observed.shape)}"
            )
        if observed.dtype != torch.bool:
            if observed.is_floating_point() and not bool(((observed == 0) | (observed == 1)).all()):
                raise UserError("the observed mask must hold only True/False (or 1/0)")
            observed = observed.bool()
            object.__setattr__(self, "observed", observed)
        if not bool(observed.all()):   # whatever a caller left at a missing entry (NaN too) becomes 0
            object.__setattr__(self, "values",
                               torch.where(observed, self.values, self.values.new_zeros(())))
        mask = self.mask.reshape(self.mask.shape + (1,) * (self.values.dim() - 2)).to(observed.device)
        if self.values.numel() and not bool((observed & mask).any()):
            raise UserError("every value of the batch is missing; there is nothing observed to score, "
                            "fit or condition on")

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
        holes = [torch.isnan(s) if s.is_floating_point() else None for s in seqs]
        observed = None
        if any(h is not None and bool(h.any()) for h in holes):
            # NaN means missing: 0 in ``values`` together with False in ``observed``
            observed = torch.ones(values.shape, dtype=torch.bool)
            for i, (s, h) in enumerate(zip(seqs, holes)):
                if h is not None:
                    observed[i, : s.shape[0]] = ~h
                    s = torch.where(h, torch.zeros_like(s), s)
                values[i, : s.shape[0]] = s.to(dtype)
        else:
            for i, s in enumerate(seqs):
                values[i, : s.shape[0]] = s.to(dtype)
        return cls(values, lengths, observed)

    # ---------------------------------------------------------------- derived views
    @property
    def mask(self) -> Tensor:
        """``(B, T)`` bool, True on real frames. The only place a mask is made."""
        steps = torch.arange(self.values.shape[1], device=self.lengths.device)
        return steps.unsqueeze(0) < self.lengths.unsqueeze(1)

    @property
    def has_missing(self) -> bool:
        """Whether any value of a real frame is missing (``observed`` False inside ``lengths``)."""
        if self.observed is None:
            return False
        mask = self.mask.reshape(self.mask.shape + (1,) * (self.values.dim() - 2))
        return bool((~self.observed & mask).any())

    @property
    def observed_or_all(self) -> Tensor:
        """``observed``, or an all-True mask of the values' shape when nothing is missing."""
        if self.observed is not None:
            return self.observed
        return torch.ones(self.values.shape, dtype=torch.bool, device=self.values.device)

    @property
    def n_observed(self) -> int:
        """The number of observed values in the real frames (not frames: values)."""
        mask = self.mask.reshape(self.mask.shape + (1,) * (self.values.dim() - 2))
        return int((self.observed_or_all & mask).sum())

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
        observed = None if self.observed is None else self.observed[index]
        if lengths.dim() == 0:
            lengths, values = lengths.unsqueeze(0), values.unsqueeze(0)
            observed = None if observed is None else observed.unsqueeze(0)
        steps = int(lengths.max())
        return Batch(values[:, :steps], lengths, None if observed is None else observed[:, :steps])

    def to(self, device: torch.device | str) -> "Batch":
        return Batch(self.values.to(device), self.lengths.to(device),
                     None if self.observed is None else self.observed.to(device))

    def with_values(self, values: Tensor) -> "Batch":
        return Batch(values, self.lengths, self.observed)

    def fully_observed(self) -> "Batch":
        """The same values and lengths with ``observed=None`` (what a model scores when it treats the
        filled-in values as data, e.g. after infilling)."""
        return Batch(self.values, self.lengths)


def iterate_minibatches(sequences: Sequence[Tensor], batch_size: int, *, shuffle: bool = True,
                        generator: torch.Generator | None = None,
                        dtype: torch.dtype | None = None) -> Iterator[Batch]:
    """Yield padded minibatches from a list of sequences (one pass, optionally shuffled)."""
    order = (torch.randperm(len(sequences), generator=generator) if shuffle
             else torch.arange(len(sequences)))
    for start in range(0, len(sequences), batch_size):
        idx = order[start : start + batch_size].tolist()
        yield Batch.from_sequences([sequences[i] for i in idx], dtype=dtype)
