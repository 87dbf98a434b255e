"""Seconds per training step of one VRNN: probseq's fast path vs Pyro's ``Trace_ELBO`` (SVI), one run.

The same model object (88-dim Bernoulli frames, 16-dim ``z``, 128 hidden/feature units) and the
same batch (32 sequences of 100 frames, ~4 notes on per frame as in JSB) go through

* ``probseq``: ``model.loss(batch)`` (closed-form KL) + ``backward`` + ``torch.optim.Adam.step``;
* ``pyro``: ``SVI(model.pyro_model, model.pyro_guide, pyro.optim.Adam, Trace_ELBO()).step(batch)``
  (sampled KL; Pyro's argument validation off, which only makes Pyro faster).

The two are timed in alternating rounds (so machine load hits both alike); each figure is the
median over rounds of the mean time per step within a round. Prints ONE JSON line.

    python benchmarks/vrnn_speed.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    import pyro
    from pyro.infer import SVI, Trace_ELBO

    from probseq.data.batch import Batch
    from probseq.data.spec import DataSpec
    from probseq.models.vrnn import VRNN

    pyro.enable_validation(False)
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    values = torch.bernoulli(torch.full((args.batch, args.steps, 88), 4 / 88), generator=g)
    batch = Batch(values, torch.full((args.batch,), args.steps, dtype=torch.long))
    model = VRNN(DataSpec("binary", 88), hidden=args.hidden, latent=args.latent, features=args.hidden)
    model.train()

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def fast_step():
        loss = model.loss(batch, generator=g)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    pyro.clear_param_store()
    svi = SVI(model.pyro_model, model.pyro_guide, pyro.optim.Adam({"lr": 1e-3}), Trace_ELBO())

    def pyro_step():
        svi.step(batch)

    for step in (fast_step, pyro_step):        # warm-up (allocations, Pyro param store)
        for _ in range(args.warmup):
            step()
    times = {"probseq": [], "pyro": []}
    for _ in range(args.rounds):
        for name, step in (("probseq", fast_step), ("pyro", pyro_step)):
            start = time.perf_counter()
            for _ in range(args.steps_per_round):
                step()
            times[name].append((time.perf_counter() - start) / args.steps_per_round)
    fast = statistics.median(times["probseq"])
    slow = statistics.median(times["pyro"])
    result = {
        "probseq_s_per_step": round(fast, 5),
        "pyro_s_per_step": round(slow, 5),
        "speedup_vs_pyro": round(slow / fast, 3),
        "batch": args.batch, "steps": args.steps, "x_dim": 88, "z_dim": args.latent,
        "hidden": args.hidden, "threads": args.threads, "rounds": args.rounds,
        "steps_per_round": args.steps_per_round,
        "torch": torch.__version__, "pyro": pyro.__version__,
    }
    print(json.dumps(result))
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=100, help="frames per sequence")
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps-per-round", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
