"""Sequence models built from a backbone and a frame distribution; see :mod:`probseq.models.base`."""
