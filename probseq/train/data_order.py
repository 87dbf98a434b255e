"""What the fit loop trains on, step by step: a seeded, resumable, shardable sequence of examples.

An *epoch plan* is a list of :class:`Piece` records ``(sequence, start, stop, shift)`` in a random
order; step ``s`` of an epoch trains on the pieces ``plan[p : p + batch_size]``. The plan of epoch
``e`` is a pure function of ``(seed, e)`` (its random numbers come from a generator seeded by
``SeedSequence([seed, e])``), so resuming needs only ``(epoch, position)`` and a distributed run
can give rank ``r`` of ``W`` the slice ``plan[r::W]`` of the very same plan.

Three options shape the pieces, each usable with any dataset whose examples are ``(T, D)`` frames:

``train_chunk = L`` (windows of long sequences)
    Each sequence longer than ``L`` is cut into consecutive windows of ``L`` frames starting at a
    random offset ``o ~ U{0, ..., L-1}`` drawn afresh every epoch (the first, shorter piece
    ``[0, o)`` is kept too), so an epoch still covers every frame once and the window borders move
    from epoch to epoch. Each window is trained as a sequence of its own, starting from the model's
    initial state (as Boulanger-Lewandowski et al. 2012 trained on long piano pieces). The
    trainer's default ``train_chunk=auto`` chooses ``L`` from a frame budget for long recordings
    and then, for models that can, trains the windows in order with the recurrent state carried
    between them instead (truncated BPTT, :mod:`probseq.train.streams`).

``transpose = K`` (piano-roll augmentation)
    Each piece is shifted by a whole number of semitones drawn uniformly from those in
    ``[-K, K]`` that keep every sounding note of the piece on the keyboard (Boulanger-Lewandowski
    et al. 2012, §6: transposition as data augmentation). Only for ``media = "pianoroll"`` datasets.

``fresh = true`` (new data on every update)
    Instead of the training split, every step draws ``batch_size`` new sequences from the
    dataset's generator (:attr:`~probseq.data.registry.Dataset.fresh`), seeded by
    ``SeedSequence([seed, step])``: Sutskever (2013, §3.10) trained on bouncing balls so that "no
    training sequence is seen twice". The training split is still what ``model.prepare`` sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from probseq.errors import UserError

__all__ = ["Piece", "EpochPlan", "derived_generator", "check_plan_options", "transposition_range", "transpose_keys",
           "fresh_examples"]

_PLAN, _FRESH = 0, 1   # salts of the seed streams


def derived_generator(*keys: int) -> torch.Generator:
    """A ``torch.Generator`` seeded by ``SeedSequence(keys)``: independent streams per key tuple."""
    seed = int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


@dataclass(frozen=True)
class Piece:
    """Frames ``start:stop`` of training sequence ``index``, shifted by ``shift`` semitones."""

    index: int
    start: int = 0
    stop: int | None = None
    shift: int = 0


def transposition_range(frames: torch.Tensor, k_max: int) -> tuple[int, int]:
    """The shifts in ``[-k_max, k_max]`` that keep every active key of ``frames`` ``(T, D)`` in range."""
    keys = frames.detach().ne(0).any(0).nonzero().flatten()
    if keys.numel() == 0:
        return 0, 0
    return max(-k_max, -int(keys.min())), min(k_max, frames.shape[-1] - 1 - int(keys.max()))


def transpose_keys(frames: torch.Tensor, k: int) -> torch.Tensor:
    """``frames`` with key ``j`` moved to ``j + k`` (every active key must stay in range)."""
    if k == 0:
        return frames
    out = torch.zeros_like(frames)
    if k > 0:
        out[:, k:] = frames[:, :-k]
    else:
        out[:, :k] = frames[:, -k:]
    return out


def check_plan_options(opts: dict[str, Any], dataset) -> None:
    """Refuse option/dataset combinations that cannot work, with one clear sentence."""
    chunk, k, fresh = int(opts["train_chunk"]), int(opts["transpose"]), bool(opts["fresh"])
    if chunk < 0 or k < 0:
        raise UserError("train_chunk and transpose must be non-negative")
    train = dataset.split("train")
    if (chunk or k) and not all(isinstance(e, torch.Tensor) and e.dim() == 2 for e in train):
        raise UserError(f"train_chunk and transpose need examples of (time, dim) frames; dataset "
                        f"{dataset.name!r} has other examples")
    if k and (dataset.meta or {}).get("media") != "pianoroll":
        raise UserError(f"transpose shifts piano-roll keys; dataset {dataset.name!r} is not a piano roll")
    if fresh and getattr(dataset, "fresh", None) is None:
        raise UserError(f"fresh=true draws new training sequences on every step; dataset "
                        f"{dataset.name!r} has no generator (only generated datasets such as "
                        "bouncing-balls do)")


class EpochPlan:
    """The pieces of one epoch in training order (see the module docstring).

    Args:
        examples: the training split.
        epoch: which epoch (0-based); with ``seed`` it fixes every random choice.
        train_chunk / transpose: the options of the module docstring (0 disables).
    """

    def __init__(self, examples: Sequence[Any], *, seed: int, epoch: int, train_chunk: int = 0,
                 transpose: int = 0) -> None:
        self.examples = examples
        gen = derived_generator(seed, epoch, _PLAN)
        pieces: list[Piece] = []
        for i, example in enumerate(examples):
            length = len(example)
            if train_chunk and length > train_chunk:
                offset = int(torch.randint(train_chunk, (), generator=gen))
                bounds = ([0] if offset else []) + list(range(offset, length, train_chunk)) + [length]
                pieces.extend(Piece(i, a, b) for a, b in zip(bounds[:-1], bounds[1:]))
            else:
                pieces.append(Piece(i))
        if transpose:
            shifted = []
            for p in pieces:
                lo, hi = transposition_range(examples[p.index][p.start:p.stop], transpose)
                k = int(torch.randint(lo, hi + 1, (), generator=gen))
                shifted.append(Piece(p.index, p.start, p.stop, k))
            pieces = shifted
        order = torch.randperm(len(pieces), generator=gen).tolist()
        self.pieces = [pieces[j] for j in order]

    def __len__(self) -> int:
        return len(self.pieces)

    def shard(self, rank: int, world: int) -> list[Piece]:
        """The pieces rank ``rank`` of ``world`` processes trains on (every ``world``-th one)."""
        return self.pieces[rank::world]

    def examples_at(self, position: int, count: int) -> list[Any]:
        """The training examples of pieces ``position .. position + count - 1``."""
        return [self.materialise(p) for p in self.pieces[position:position + count]]

    def materialise(self, piece: Piece) -> Any:
        example = self.examples[piece.index]
        if piece.start == 0 and piece.stop is None and piece.shift == 0:
            return example
        return transpose_keys(example[piece.start:piece.stop], piece.shift)


def fresh_examples(dataset, count: int, *, seed: int, step: int) -> list[Any]:
    """``count`` new training sequences for step ``step`` from the dataset's generator."""
    return list(dataset.fresh(count, int(np.random.SeedSequence([seed, step, _FRESH]).generate_state(1)[0])))
