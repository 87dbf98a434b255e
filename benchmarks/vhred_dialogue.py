"""VHRED against HRED on a dialogue test split: per-token NLL (bound vs exact), KL per turn, samples.

Everything goes through the ``probseq`` command line (called in-process), so each number can be
reproduced with the printed commands:

1. ``probseq fit hred|vhred --data dialogue --data-dir DIR --steps S --set ...`` (same data, sizes,
   steps, batch size and seed for both; VHRED adds the latent, word dropout and KL annealing);
2. ``probseq evaluate RUN --json`` (HRED: exact; VHRED: ELBO with ``--samples``), ``--estimator iwae``
   and ``--metric kl`` (VHRED);
3. responses to a few test contexts (ancestral samples and beam search) via ``model.respond``.

NLL is in nats per predicted token (words, ``<unk>`` and one ``<eot>`` per turn), the number of
turns given. The corpus is subsampled (first ``--train-dialogues`` training conversations, first
``--eval-dialogues`` of valid and test) to fit a CPU budget; results go to ``OUT/results_<model>.json``.

Example (the run recorded in ``benchmarks/RESULTS.md``)::

    python benchmarks/vhred_dialogue.py --threads 1 --models hred --out /tmp/vhred_bench &
    python benchmarks/vhred_dialogue.py --threads 1 --models vhred --out /tmp/vhred_bench &
    wait; python benchmarks/vhred_dialogue.py --summarize --out /tmp/vhred_bench
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch

from probseq.cli import main as probseq
from probseq.data.home import data_home
from probseq.data.registry import load_dataset
from probseq.train.checkpoint import load_run


def _cli(argv: list[str], log: list[str]) -> str:
    """Run one ``probseq`` command in-process; return its stdout (raise if it fails)."""
    log.append("probseq " + " ".join(argv))
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = probseq(argv)
    if code != 0:
        raise SystemExit(f"command failed ({code}): probseq {' '.join(argv)}")
    return buffer.getvalue()


def _data_args(args) -> list[str]:
    out = ["--data", args.data]
    if args.data == "dialogue":
        out += ["--data-dir", str(args.data_dir)]
    return out


def _sets(args, name: str) -> list[str]:
    sets = {
        "embedding": args.embedding, "encoder_hidden": args.hidden, "context_hidden": args.hidden,
        "decoder_hidden": args.hidden, "batch_size": args.batch_size, "lr": args.lr,
        "eval_every": args.eval_every, "vocab_size": args.vocab, "max_turn_length": args.max_turn_length,
        "max_dialogues": args.train_dialogues, "max_eval_dialogues": args.eval_dialogues,
    }
    if name == "hred" and args.hred_word_dropout:
        sets["word_dropout"] = args.hred_word_dropout
    if name == "vhred":
        sets.update({"latent": args.latent, "word_dropout": args.word_dropout, "kl_warmup": args.kl_warmup,
                     "free_bits": args.free_bits})
    return [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]


def run_model(args, name: str) -> dict:
    out = Path(args.out)
    run = out / f"run_{name}"
    if run.exists():
        shutil.rmtree(run)
    commands: list[str] = []
    result: dict = {"model": name, "commands": commands}
    started = time.perf_counter()
    _cli(["fit", name, *_data_args(args), "--steps", str(args.steps), "--seed", str(args.seed),
          "--threads", str(args.threads), "--quiet", *_sets(args, name), "--out", str(run)], commands)
    result["train_wall_s"] = time.perf_counter() - started
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    result["validation"] = [{k: e[k] for k in e if k != "event"} for e in log if e.get("event") == "valid"]

    t = time.perf_counter()
    estimator = [] if name == "hred" else ["--samples", str(args.elbo_samples)]
    result["nll"] = json.loads(_cli(["evaluate", str(run), "--json", *estimator], commands))
    result["nll"]["wall_s"] = time.perf_counter() - t
    if name == "vhred":
        t = time.perf_counter()
        result["iwae"] = json.loads(_cli(["evaluate", str(run), "--json", "--estimator", "iwae",
                                          "--samples", str(args.iwae_samples)], commands))
        result["iwae"]["wall_s"] = time.perf_counter() - t
        t = time.perf_counter()
        result["kl"] = json.loads(_cli(["evaluate", str(run), "--json", "--metric", "kl"], commands))
        result["kl"]["wall_s"] = time.perf_counter() - t

    # responses to the first turns of a few test dialogues
    model, info = load_run(run)
    opts = info["dataset"]["options"]
    data = load_dataset(args.data, data_dir=args.data_dir if args.data == "dialogue" else None, **opts)
    test = data.split("test")
    gen = torch.Generator().manual_seed(args.seed)
    examples = []
    for dialogue in test[: args.contexts]:
        context = dialogue.text[: args.context_turns]
        sampled = model.respond(context, n=3, method="sample", generator=gen)
        beamed = model.respond(context, n=1 if name == "hred" else 3, method="beam", generator=gen)
        examples.append({"context": context, "reference": dialogue.text[args.context_turns],
                         "sampled": [r.text for r in sampled], "beam": [r.text for r in beamed]})
    result["responses"] = examples
    result["unk_rate_test"] = float(sum(int((t == 1).sum()) for d in test for t in d)
                                    / sum(d.n_tokens for d in test))
    result["total_wall_s"] = time.perf_counter() - started
    result["threads"] = args.threads
    result["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (out / f"results_{name}.json").write_text(json.dumps(result, indent=2))
    return result


def summarize(out: Path) -> str:
    results = {}
    for name in ("hred", "vhred"):
        path = out / f"results_{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    lines = ["| model | estimator (kind) | NLL / token | perplexity | stderr | test dialogues / tokens | "
             "train wall | eval wall |", "|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        rows = [r["nll"]] + ([r["iwae"]] if "iwae" in r else [])
        for s in rows:
            stderr = "-" if s["stderr"] is None else f"{s['stderr']:.4f}"
            lines.append(f"| {name} | {s['estimator']} ({s['kind']}) | {s['nll_per_frame']:.4f} | "
                         f"{math.exp(s['nll_per_frame']):.1f} | {stderr} | {s['n_sequences']} / {s['n_frames']} | "
                         f"{r['train_wall_s'] / 60:.1f} min | {s['wall_s']:.0f} s |")
    if "vhred" in results:
        kl = results["vhred"]["kl"]
        lines += ["", f"VHRED: KL per turn {kl['kl_per_turn']:.3f} nats, KL per token {kl['kl_per_frame']:.4f}, "
                      f"reconstruction NLL per token {kl['reconstruction_nll_per_frame']:.4f}, "
                      f"active units {kl['active_units']} / {kl['latent']}"]
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="dialogue", help="dialogue (needs --data-dir) or dialogue-sample")
    p.add_argument("--data-dir", type=Path, default=data_home() / "dialogue")
    p.add_argument("--models", default="hred,vhred")
    p.add_argument("--out", type=Path, default=Path("vhred_bench"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--train-dialogues", type=int, default=10000)
    p.add_argument("--eval-dialogues", type=int, default=500)
    p.add_argument("--vocab", type=int, default=4000)
    p.add_argument("--max-turn-length", type=int, default=30)
    p.add_argument("--embedding", type=int, default=96)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--latent", type=int, default=64)
    p.add_argument("--word-dropout", type=float, default=0.25)
    p.add_argument("--hred-word-dropout", type=float, default=0.0, help="HRED's word dropout (a control)")
    p.add_argument("--kl-warmup", type=float, default=0.3)
    p.add_argument("--free-bits", type=float, default=0.0, help="VHRED: nats per latent unit per turn")
    p.add_argument("--elbo-samples", type=int, default=5)
    p.add_argument("--iwae-samples", type=int, default=10)
    p.add_argument("--contexts", type=int, default=3)
    p.add_argument("--context-turns", type=int, default=3)
    p.add_argument("--summarize", action="store_true", help="only print the table of OUT/results_*.json")
    return p.parse_args(argv)


def main(args) -> int:
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summarize:
        for name in args.models.split(","):
            r = run_model(args, name)
            print(f"{name}: trained in {r['train_wall_s']:.0f} s, total {r['total_wall_s']:.0f} s", flush=True)
    print(summarize(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
