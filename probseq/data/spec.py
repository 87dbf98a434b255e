"""What a dataset's frames are: the one fact a model needs to build its frame distribution."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from probseq.errors import UserError

__all__ = ["DataSpec"]

DATA_KINDS = ("binary", "real", "categorical")


@dataclass(frozen=True)
class DataSpec:
    """Frames of a dataset.

    Attributes:
        kind: ``"binary"`` (0/1 vectors, e.g. piano-rolls, video), ``"real"`` (real vectors, e.g.
            motion capture) or ``"categorical"`` (one symbol per frame).
        dim: vector size ``D``, or the number of symbols ``K`` for categorical data.
    """

    kind: str
    dim: int

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise UserError(f"unknown data kind {self.kind!r}; expected one of {', '.join(DATA_KINDS)}")
        if int(self.dim) < 1:
            raise UserError(f"data dimension must be positive, got {self.dim}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DataSpec":
        return cls(kind=str(d["kind"]), dim=int(d["dim"]))
