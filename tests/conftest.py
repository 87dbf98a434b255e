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
from probseq.threads import default_threads

#: torch's intra-op threads for the whole session: ``$PROBSEQ_TEST_THREADS``, else ``$OMP_NUM_THREADS``
#: (which torch already follows), else the commands' own load-aware default
#: (``probseq.threads.default_threads``: the cores the load average leaves free, so 2 on an idle
#: 2-core machine and 1 on a busy one, where two threads make small ops crawl)
if os.environ.get("PROBSEQ_TEST_THREADS"):
    SESSION_THREADS = int(os.environ["PROBSEQ_TEST_THREADS"])
elif os.environ.get("OMP_NUM_THREADS", "").strip():
    SESSION_THREADS = torch.get_num_threads()
else:
    SESSION_THREADS = default_threads()
torch.set_num_threads(SESSION_THREADS)

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


@pytest.fixture(autouse=True)
def _session_threads():
    """A test that runs a command in-process (``main([...])`` without ``--threads``) may change torch's
    thread count; put the session's back so the tests after it do not depend on the order."""
    yield
    if torch.get_num_threads() != SESSION_THREADS:
        torch.set_num_threads(SESSION_THREADS)


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
