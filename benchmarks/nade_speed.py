"""NADE ``log_prob`` + backward throughput against its peers, in one run, as ratios.

Five implementations of an exact autoregressive log-likelihood over ``D`` binary units with ``H``
hidden units, each timed for forward + backward (gradients of all weights and biases) on the same
``N`` random binary vectors with ``--density`` ones:

``nade-fused``
    ``NADE.log_prob(impl="cumsum")`` (the default): the O(DH) running-sum trick as a loop over
    the ``D`` positions of O(N H) steps, hand-written forward and backward.
``nade-segments``
    ``NADE.log_prob(impl="segments")``: the cumulative sum over the ones only, logits from one
    matrix product; O(S D H) with ``S`` = 1 + ones per vector; for sparse data (piano-rolls).
``nade-autograd``
    :meth:`probseq.NADE.log_prob_autograd`: the same O(DH) maths with autograd's backward.
``nade-naive``
    ``D`` separate passes, one per conditional, each recomputing its hidden layer from the
    masked input (``D`` matmuls of ``(N, D) x (D, H)``): O(D^2 H), what the trick avoids.
``made``
    A one-hidden-layer masked MLP of the same width (MADE, Germain et al. 2015), two masked
    matmuls: O(DH) with dense GEMMs; a different model (one hidden layer shared by all conditionals),
    timed as the cost floor for an exact autoregressive likelihood of this width.

Prints one JSON line per (D, H, implementation) with vectors/second and the ratio to
``nade-fused`` in the same run (``speedup_vs_fused`` > 1 means faster than nade-fused).

    python benchmarks/nade_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from probseq.frames.nade import NADE


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="NADE log_prob+backward throughput vs peers")
    p.add_argument("--dims", default="88", help="comma-separated D values")
    p.add_argument("--hidden", default="150,500", help="comma-separated H values")
    p.add_argument("--batch", type=int, default=512, help="vectors per call (N)")
    p.add_argument("--density", default="0.05,0.3",
                   help="comma-separated P(unit on); 0.05 ~ 4 notes of 88 (a piano-roll frame)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def naive_log_prob(W, V, b, c, x):
    """D passes: h_k = sigmoid(c + W[:, :k] x[:, :k]) recomputed for each k (natural ordering)."""
    N, D = x.shape
    total = x.new_zeros(N)
    for k in range(D):
        h = torch.sigmoid(c + x[:, :k] @ W[:, :k].t())
        logit = b[k] + h @ V[k]
        total = total + x[:, k] * logit - F.softplus(logit)
    return total


def made_log_prob(W, V, b, c, x, mask_in, mask_out):
    """One hidden layer, degrees m(h) in 1..D-1, natural ordering (Germain et al. 2015, eq. 12-13)."""
    h = torch.sigmoid(c + x @ (W * mask_in).t())
    logits = b + h @ (V * mask_out).t()
    return (x * logits - F.softplus(logits)).sum(-1)


def made_masks(D, H, gen):
    degrees = torch.randint(1, max(D, 2), (H,), generator=gen)        # hidden unit k sees x_{<=m(k)}
    inputs = torch.arange(1, D + 1)
    mask_in = (degrees.unsqueeze(1) >= inputs.unsqueeze(0)).float()    # (H, D)
    mask_out = (inputs.unsqueeze(1) > degrees.unsqueeze(0)).float()    # (D, H)
    return mask_in, mask_out


def time_round_robin(fns: dict, repeats: int) -> dict:
    """Median seconds per call of each function, timed in interleaved rounds so that a change in
    machine load (the 2 shared cores) hits every implementation alike."""
    for fn in fns.values():
        fn()                                                           # warm-up
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main(args):
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    rows = []
    grid = [(int(d), int(h), float(r)) for d in args.dims.split(",") for h in args.hidden.split(",")
            for r in args.density.split(",")]
    for D, H, density in grid:
        nade = NADE(D, H, init_scale=0.1)
        x = torch.bernoulli(torch.full((args.batch, D), density), generator=gen)
        params = [nade.weight, nade.output_weight, nade.visible_bias, nade.hidden_bias]
        mask_in, mask_out = made_masks(D, H, gen)

        def step(f):
            def run():
                for p in params:
                    p.grad = None
                f().sum().backward()
            return run

        impls = {
            "nade-fused": step(lambda: nade.log_prob(x, impl="cumsum")),
            "nade-segments": step(lambda: nade.log_prob(x, impl="segments")),
            "nade-autograd": step(lambda: nade.log_prob_autograd(x)),
            "nade-naive": step(lambda: naive_log_prob(nade.weight, nade.output_weight,
                                                      nade.visible_bias, nade.hidden_bias, x)),
            "made": step(lambda: made_log_prob(nade.weight, nade.output_weight, nade.visible_bias,
                                               nade.hidden_bias, x, mask_in, mask_out)),
        }
        # same numbers first: the fused and naive NADE agree
        with torch.no_grad():
            diff = (nade.log_prob(x, impl="cumsum") - naive_log_prob(nade.weight, nade.output_weight,
                                                      nade.visible_bias, nade.hidden_bias, x)).abs().max()
        seconds = time_round_robin(impls, args.repeats)
        for name, s in seconds.items():
            row = {"benchmark": "nade_speed", "impl": name, "D": D, "H": H, "N": args.batch,
                   "density": density,
                   "seconds_per_call": round(s, 5), "vectors_per_s": round(args.batch / s, 1),
                   "speedup_vs_fused": round(seconds["nade-fused"] / s, 3),
                   "threads": args.threads, "max_abs_diff_fused_vs_naive": float(diff)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main(parse_args())
