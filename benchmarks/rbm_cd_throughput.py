"""CD-1 throughput of probseq's RBM against scikit-learn's ``BernoulliRBM`` in the same run.

Workload: a 900-visible / 400-hidden Bernoulli RBM, minibatches of 100 binary vectors, float32.
Per update both libraries do the same work: hidden probabilities of the data, one Gibbs round to a
negative visible sample, its hidden probabilities, the outer-product gradient and an SGD update
(scikit-learn's update is PCD-1: its Gibbs round starts from the stored hidden samples instead of
the data, which costs the same). scikit-learn is timed two ways: ``sklearn_samples_per_s`` is
``fit(n_iter=1)`` over the same minibatches, which stays in float32; ``partial_fit`` per minibatch
(``sklearn_partial_fit_float64_samples_per_s``) converts everything to float64, so it is slower and
reported only as a second figure. probseq is timed on

* ``probseq_samples_per_s``: :meth:`probseq.frames.rbm.RBM.cd_step` (hand-written CD-1 gradient
  and in-place SGD, the static-RBM fast path), and
* ``probseq_autograd_samples_per_s``: ``cd_loss(...).mean().backward()`` plus ``torch.optim.SGD``
  (the path sequence models train through).

The two libraries are timed in interleaved rounds and each figure is the median round, so a
burst of load from other processes hits both alike. Prints ONE JSON line.

    python benchmarks/rbm_cd_throughput.py [--threads 1] [--rounds 7] [--batches 50]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings

import numpy as np
import torch


def make_data(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.05, 0.3, size=d)
    return (rng.uniform(size=(n, d)) < probs).astype(np.float32)


def time_sklearn(data: np.ndarray, batch: int, batches: int, hidden: int, seed: int) -> float:
    """``BernoulliRBM.fit`` with ``n_iter=1``: one pass of PCD-1 minibatch updates, in float32.

    ``fit`` keeps float32 input in float32 (``partial_fit`` converts to float64), and its loop is
    exactly ``batches`` calls of the same inner update ``partial_fit`` makes.
    """
    from sklearn.neural_network import BernoulliRBM

    rbm = BernoulliRBM(n_components=hidden, learning_rate=0.05, batch_size=batch, n_iter=1,
                       random_state=seed)
    x = data[: batch * batches]
    start = time.perf_counter()
    rbm.fit(x)
    elapsed = time.perf_counter() - start
    assert rbm.components_.dtype == np.float32
    return batches * batch / elapsed


def time_sklearn_partial_fit(data: np.ndarray, batch: int, batches: int, hidden: int, seed: int) -> float:
    """``partial_fit`` per minibatch, the call the issue names; it runs in float64 whatever the input."""
    from sklearn.neural_network import BernoulliRBM

    rbm = BernoulliRBM(n_components=hidden, learning_rate=0.05, batch_size=batch, random_state=seed)
    rbm.partial_fit(data[:batch])                      # allocate state outside the timing
    start = time.perf_counter()
    for i in range(batches):
        rbm.partial_fit(data[i * batch:(i + 1) * batch])
    return batches * batch / (time.perf_counter() - start)


def time_probseq(data: torch.Tensor, batch: int, batches: int, hidden: int, seed: int) -> float:
    from probseq.frames.rbm import RBM

    torch.manual_seed(seed)
    rbm = RBM(data.shape[1], hidden)
    g = torch.Generator().manual_seed(seed)
    rbm.cd_step(data[:batch], lr=0.05, k=1, generator=g)
    start = time.perf_counter()
    for i in range(batches):
        rbm.cd_step(data[i * batch:(i + 1) * batch], lr=0.05, k=1, generator=g)
    return batches * batch / (time.perf_counter() - start)


def time_probseq_autograd(data: torch.Tensor, batch: int, batches: int, hidden: int, seed: int) -> float:
    from probseq.frames.rbm import RBM

    torch.manual_seed(seed)
    rbm = RBM(data.shape[1], hidden)
    opt = torch.optim.SGD(rbm.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(seed)

    def step(v):
        opt.zero_grad(set_to_none=True)
        rbm.cd_loss(v, 1, generator=g).mean().backward()
        opt.step()

    step(data[:batch])
    start = time.perf_counter()
    for i in range(batches):
        step(data[i * batch:(i + 1) * batch])
    return batches * batch / (time.perf_counter() - start)


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    try:
        from threadpoolctl import threadpool_limits
        limiter = threadpool_limits(args.threads)   # numpy's BLAS gets the same thread count
    except ImportError:                              # pragma: no cover
        limiter = None
        warnings.warn("threadpoolctl missing: numpy's BLAS thread count is not pinned")
    data_np = make_data(args.batch * args.batches, args.visible, args.seed)
    data_t = torch.from_numpy(data_np)
    rounds = {"sklearn": [], "sklearn_partial_fit": [], "probseq": [], "autograd": []}
    for r in range(args.rounds):
        rounds["sklearn"].append(time_sklearn(data_np, args.batch, args.batches, args.hidden, args.seed + r))
        rounds["sklearn_partial_fit"].append(time_sklearn_partial_fit(data_np, args.batch, args.batches,
                                                                      args.hidden, args.seed + r))
        rounds["probseq"].append(time_probseq(data_t, args.batch, args.batches, args.hidden, args.seed + r))
        rounds["autograd"].append(time_probseq_autograd(data_t, args.batch, args.batches, args.hidden,
                                                        args.seed + r))
    if limiter is not None:
        limiter.unregister() if hasattr(limiter, "unregister") else None
    med = {k: statistics.median(v) for k, v in rounds.items()}
    result = {
        "benchmark": "rbm_cd1_throughput",
        "visible": args.visible, "hidden": args.hidden, "batch": args.batch, "dtype": "float32",
        "batches_per_round": args.batches, "rounds": args.rounds, "threads": args.threads,
        "probseq_samples_per_s": round(med["probseq"], 1),
        "probseq_autograd_samples_per_s": round(med["autograd"], 1),
        "sklearn_samples_per_s": round(med["sklearn"], 1),
        "sklearn_partial_fit_float64_samples_per_s": round(med["sklearn_partial_fit"], 1),
        "ratio_vs_sklearn": round(med["probseq"] / med["sklearn"], 3),
        "autograd_ratio_vs_sklearn": round(med["autograd"] / med["sklearn"], 3),
        "ratio_vs_sklearn_partial_fit": round(med["probseq"] / med["sklearn_partial_fit"], 3),
        "ratio_per_round": [round(p / s, 3) for p, s in zip(rounds["probseq"], rounds["sklearn"])],
        "torch": torch.__version__, "machine": platform.machine(),
    }
    print(json.dumps(result))
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--visible", type=int, default=900)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
