"""Model the length of chorales three ways and compare the sampled lengths with the data's.

The halting unit, and the explicit P(tau) with the remaining steps fed back to the GRU, both put a
length term into the likelihood and stop the sampler (Goodfellow et al. 2016, §10.2.4).

    python examples/length_models.py --steps 300
"""

from __future__ import annotations

import argparse
import tempfile

import torch

import probseq
from probseq.evaluate.scoring import score_split


def main(args) -> dict:
    data = probseq.load_dataset("jsb")
    train_lengths = torch.tensor([len(s) for s in data.split("train")], dtype=torch.float)
    print(f"training chorales: mean length {train_lengths.mean():.1f}, "
          f"range {int(train_lengths.min())}-{int(train_lengths.max())}")
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for length in ("halting", "explicit"):
            torch.manual_seed(args.seed)
            model = probseq.build_model("gru", data.spec, {"hidden": args.hidden, "length": length,
                                                           "max_length": 200})
            probseq.fit(model, data, f"{tmp}/{length}", steps=args.steps, seed=args.seed, progress=False)
            nll = score_split(model, data.split("test")).summary()["nll_per_frame"]
            samples = model.sample(args.samples, max_length=200,
                                   generator=torch.Generator().manual_seed(args.seed))
            mean_len = samples.lengths.float().mean().item()
            print(f"{length:9s} test NLL {nll:.3f} nats/frame (length term included); "
                  f"sampled lengths: mean {mean_len:.1f}")
            report[length] = {"nll_per_frame": nll, "mean_sampled_length": mean_len}
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
