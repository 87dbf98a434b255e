"""VRNN on JSB Chorales: test ELBO, IWAE-K and the importance-sampled estimate per frame, time-boxed.

Trains ``vrnn`` (binary frames, ``length=none`` as in the published piano-roll results, which score
``log p(x_{1:T} | T)``) with Adam on minibatches of the training split for at most ``--minutes``
(wall clock, 1 thread by default), validating the ELBO (one fixed-seed draw) after every epoch and
keeping the best weights (early stopping after ``--patience`` validations without improvement,
counted once the KL warm-up is over). Then scores the test split
with ``--samples`` draws per sequence: the ELBO (mean of the single-draw ELBOs with closed-form
KL), the IWAE-K bound and the IS-K estimate with its delta-method standard error — all three from
the same draws. Published figures for comparison (NLL per frame, nats; lower is better):
STORN (Bayer & Osendorfer 2014) 6.91; Deep Markov Model (Krishnan, Shalit & Sontag 2017) ELBO 6.926,
importance-sampled 6.388.

    python benchmarks/vrnn_jsb.py --threads 1 --minutes 30 --samples 500 --out /tmp/vrnn_jsb.json

Writes a JSON summary (``--out``) and prints one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_jsb():
    import probseq

    try:
        return probseq.load_dataset("jsb")
    except Exception as err:          # fall back to the developer copy of the .mat file
        from probseq.data.home import data_home

        _log(f"load_dataset('jsb') failed ({err}); reading the .mat copy in the data home")
        return probseq.load_dataset("jsb", data_file=data_home() / "polyphonic" / "JSB_Chorales.mat")


def score(model, examples, samples: int, seed: int, batch_size: int) -> dict:
    """ELBO / IWAE-K / IS-K per frame on ``examples`` from one set of ``samples`` draws per sequence."""
    from probseq.data.batch import Batch
    from probseq.estimators import latent

    g = torch.Generator().manual_seed(seed)
    order = sorted(range(len(examples)), key=lambda i: examples[i].shape[0])   # little padding
    elbo_v, iwae_v, is_v, is_se, frames = [], [], [], [], []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            batch = Batch.from_sequences([examples[i] for i in order[start:start + batch_size]])
            log_w, elbo_terms = model.log_weights(batch, samples, generator=g)
            elbo_v.append(latent.elbo(elbo_terms).values)
            iwae_v.append(latent.iwae(log_w).values)
            est = latent.importance_sampled(log_w)
            is_v.append(est.values)
            is_se.append(est.stderr)
            frames.append(batch.lengths.to(torch.float64))
    frames_t = torch.cat(frames)
    out = {"n_sequences": len(examples), "n_frames": int(frames_t.sum()), "samples": samples}
    for name, parts in (("elbo", elbo_v), (f"iwae_{samples}", iwae_v), (f"is_{samples}", is_v)):
        v = torch.cat(parts).double()
        out[f"{name}_nll_per_frame"] = float(-v.sum() / frames_t.sum())
        out[f"{name}_nll_per_frame_seq_avg"] = float((-v / frames_t).mean())
    se = torch.cat(is_se).double()
    out[f"is_{samples}_stderr"] = float(se.pow(2).sum().sqrt() / frames_t.sum())
    return out


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    from probseq.data.batch import Batch
    from probseq.models.vrnn import VRNN

    started = time.perf_counter()
    data = load_jsb()
    train, valid, test = data.split("train"), data.split("valid"), data.split("test")
    torch.manual_seed(args.seed)
    model = VRNN(data.spec, hidden=args.hidden, latent=args.latent, features=args.features,
                 kl_warmup=args.kl_warmup, free_bits=args.free_bits)
    model.prepare(data)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    order_gen = torch.Generator().manual_seed(args.seed)
    loss_gen = torch.Generator().manual_seed(args.seed + 1)

    def valid_loss() -> float:
        model.eval()
        total, frames = 0.0, 0
        with torch.no_grad():
            for s in range(0, len(valid), 64):
                b = Batch.from_sequences(valid[s:s + 64])
                total += model.validation_loss(b) * b.n_frames
                frames += b.n_frames
        model.train()
        return total / frames

    best, best_state, best_epoch, bad, step, epoch = math.inf, None, -1, 0, 0, 0
    budget = args.minutes * 60
    train_start = time.perf_counter()
    history = []
    model.train()
    while time.perf_counter() - train_start < budget and step < args.max_steps:
        perm = torch.randperm(len(train), generator=order_gen).tolist()
        for s in range(0, len(perm), args.batch_size):
            batch = Batch.from_sequences([train[i] for i in perm[s:s + args.batch_size]])
            model.on_train_step(step, args.max_steps)
            loss = model.loss(batch, generator=loss_gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            step += 1
        epoch += 1
        if epoch % args.valid_every == 0:
            v = valid_loss()
            diag = model.diagnostics(Batch.from_sequences(valid[:64]))
            elapsed = time.perf_counter() - train_start
            history.append({"epoch": epoch, "step": step, "valid_elbo_nll": round(v, 4),
                            "kl_per_frame": round(diag["kl_per_frame"], 4),
                            "active_units": diag["active_units"], "kl_weight": round(model.kl_weight, 3),
                            "minutes": round(elapsed / 60, 2)})
            _log(json.dumps(history[-1]))
            if v < best:
                best, best_epoch, bad = v, epoch, 0
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
            elif model.kl_weight >= 1.0:       # patience counts only after the KL warm-up
                bad += 1
                if bad >= args.patience:
                    _log(f"early stop at epoch {epoch}")
                    break
    train_minutes = (time.perf_counter() - train_start) / 60
    if best_state is not None:
        model.load_state_dict(best_state)
    eval_start = time.perf_counter()
    test_scores = score(model, test, args.samples, args.seed + 2, args.eval_batch)
    diag = model.diagnostics(Batch.from_sequences(test[:64]))
    result = {
        "benchmark": "vrnn_jsb",
        "config": {k: v for k, v in vars(args).items() if k != "out"},
        "train": {"steps": step, "epochs": epoch, "best_epoch": best_epoch, "best_valid_elbo_nll": best,
                  "train_minutes": round(train_minutes, 2)},
        "test": test_scores,
        "test_diagnostics": {k: diag[k] for k in ("kl_per_frame", "active_units", "recon_nll_per_frame")},
        "eval_minutes": round((time.perf_counter() - eval_start) / 60, 2),
        "total_minutes": round((time.perf_counter() - started) / 60, 2),
        "published": {"STORN": 6.91, "DMM_elbo": 6.926, "DMM_is": 6.388},
        "history": history,
        "torch": torch.__version__, "threads": args.threads,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps({k: result[k] for k in ("train", "test", "total_minutes")}))
    return result


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    p.add_argument("--max-steps", type=int, default=20000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--latent", type=int, default=16)
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--clip", type=float, default=10.0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--kl-warmup", type=float, default=0.05, help="fraction of --max-steps")
    p.add_argument("--free-bits", type=float, default=0.0)
    p.add_argument("--valid-every", type=int, default=1, help="epochs")
    p.add_argument("--patience", type=int, default=15, help="validations without improvement")
    p.add_argument("--samples", type=int, default=500, help="draws per test sequence (IWAE-K, IS-K)")
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
