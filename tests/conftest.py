"""Shared fixtures: seeded generators, the data home, tiny batches.

The developer data is found through the data home: when ``PROBSEQ_DATA`` is unset and the
repository has ``../shared/data`` beside it (as in CI), this file points ``PROBSEQ_DATA`` there
before any test runs, so tests that need it run instead of skipping.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from probseq.data.home import DATA_HOME_VARIABLE, data_home

torch.set_num_threads(int(os.environ.get("PROBSEQ_TEST_THREADS", "2")))

_DEVELOPER_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not os.environ.get(DATA_HOME_VARIABLE) and _DEVELOPER_DATA.is_dir():
    os.environ[DATA_HOME_VARIABLE] = str(_DEVELOPER_DATA)


@pytest.fixture
def shared_data():
    """The data home holding the developer data (``$PROBSEQ_DATA``, in CI ``../shared/data``).

    The test is skipped, with the reason, when the folder is absent.
    """
    home = data_home()
    if not home.is_dir():
        pytest.skip(f"needs the developer data in the data home {home} (set {DATA_HOME_VARIABLE}), "
                    "which is absent")
    return home


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
