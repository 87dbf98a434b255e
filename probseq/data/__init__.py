"""Batches, the dataset registry and dataset loaders (file formats are in probseq.io)."""

from probseq.data.batch import Batch, iterate_minibatches
from probseq.data.spec import DataSpec

__all__ = ["Batch", "DataSpec", "iterate_minibatches"]
