"""Sequences with one target each: the examples and batches of sequence-to-vector tasks.

The pathological long-range problems of Hochreiter & Schmidhuber (1997), which Martens &
Sutskever (2011) and Sutskever (2013, §4.3 and ch. 7) use to test optimisers, ask a recurrent
network to read a whole sequence of inputs and emit one answer at its end (the addition problem:
the sum of two marked numbers). An example is a :class:`RegressionExample`; a model collates
examples into a :class:`RegressionBatch` (inputs padded batch-first, the mask derived from the
lengths as in :class:`~probseq.data.batch.Batch`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from probseq.data.batch import Batch
from probseq.errors import UserError

__all__ = ["RegressionExample", "RegressionBatch"]


@dataclass(frozen=True)
class RegressionExample:
    """Inputs ``(T, D)`` float and the target ``(K,)`` float read out after the last input."""

    inputs: Tensor
    target: Tensor

    def __len__(self) -> int:
        return int(self.inputs.shape[0])


@dataclass(frozen=True)
class RegressionBatch:
    """``inputs`` ``(B, T, D)`` (zero past ``lengths``), ``lengths`` ``(B,)``, ``targets`` ``(B, K)``.

    Likelihoods are counted per example (one target each): ``n_frames`` is ``B``.
    """

    inputs: Tensor
    lengths: Tensor
    targets: Tensor

    @classmethod
    def from_examples(cls, examples: Sequence[RegressionExample],
                      dtype: torch.dtype | None = None) -> "RegressionBatch":
        if len(examples) == 0:
            raise UserError("cannot build a batch from zero examples")
        padded = Batch.from_sequences([e.inputs for e in examples], dtype=dtype)
        targets = torch.stack([torch.as_tensor(e.target) for e in examples]).to(padded.values.dtype)
        return cls(padded.padded_with_zeros(), padded.lengths, targets)

    @property
    def mask(self) -> Tensor:
        return Batch(self.inputs, self.lengths).mask

    @property
    def batch_size(self) -> int:
        return self.inputs.shape[0]

    @property
    def n_frames(self) -> int:
        return self.batch_size

    @property
    def frames_per_example(self) -> Tensor:
        return torch.ones(self.batch_size, dtype=torch.long)

    def select(self, index) -> "RegressionBatch":
        lengths = self.lengths[index]
        steps = int(lengths.max())
        return RegressionBatch(self.inputs[index][:, :steps], lengths, self.targets[index])

    def to(self, device) -> "RegressionBatch":
        return RegressionBatch(self.inputs.to(device), self.lengths.to(device), self.targets.to(device))
