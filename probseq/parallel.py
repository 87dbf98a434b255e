"""Data-parallel training and evaluation on ``torch.distributed``.

``torchrun --nproc_per_node=N -m probseq fit ...`` starts ``N`` processes; each finds its rank and
the world size in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...)
and :func:`init_from_env` joins the process group (backend ``gloo`` on CPU, ``nccl`` on CUDA).
Several machines: the same command with ``--nnodes`` and ``--rdzv-backend/--rdzv-endpoint``.

How one model is trained by ``W`` processes (:func:`probseq.train.fit.fit` calls the pieces):

* **Data.** ``batch_size`` is per process; the *global* batch is ``W * batch_size`` sequences, taken
  from the same global order one process would use (the epoch plan of
  :mod:`probseq.train.data_order`), and rank ``r`` trains on its slice
  ``[r * batch_size, (r + 1) * batch_size)`` of it (:meth:`Distributed.shard`).
* **Gradients.** Every probseq loss is pooled per frame, ``L_r = S_r / n_r`` over the rank's
  ``n_r`` frames. The loss of the global batch is ``L = sum_r S_r / N`` with ``N = sum_r n_r``, so
  its gradient is ``sum_r (n_r / N) grad L_r``: each rank back-propagates ``(n_r / N) L_r`` and the
  gradients are summed with one ``all_reduce`` (:meth:`Distributed.pool_loss`,
  :meth:`Distributed.sum_gradients`). The update then equals one process's on the global batch, up
  to the order of floating-point sums. An explicit all-reduce of ``.grad`` is used rather than
  ``DistributedDataParallel`` because the trainer calls ``model.loss`` (not ``forward``), and for
  the RBM family the "loss" is a contrastive-divergence surrogate whose gradient is the update.
* **Randomness.** Rank 0 draws from the generator one process would use (seed + 1, carried through
  the run and saved in checkpoints); rank ``r > 0`` reseeds its generator and torch's global stream
  at every step from ``(seed, rank, step)`` (:meth:`Distributed.reseed_step`), so a resumed run
  repeats exactly whatever the number of processes it resumes with. Models whose loss draws noise
  (CD-k Gibbs chains, the ELBO's latent samples, dropout) therefore follow the same law as one
  process but not the same draws; exact-likelihood models without dropout give the same parameters.
* **Validation.** Every rank scores its share of the validation batches (the same plan on every
  rank, batch ``i`` on rank ``i mod W``) and the ``(loss x frames, frames)`` sums are all-reduced
  (:meth:`Distributed.sum_values`), so validation also runs ``W`` times faster and its score equals
  one process's up to the order of the sums.
* **Decisions.** Only rank 0 writes the run directory, the log and the progress bar; every rank
  holds the same validation score, and the wall-clock "out of time" flag is broadcast from rank 0,
  so early stopping, plateau decay and ``keep=best`` are decided identically everywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Sequence

import torch
import torch.distributed as dist

from probseq.errors import UserError

__all__ = ["Distributed", "current", "init_from_env", "shutdown", "launched_by_torchrun", "start"]


def launched_by_torchrun() -> bool:
    """True when the environment describes a multi-process job (``WORLD_SIZE > 1``)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


@dataclass
class Distributed:
    """This process's place in the job; ``Distributed()`` is the single-process case."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    #: set by :meth:`shard` when this rank's slice was empty and it stands in with one example
    #: that must not count (its loss weight is zero)
    stand_in: bool = False

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    # ------------------------------------------------------------------ data
    def shard(self, examples: Sequence[Any]) -> list[Any]:
        """This rank's contiguous slice of a global batch of ``world_size * b`` examples.

        A global batch that does not divide evenly (the end of an epoch) is split as evenly as
        possible, the first ranks taking one more. A rank whose slice is empty (fewer examples
        than ranks) stands in with the batch's first example, whose loss weight is then zero
        (:meth:`pool_loss`), so that every rank still joins the gradient all-reduce.
        """
        n, w = len(examples), self.world_size
        start = self.rank * (n // w) + min(self.rank, n % w)
        stop = start + n // w + (1 if self.rank < n % w else 0)
        self.stand_in = stop <= start
        return list(examples[:1]) if self.stand_in else list(examples[start:stop])

    # ------------------------------------------------------------------ gradients
    def pool_loss(self, loss: torch.Tensor, n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss to back-propagate, the global batch's pooled loss)``.

        With ``W`` ranks: the local loss weighted by ``n_r / N`` (see the module docstring), and
        ``sum_r n_r L_r / N`` (detached, identical on every rank, so that a divergence is seen by
        every process at once). One process: ``(loss, loss)``.
        """
        if not self.enabled:
            return loss, loss
        n_frames = 0 if self.stand_in else n_frames
        stats = torch.tensor([float(loss.detach()) * n_frames if n_frames else 0.0, float(n_frames)],
                             dtype=torch.float64, device=self.device)
        dist.all_reduce(stats)
        total_frames = float(stats[1])
        pooled = torch.tensor(float(stats[0]) / total_frames, dtype=loss.dtype, device=loss.device)
        return loss * (n_frames / total_frames), pooled

    def sum_gradients(self, parameters) -> None:
        """Sum ``.grad`` over ranks in one flat ``all_reduce``.

        A rank without a gradient for a parameter contributes zeros; a parameter no rank has a
        gradient for keeps ``grad = None`` (as in one process, so the optimiser skips it).
        """
        if not self.enabled:
            return
        params = [p for p in parameters if p.requires_grad]
        if not params:
            return
        has_grad = torch.tensor([float(p.grad is not None) for p in params], device=params[0].device)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in params] + [has_grad.to(params[0].dtype)])
        dist.all_reduce(flat)
        offset = 0
        present = flat[-len(params):]
        for i, p in enumerate(params):
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone() if float(present[i]) > 0 else None
            offset += n

    # ------------------------------------------------------------------ agreement
    def broadcast_value(self, value: float | bool | None) -> float:
        """Rank 0's ``value`` (a number or a flag; ``None`` travels as NaN) on every rank."""
        if not self.enabled:
            return float("nan") if value is None else float(value)
        t = torch.tensor([float("nan") if value is None else float(value)], dtype=torch.float64,
                         device=self.device)
        dist.broadcast(t, src=0)
        return float(t)

    def sum_values(self, *values: float) -> tuple[float, ...]:
        """The sums over ranks of each of ``values`` (float64, one ``all_reduce``), on every rank."""
        if not self.enabled:
            return tuple(float(v) for v in values)
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return tuple(t.tolist())

    def broadcast_module(self, module: torch.nn.Module) -> None:
        """Rank 0's parameters and buffers everywhere (every rank starts from the same weights)."""
        if not self.enabled:
            return
        with torch.no_grad():
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def barrier(self) -> None:
        if self.enabled:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj``, in rank order, on rank 0 (``None`` elsewhere)."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    # ------------------------------------------------------------------ randomness
    def reseed_step(self, generator: torch.Generator, seed: int, step: int) -> None:
        """Ranks ``r > 0``: seed ``generator`` and torch's global stream from ``(seed, r, step)``."""
        if self.rank == 0:
            return
        mixed = (int(seed) * 1_000_003 + self.rank * 7_919 + int(step) * 104_729) % (2 ** 63 - 1)
        generator.manual_seed(mixed)
        torch.manual_seed(mixed ^ 0x5DEECE66D)


def current() -> Distributed:
    """The job this process belongs to (single-process when no process group is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Distributed()
    backend = dist.get_backend()
    device = torch.device("cpu")
    if backend == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    return Distributed(dist.get_rank(), dist.get_world_size(), device)


def init_from_env(device: torch.device) -> Distributed:
    """Join the process group torchrun describes (no-op for a single process); returns :func:`current`.

    ``device`` is where this process computes: ``nccl`` for CUDA, ``gloo`` otherwise.
    """
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        return current()
    if not dist.is_available():
        raise UserError("this torch build has no torch.distributed; run one process (without torchrun)")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise UserError(f"WORLD_SIZE is set but {', '.join(missing)} is not; start several processes "
                        "with torchrun --nproc_per_node=N -m probseq ...")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device, timeout=timedelta(minutes=30))
    else:
        dist.init_process_group("gloo", timeout=timedelta(minutes=30))
    return current()


def start(device_name: str | None, *, command: str, distributed: bool) -> tuple[torch.device, Distributed]:
    """What a command runs on: the resolved ``--device`` and, under torchrun, the joined job.

    ``distributed=False`` (``sample``, ``demo``): refuse to run under torchrun with one sentence.
    """
    from probseq.device import resolve_device

    device = resolve_device(device_name)
    if launched_by_torchrun() and not distributed:
        raise UserError(f"probseq {command} runs in one process; start it without torchrun")
    return device, init_from_env(device)


def shutdown() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
