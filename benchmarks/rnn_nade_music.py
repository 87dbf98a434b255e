"""RNN-NADE test NLL per frame on the Boulanger-Lewandowski piano-roll sets (JSB, Piano-midi.de).

Published exact figures to compare with (Boulanger-Lewandowski, Bengio & Vincent 2012, RNN-NADE, as
cited by Krishnan, Shalit & Sontag 2017, Table 2): **JSB 5.19**, **Piano-midi.de 7.05** nats per frame
(test negative log-likelihood per time step).

Training is plain maximum likelihood with Adam under a wall-clock budget: minibatches of whole
sequences (JSB) or of windows of ``--window`` frames (Piano-midi.de, whose pieces run to 3,857
steps; each window starts from the learned initial state), validation NLL on full sequences after
every epoch, the learning rate halved after ``--decay-patience`` epochs without improvement, early
stopping after ``--patience``, and the test NLL of the best-on-validation weights, computed exactly
on full sequences. One JSON line per epoch goes to stderr; the final result (one JSON object) to
stdout and to ``--out``.

Example (the runs recorded in ``benchmarks/RESULTS.md``)::

    python benchmarks/rnn_nade_music.py --dataset jsb --budget-min 20 --threads 1
    python benchmarks/rnn_nade_music.py --dataset piano-midi --window 100 --budget-min 25 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from probseq import DataSpec, build_model
from probseq.data.home import data_home
from probseq.data.batch import Batch
from probseq.data.sets.polyphonic import load_polyphonic

PUBLISHED = {"jsb": 5.19, "piano-midi": 7.05, "nottingham": 2.31, "musedata": 5.60}
DATA_FILES = {"jsb": "JSB_Chorales.mat", "piano-midi": "Piano_midi.mat"}
SHARED = data_home() / "polyphonic"  # the data home ($PROBSEQ_DATA, e.g. ../shared/data)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="jsb", choices=sorted(PUBLISHED))
    p.add_argument("--data-file", default=None, help="default: the shared developer copy")
    p.add_argument("--cell", default="gru")
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--nade-hidden", type=int, default=150)
    p.add_argument("--ordering", default="natural")
    p.add_argument("--init-scale", type=float, default=0.05)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--window", type=int, default=0, help="train on windows of this many frames (0 = whole)")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--input-dropout", type=float, default=0.0,
                   help="probability of zeroing each input note seen by the RNN during training")
    p.add_argument("--output-dropout", type=float, default=0.0,
                   help="dropout on the RNN state before the NADE-bias readout during training")
    p.add_argument("--transpose", type=int, default=0,
                   help="augment: shift each training piece by a random -K..K semitones per epoch")
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--decay-patience", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=1000)
    p.add_argument("--budget-min", type=float, default=20.0, help="wall-clock budget for training")
    p.add_argument("--eval-batch-frames", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON result file")
    p.add_argument("--save", default=None, help="save the best state_dict and config here (.pt)")
    return p.parse_args(argv)


def transpose(seqs, k_max: int, gen: torch.Generator):
    """Shift each piece by a uniform random number of semitones in ``[-k_max, k_max]``, limited to
    shifts that keep all its notes on the 88 keys (data augmentation; the test set is untouched)."""
    if k_max <= 0:
        return list(seqs)
    out = []
    for s in seqs:
        keys = s.any(0).nonzero().flatten()
        lo = max(-k_max, -int(keys.min())) if keys.numel() else 0
        hi = min(k_max, s.shape[1] - 1 - int(keys.max())) if keys.numel() else 0
        k = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        out.append(torch.roll(s, k, dims=1))
    return out


def windows(seqs, length: int, gen: torch.Generator):
    """Cut every sequence into consecutive windows of ``length`` frames from a random offset."""
    if length <= 0:
        return list(seqs)
    out = []
    for s in seqs:
        T = s.shape[0]
        start = int(torch.randint(min(length, T), (1,), generator=gen)) if T > length else 0
        if start > 0:
            out.append(s[:start])
        out.extend(s[i:i + length] for i in range(start, T, length))
    return out


@torch.no_grad()
def nll(model, seqs, max_frames: int) -> dict:
    """Exact NLL on full sequences: pooled per frame and averaged per sequence."""
    model.eval()
    total, frames, per_seq = 0.0, 0, []
    order = sorted(range(len(seqs)), key=lambda i: seqs[i].shape[0])
    i = 0
    while i < len(order):
        group = [order[i]]
        while (i + len(group) < len(order)
               and (len(group) + 1) * seqs[order[i + len(group)]].shape[0] <= max_frames):
            group.append(order[i + len(group)])
        batch = Batch.from_sequences([seqs[j] for j in group], dtype=torch.float32)
        lp = model.log_prob(batch).values.double()
        total -= float(lp.sum())
        frames += int(batch.lengths.sum())
        per_seq += (-lp / batch.lengths.double()).tolist()
        i += len(group)
    model.train()
    return {"nll_per_frame": total / frames, "nll_per_frame_seq_avg": sum(per_seq) / len(per_seq),
            "n_frames": frames, "n_sequences": len(seqs)}


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data_file = args.data_file or (SHARED / DATA_FILES[args.dataset]
                                   if args.dataset in DATA_FILES else None)
    ds = load_polyphonic(args.dataset, data_file=data_file)
    train, valid, test = (ds.split(s) for s in ("train", "valid", "test"))
    model = build_model("rnn-nade", DataSpec("binary", ds.spec.dim), {
        "cell": args.cell, "hidden": args.hidden, "nade_hidden": args.nade_hidden,
        "ordering": args.ordering, "init_scale": args.init_scale,
        "input_dropout": args.input_dropout, "output_dropout": args.output_dropout})
    model.prepare(ds)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    best, best_state, bad, bad_decay, history = math.inf, None, 0, 0, []
    epoch = 0
    for epoch in range(1, args.max_epochs + 1):
        pieces = windows(transpose(train, args.transpose, gen), args.window, gen)
        order = torch.randperm(len(pieces), generator=gen).tolist()
        train_total, train_frames = 0.0, 0
        for start in range(0, len(order), args.batch_size):
            batch = Batch.from_sequences([pieces[i] for i in order[start:start + args.batch_size]],
                                         dtype=torch.float32)
            loss = model.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            train_total += float(loss.detach()) * batch.n_frames
            train_frames += batch.n_frames
        v = nll(model, valid, args.eval_batch_frames)["nll_per_frame"]
        elapsed = time.perf_counter() - started
        row = {"epoch": epoch, "train_nll": train_total / train_frames, "valid_nll": v,
               "lr": opt.param_groups[0]["lr"], "elapsed_s": round(elapsed, 1)}
        history.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
        if v < best - 1e-4:
            best, bad, bad_decay = v, 0, 0
            best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
        else:
            bad += 1
            bad_decay += 1
            if bad_decay >= args.decay_patience:
                for g in opt.param_groups:
                    g["lr"] *= 0.5
                bad_decay = 0
        if bad >= args.patience or elapsed > args.budget_min * 60:
            break
    train_s = time.perf_counter() - started
    model.load_state_dict(best_state)
    t0 = time.perf_counter()
    test = nll(model, test, args.eval_batch_frames)
    result = {
        "benchmark": "rnn_nade_music", "dataset": args.dataset, "model": "rnn-nade",
        "kind": "exact", "estimator": "exact", "split": "test",
        **test, "best_valid_nll_per_frame": best,
        "published_nll_per_frame": PUBLISHED[args.dataset],
        "gap_to_published": test["nll_per_frame"] - PUBLISHED[args.dataset],
        "epochs": epoch, "train_wall_s": round(train_s, 1),
        "test_eval_wall_s": round(time.perf_counter() - t0, 1),
        "threads": args.threads, "config": {k: v for k, v in vars(args).items() if k != "out"},
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    print(json.dumps(result))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({**result, "history": history}, indent=1))
    if args.save:
        torch.save({"model": "rnn-nade", "spec": model.spec.to_dict(), "config": model.config,
                    "state_dict": model.state_dict()}, args.save)
    return result


if __name__ == "__main__":
    main(parse_args())
