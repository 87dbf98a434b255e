"""The thesis's "debugging" experiment: restore the order of a bag of words by likelihood.

A character-level model that has learned some syntax should give the true order of a short phrase a
higher probability than its shuffles (Sutskever 2013, ch. 5: the MRNN as a check of what a text
model has learned). For each held-out phrase of ``--words`` words this scores every ordering of
its words (``k!`` sequences, exact teacher-forced log-likelihoods) and reports the rank of the
true order; chance puts it first with probability ``1 / k!``.

    python examples/restore_word_order.py --steps 2000 --hidden 256           # on the embedded Genesis
    python examples/restore_word_order.py --run runs/kjv-mrnn --words 5       # with a trained run
"""

from __future__ import annotations

import argparse
import itertools
import math
import tempfile

import torch

import probseq
from probseq.data.batch import Batch
from probseq.data.sets.text import decode_text, encode_text


def phrases(text: str, words: int, count: int) -> list[list[str]]:
    """The first ``words`` words of each line with that many distinct words (verse numbers dropped)."""
    out = []
    for line in text.split("\n"):
        tokens = [w for w in line.split() if not w.isdigit()]
        if len(tokens) >= words and len(set(tokens[:words])) == words:
            out.append(tokens[:words])
        if len(out) == count:
            break
    return out


def rank_of_true_order(model, bag: list[str], alphabet: list[str]) -> tuple[int, int]:
    """``(rank, k!)``: 1 + the number of orderings scored strictly above the true one."""
    orders = [" ".join(p) for p in itertools.permutations(bag)]
    batch = Batch.from_sequences([encode_text(s, alphabet) for s in orders])
    with torch.no_grad():
        scores = model.log_prob(batch).values
    return 1 + int((scores > scores[0]).sum()), len(orders)


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    if args.run:
        model, info = probseq.load_run(args.run)
        data = probseq.load_dataset("text", data_file=info["dataset"].get("data_file"),
                                    **(info["dataset"].get("options") or {}))
    else:
        data = probseq.load_dataset("text", data_file=args.data_file, window=args.window,
                                    stride=args.window - args.context)
        torch.manual_seed(args.seed)
        model = probseq.build_model("mrnn", data.spec, {"hidden": args.hidden,
                                                        "train_context": args.context})
        with tempfile.TemporaryDirectory() as tmp:
            probseq.fit(model, data, tmp, steps=args.steps, seed=args.seed, progress=False,
                        options={"lr": args.lr})
    model.eval()
    alphabet = data.meta["alphabet"]
    held_out = "".join(decode_text(s, alphabet) for s in data.split("test"))
    ranks, firsts = [], 0
    for bag in phrases(held_out, args.words, args.phrases):
        rank, total = rank_of_true_order(model, bag, alphabet)
        ranks.append(rank)
        firsts += rank == 1
        print(f"rank {rank:3d} of {total}: {' '.join(bag)}")
    n = max(len(ranks), 1)
    report = {"phrases": len(ranks), "words": args.words, "top1": firsts / n,
              "chance_top1": 1 / math.factorial(args.words),
              "mean_rank": sum(ranks) / n, "chance_mean_rank": (math.factorial(args.words) + 1) / 2}
    print(f"true order ranked first for {firsts} of {len(ranks)} phrases (chance "
          f"{report['chance_top1']:.3f}); mean rank {report['mean_rank']:.1f} "
          f"(chance {report['chance_mean_rank']:.1f})")
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", help="a trained text run directory (otherwise an MRNN is trained here)")
    p.add_argument("--data-file", help="a UTF-8 text (default: the embedded Genesis 1-11)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--window", type=int, default=250)
    p.add_argument("--context", type=int, default=50)
    p.add_argument("--words", type=int, default=4)
    p.add_argument("--phrases", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
