"""Which cheap validation criterion selects RBM-family checkpoints as full AIS would (issue 19)?

Trains RTRBMs on JSB through ``probseq.fit`` (successive ``resume`` extensions, one snapshot of the
weights after each), then scores every snapshot on the validation split by

* ``current``: the criterion the trainer used (AIS 4 chains x 100 distributions per frame on every
  validation frame, fixed seed; :func:`probseq.evaluate.chunking.validation_totals`);
* cheaper AIS: fewer chains / distributions, and/or a fixed subset of the validation sequences
  (the first ``n`` in the split's order), same seed rule;
* ``prediction``: the mean-field next-frame cross-entropy (``valid_criterion=prediction``);
* ``pseudo``: the pseudo-log-likelihood ``sum_i log P(v_i | v_-i)`` of every frame under its
  step's RBM (exact, no partition function), from :meth:`probseq.frames.rbm.RBM.free_energy`;
* ``reference``: AIS with many more distributions on every validation frame
  (:func:`probseq.evaluate.scoring.score_split`, ``--reference``, default ``ais-4x1000``);

and reports, per criterion, its CPU seconds per call, the Spearman rank correlation with the
reference over all snapshots and within each run, and the *selection regret*: the reference NLL
of the snapshot the criterion would keep minus the best reference NLL of that run.

    python benchmarks/rbm_valid_criterion.py --run-root /tmp/vc --out /tmp/vc/rows.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from probseq import fit
from probseq.data.batch import Batch
from probseq.data.registry import load_dataset
from probseq.evaluate.chunking import validation_totals
from probseq.evaluate.scoring import score_split
from probseq.models.registry import build_model
from probseq.train.fit import training_options

#: name -> (valid_chains, valid_ais_steps, number of validation sequences or 0 for all)
AIS_CRITERIA = {"current": (4, 100, 0), "ais-2x100": (2, 100, 0), "ais-2x50": (2, 50, 0),
                "ais-4x100-first24": (4, 100, 24), "ais-2x100-first24": (2, 100, 24),
                "ais-4x25": (4, 25, 0)}


def pseudo_nll_per_frame(model, examples, batch_size: int = 32) -> float:
    """``-sum_t sum_i log P(v_ti | v_t,-i) / frames`` under each step's RBM (RTRBM biases)."""
    total, frames = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(examples), batch_size):
            batch = Batch.from_sequences(examples[start:start + batch_size])
            x = batch.values.to(model.rbm.weight.dtype)
            c, _ = model.hidden_biases(x)
            vb = model.visible_biases(x)
            mask = batch.mask
            v, hb = x[mask], c[mask]
            vb = vb[mask] if vb.dim() > 1 else vb.expand_as(v)
            free = model.rbm.free_energy(v, vb, hb)                         # (N,)
            d = v.shape[-1]
            flipped = v.unsqueeze(1).repeat(1, d, 1)                          # (N, D, D)
            idx = torch.arange(d)
            flipped[:, idx, idx] = 1 - flipped[:, idx, idx]
            free_flipped = model.rbm.free_energy(flipped, vb.unsqueeze(1), hb.unsqueeze(1))   # (N, D)
            # log P(v_i | v_-i) = -softplus(F(v) - F(v^i))
            total += float(torch.nn.functional.softplus(free.unsqueeze(1) - free_flipped).sum())
            frames += v.shape[0]
    return total / frames


def criterion_values(model, valid, reference: str) -> dict:
    out = {}
    cfg = model.config
    saved = dict(cfg)
    try:
        for name, (chains, steps, n) in AIS_CRITERIA.items():
            cfg.update(valid_criterion="nll", valid_chains=chains, valid_ais_steps=steps, valid_seed=0)
            t = time.process_time()
            total, frames = validation_totals(model, valid[:n] if n else valid, batch_size=32)
            out[name] = (total / frames, time.process_time() - t)
        cfg.update(valid_criterion="prediction")
        t = time.process_time()
        total, frames = validation_totals(model, valid, batch_size=32)
        out["prediction"] = (total / frames, time.process_time() - t)
    finally:
        cfg.clear()
        cfg.update(saved)
    t = time.process_time()
    out["pseudo"] = (pseudo_nll_per_frame(model, valid), time.process_time() - t)
    t = time.process_time()
    ref = score_split(model.eval(), valid, estimator=reference, generator=torch.Generator().manual_seed(1))
    summary = ref.summary()
    out["reference"] = (summary["nll_per_frame"], time.process_time() - t)
    out["reference_stderr"] = summary["stderr"]
    return out


def train_and_score(args) -> list[dict]:
    data = load_dataset("jsb")
    valid = data.split("valid")
    rows = []
    for lr in args.lrs:
        torch.manual_seed(args.seed)
        model = build_model("rtrbm", data.spec, {"hidden": args.hidden, "valid_criterion": "prediction"})
        opts = training_options(model, {"lr": lr, "keep": "last", "checkpoint_every": 10 ** 6})
        run_dir = Path(args.run_root) / f"rtrbm-h{args.hidden}-lr{lr:g}"
        for i, step in enumerate(args.snapshots):
            t = time.process_time()
            fit(model, data, run_dir, steps=step, seed=args.seed, options=opts, resume=i > 0, progress=False)
            train_cpu = time.process_time() - t
            values = criterion_values(model, valid, args.reference)
            row = {"lr": lr, "hidden": args.hidden, "step": step, "train_cpu_s": round(train_cpu, 1),
                   "reference_estimator": args.reference, "reference_stderr": values.pop("reference_stderr"),
                   **{k: round(v, 5) for k, (v, _) in values.items()},
                   **{f"{k}_cpu_s": round(s, 2) for k, (_, s) in values.items()}}
            print(json.dumps(row), flush=True)
            rows.append(row)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    names = list(AIS_CRITERIA) + ["prediction", "pseudo"]
    runs = sorted({r["lr"] for r in rows})
    table = []
    for name in names:
        entry = {"criterion": name,
                 "cpu_s_per_call": round(sum(r[f"{name}_cpu_s"] for r in rows) / len(rows), 2),
                 "spearman_all": round(float(spearmanr([r[name] for r in rows],
                                                       [r["reference"] for r in rows])[0]), 3)}
        regrets = []
        for lr in runs:
            sub = [r for r in rows if r["lr"] == lr]
            entry[f"spearman_lr{lr:g}"] = round(float(spearmanr([r[name] for r in sub],
                                                                [r["reference"] for r in sub])[0]), 3)
            chosen = min(sub, key=lambda r: r[name])
            regrets.append(chosen["reference"] - min(r["reference"] for r in sub))
            entry[f"chosen_step_lr{lr:g}"] = chosen["step"]
        entry["regret"] = [round(x, 4) for x in regrets]
        table.append(entry)
    return table


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-root", required=True)
    p.add_argument("--hidden", type=int, default=50)
    p.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 1e-2])
    p.add_argument("--snapshots", type=int, nargs="+", default=[25, 50, 100, 200, 300])
    p.add_argument("--reference", default="ais-4x1000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="append one JSON line per snapshot here")
    p.add_argument("--summarise", nargs="*", help="only summarise these JSON-lines files")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.summarise:
        rows = [json.loads(line) for path in args.summarise for line in open(path) if line.strip()]
    else:
        rows = train_and_score(args)
    for entry in summarise(rows):
        print(json.dumps(entry))


if __name__ == "__main__":
    main()
