"""Batches, dataset loaders and media I/O."""

from probseq.data.batch import Batch, iterate_minibatches
from probseq.data.spec import DataSpec

__all__ = ["Batch", "DataSpec", "iterate_minibatches"]
