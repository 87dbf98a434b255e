"""Shared fixtures: seeded generators, the shared data directory, tiny batches."""

from __future__ import annotations

import os

import pytest
import torch

from probseq.data.registry import SHARED_DATA

torch.set_num_threads(int(os.environ.get("PROBSEQ_TEST_THREADS", "2")))


@pytest.fixture
def shared_data():
    """Path of ``../shared/data``; the test is skipped (with the reason) when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data directory {SHARED_DATA}, which is absent")
    return SHARED_DATA


@pytest.fixture
def generator():
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """Small tensor ops gain nothing from threads; on a loaded machine two can be far slower than one.

    Use it for a whole module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
