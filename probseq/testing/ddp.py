"""Helpers for the multi-process tests: start ``W`` gloo processes on this machine and run a worker.

:func:`spawn` starts the workers with ``torch.multiprocessing`` (start method ``spawn``) and a
file-based rendezvous in a temporary directory, so tests need no free port and no ``torchrun``.
Workers are module-level functions (picklable by name); each writes what the test compares into
``out_dir``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec

__all__ = ["spawn", "toy_dataset", "fit_worker", "gradient_worker", "score_worker", "run_all"]


def _entry(rank: int, world: int, init_file: str, fn: Callable, args: tuple) -> None:
    torch.set_num_threads(1)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, world: int, tmp: Path, *args: Any) -> None:
    """Run ``fn(rank, world, *args)`` in ``world`` processes joined in one gloo process group."""
    init_file = Path(tmp) / f"rendezvous-{fn.__name__}"
    if init_file.exists():
        init_file.unlink()
    mp.start_processes(_entry, args=(world, str(init_file), fn, args), nprocs=world, join=True,
                       start_method="spawn")


def toy_dataset(spec: DataSpec, seed: int = 0, n_train: int = 20, n_valid: int = 6) -> Dataset:
    """Random binary or real sequences of lengths 3..9 (a fixed function of ``seed``)."""
    g = torch.Generator().manual_seed(seed)

    def seqs(n):
        out = []
        for _ in range(n):
            t = int(torch.randint(3, 10, (), generator=g))
            if spec.kind == "binary":
                out.append(torch.bernoulli(torch.full((t, spec.dim), 0.3), generator=g))
            else:
                out.append(torch.randn(t, spec.dim, generator=g))
        return out

    return Dataset("toy", spec, {"train": seqs(n_train), "valid": seqs(n_valid), "test": seqs(n_valid)})


def _build(name: str, spec: DataSpec, hyper: dict):
    from probseq.models.registry import build_model

    torch.manual_seed(0)
    return build_model(name, spec, dict(hyper))


def fit_worker(rank: int, world: int, name: str, spec: DataSpec, hyper: dict, options: dict, steps: int,
               out_dir: str) -> None:
    """``probseq.fit`` in this process of the job; rank 0 saves the final weights to ``final.pt``."""
    from probseq.train.fit import fit

    model = _build(name, spec, hyper)
    fit(model, toy_dataset(spec), out_dir, steps=steps, seed=0, options=options, progress=False)
    if rank == 0:
        torch.save(model.state_dict(), Path(out_dir) / "final.pt")


def gradient_worker(rank: int, world: int, cases: list, batch_size: int, out_dir: str) -> None:
    """One training step's gradient for each ``(name, spec, hyper)`` case: this rank's slice of a
    global batch, its loss pooled and its gradient summed over the job
    (:class:`~probseq.parallel.Distributed`); rank 0 saves case ``i`` to ``grads-i.pt``.
    Rank ``r`` draws the loss's noise from ``generator_for(model, 100 + r)``."""
    from probseq.device import generator_for
    from probseq.parallel import current

    job = current()
    for i, (name, spec, hyper) in enumerate(cases):
        model = _build(name, spec, hyper).train()
        examples = toy_dataset(spec).split("train")[: batch_size * world]
        batch = model.collate(job.shard(examples))
        generator = generator_for(model, 100 + rank)
        scaled, pooled = job.pool_loss(model.loss(batch, generator=generator), batch.n_frames)
        scaled.backward()
        job.sum_gradients(model.parameters())
        if rank == 0:
            torch.save({"pooled": pooled.detach(),
                        "grads": {n: p.grad for n, p in model.named_parameters()}},
                       Path(out_dir) / f"grads-{i}.pt")


def score_worker(rank: int, world: int, cases: list, batch_size: int, out_dir: str) -> None:
    """:func:`~probseq.evaluate.sharded.score_split_sharded` of the toy test split for each
    ``(name, spec, hyper, estimator, samples)`` case; rank 0 saves case ``i`` to ``scores-i.pt``."""
    for i, (name, spec, hyper, estimator, samples) in enumerate(cases):
        scores = score_toy(name, spec, hyper, estimator, samples, batch_size)
        assert (scores is None) == (rank != 0)
        if rank == 0:
            torch.save(scores, Path(out_dir) / f"scores-{i}.pt")


def run_all(rank: int, world: int, jobs: list) -> None:
    """Several workers in one start of the processes (starting them costs more than the work):
    ``jobs`` is a list of ``(worker, args)``, run in order in the same process group."""
    for worker, args in jobs:
        worker(rank, world, *args)
        dist.barrier()


def score_toy(name: str, spec: DataSpec, hyper: dict, estimator: str | None, samples: int | None,
              batch_size: int) -> dict | None:
    """Sharded scores of the toy test split (``seed=3``) as a dict of tensors; ``None`` off rank 0."""
    from probseq.evaluate.sharded import score_split_sharded

    model = _build(name, spec, hyper).eval()
    scores = score_split_sharded(model, toy_dataset(spec).split("test"), estimator=estimator,
                                 samples=samples, batch_size=batch_size, frame_budget=None, seed=3)
    if scores is None:
        return None
    return {"nll": torch.as_tensor(scores.nll), "frames": torch.as_tensor(scores.n_frames),
            "stderr": None if scores.stderr is None else torch.as_tensor(scores.stderr)}
