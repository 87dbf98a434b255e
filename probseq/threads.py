"""How many CPU threads a command computes with (``--threads N``; 0 or absent: :func:`default_threads`).

torch's own default is one intra-op thread per physical core. On a machine that other jobs share
this collapses: an OpenMP parallel region waits at its barrier for the thread whose core another
process holds, so every small matrix product costs a scheduler time slice. Measured on a 2-core
machine with other jobs running (load average 5 to 8), ``probseq fit nade --data jsb --steps 50``
took 84 s with ``--threads 1`` (1.3 s a step), while torch's 2 threads had done 30 steps after
720 s (24 s a step; docs/training.md, "Threads"). So the default is the number of cores *left free* by the
load average, at least 1 and at most :data:`MAX_DEFAULT_THREADS` (probseq's models are small:
beyond a few threads the synchronisation costs more than the extra cores bring). A thread count set
in the environment (``OMP_NUM_THREADS``) is respected as torch respects it.

A run repeats bit for bit only at the same thread count, so a run that must repeat should name
``--threads`` rather than rely on the load-dependent default.
"""

from __future__ import annotations

import math
import os

__all__ = ["MAX_DEFAULT_THREADS", "default_threads", "use_threads"]

#: the most threads the default picks (an explicit ``--threads`` may ask for more)
MAX_DEFAULT_THREADS = 4


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):      # not Linux
        return os.cpu_count() or 1


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """``clamp(floor(cores - load + 0.5), 1, min(cores, MAX_DEFAULT_THREADS))``.

    ``cores``: the CPUs this process may run on; ``load``: the one-minute load average (the
    runnable processes other than this one, which has not started computing yet).
    """
    cores = _usable_cores() if cores is None else cores
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average on this system
            load = 0.0
    free = math.floor(cores - load + 0.5)
    return max(1, min(free, cores, MAX_DEFAULT_THREADS))


def use_threads(requested: int | None) -> int:
    """Set torch's intra-op thread count for this command and return it.

    ``requested`` > 0 is used as given; 0 or ``None`` picks :func:`default_threads`, unless
    ``OMP_NUM_THREADS`` is set, which torch has already followed.
    """
    import torch

    from probseq.errors import UserError

    if requested is not None and requested < 0:
        raise UserError(f"--threads must be positive (or 0 for the default), got {requested}")
    if requested:
        threads = requested
    elif os.environ.get("OMP_NUM_THREADS", "").strip():
        return torch.get_num_threads()
    else:
        threads = default_threads()
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads
