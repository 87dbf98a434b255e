"""Bouncing balls (Sutskever 2013, §3.11; Sutskever, Hinton & Taylor 2008): next-frame error per pixel.

Reproduces the thesis set-up as far as a time budget on a shared CPU allows: videos of 3 balls,
30x30 pixels, 100 frames (``probseq`` dataset ``bouncing-balls``), models with 400 hidden units,
the thesis training recipe (``preset=thesis``: static CD-5 pre-training of ``W``, then SGD with
momentum 0.9, learning rate decaying linearly to 0, CD-``k1`` for the first half and CD-``k2``
after). Because training is limited by wall-clock time rather than by a step count, the linear
decay and the CD-k switch are driven by the *fraction of the time budget used* (a step-count
schedule needs the total number of steps in advance).

Reported on the test split, over frames ``t >= 2`` of every sequence (the metric of
:mod:`probseq.evaluate.prediction`):

* each model's one-step-ahead prediction ``E[v_t | v_{<t}]`` of step ``t``'s RBM (RTRBM: a seeded
  Gibbs average, ``predict=gibbs``, and for comparison mean-field on the same frames; TRBM: its
  own rule, mean-field);
* copy-last-frame ``v_{t-1}``;
* linear extrapolation ``clip(2 v_{t-1} - v_{t-2}, 0, 1)`` (``v_1`` for ``t = 2``).

Published figures (thesis §3.11): RTRBM 0.007, TRBM 0.04 squared error per pixel.

    python benchmarks/bouncing_balls.py --models rtrbm trbm --budget-min 30 --threads 1 \\
        --out benchmarks/results/bouncing_balls_runs.jsonl

Prints one JSON line per model (and one for the baselines).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from probseq.data.registry import load_dataset
from probseq.evaluate.prediction import next_frame_errors
from probseq.models.registry import build_model

PUBLISHED = {"rtrbm": 0.007, "trbm": 0.04}


def baselines(examples: list[torch.Tensor]) -> dict:
    sq_copy = sq_lin = 0.0
    n = 0
    for x in examples:
        x = x.double()
        copy = x[:-1]
        lin = torch.cat([x[:1], (2 * x[1:-1] - x[:-2]).clamp(0, 1)])
        sq_copy += float(((copy - x[1:]) ** 2).sum())
        sq_lin += float(((lin - x[1:]) ** 2).sum())
        n += x.shape[0] - 1
    d = examples[0].shape[1]
    return {"model": "baselines", "n_predicted_frames": n,
            "copy_last_mse_per_pixel": sq_copy / (n * d), "linear_extrapolation_mse_per_pixel": sq_lin / (n * d)}


def train_for(model, dataset, *, budget_s: float, batch_size: int, seed: int, log, eval_every_s: float,
              valid: list[torch.Tensor]) -> dict:
    opts = {"lr": 1e-3, "optimizer": "adam", "momentum": 0.0, "clip": 0.0, **model.training_defaults}
    params = [p for p in model.parameters() if p.requires_grad]
    if opts["optimizer"] == "sgd":
        opt = torch.optim.SGD(params, lr=opts["lr"], momentum=opts["momentum"])
    else:
        opt = torch.optim.Adam(params, lr=opts["lr"])
    base_lr = float(opts["lr"])
    train = dataset.split("train")
    g = torch.Generator().manual_seed(seed)
    loss_gen = torch.Generator().manual_seed(seed + 1)
    order = torch.randperm(len(train), generator=g).tolist()
    start = time.perf_counter()
    step, pos, last_eval = 0, 0, start
    history = []
    while True:
        frac = (time.perf_counter() - start) / budget_s
        if frac >= 1:
            break
        model.on_train_step(int(frac * 10_000), 10_000)
        if opts.get("lr_schedule") == "linear":
            for group in opt.param_groups:
                group["lr"] = base_lr * (1 - frac)
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(train), generator=g).tolist(), 0
        batch = model.collate([train[i] for i in order[pos:pos + batch_size]])
        pos += batch_size
        loss = model.loss(batch, generator=loss_gen)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss diverged at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if float(opts.get("clip") or 0) > 0:
            torch.nn.utils.clip_grad_norm_(params, float(opts["clip"]))
        opt.step()
        step += 1
        if time.perf_counter() - last_eval > eval_every_s:
            last_eval = time.perf_counter()
            model.eval()
            mse = next_frame_errors(model, valid, batch_size=25)["next_frame_mse_per_dim"]
            model.train()
            event = {"model": model.name, "step": step, "elapsed_s": round(last_eval - start, 1),
                     "cd_steps": getattr(model, "cd_steps", None), "loss": float(loss), "valid_mse_per_pixel": mse}
            history.append(event)
            log(event)
    return {"steps": step, "train_s": time.perf_counter() - start, "history": history}


def main(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out) if args.out else None
    t0 = time.perf_counter()
    dataset = load_dataset("bouncing-balls", n_train=args.n_train, n_valid=args.n_valid, n_test=args.n_test,
                           seed=args.data_seed)
    data_s = time.perf_counter() - t0

    def log(event):
        print(json.dumps(event), flush=True)
        if out is not None:
            with open(out, "a") as f:
                f.write(json.dumps(event) + "\n")

    results = []
    base = baselines(dataset.split("test"))
    base.update({"data_s": round(data_s, 1), "n_test": args.n_test})
    log(base)
    results.append(base)
    valid = dataset.split("valid")[: args.n_valid_eval]
    for name in args.models:
        hyper = {"hidden": args.hidden, "preset": args.preset, "cd_steps": args.cd_steps,
                 "cd_steps_late": args.cd_steps_late, "pretrain_steps": args.pretrain_steps,
                 "mean_field_steps": args.mean_field_steps}
        torch.manual_seed(args.seed)
        model = build_model(name, dataset.spec, hyper)
        if args.lr is not None:
            model.training_defaults = {**model.training_defaults, "lr": args.lr}
        if args.load_dir:
            saved = torch.load(Path(args.load_dir) / f"{name}.pt", weights_only=True)
            model.load_state_dict(saved["state_dict"])
            prepare_s, summary = 0.0, {"steps": saved.get("steps"), "train_s": saved.get("train_s", 0.0)}
        else:
            t = time.perf_counter()
            model.prepare(dataset)
            prepare_s = time.perf_counter() - t
            model.train()
            summary = train_for(model, dataset, budget_s=args.budget_min * 60, batch_size=args.batch_size,
                                seed=args.seed, log=log, eval_every_s=args.eval_every_min * 60, valid=valid)
        if args.save_dir and not args.load_dir:
            Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            torch.save({"model": name, "config": model.config, "state_dict": model.state_dict(),
                        "steps": summary["steps"], "train_s": summary["train_s"]},
                       Path(args.save_dir) / f"{name}.pt")
        t = time.perf_counter()
        model.eval()
        errors = next_frame_errors(model, dataset.split("test"), batch_size=25)
        eval_s = time.perf_counter() - t
        if "predict" in model.config:
            # the other prediction rule on the same test split, for comparison
            other = "mean-field" if model.config["predict"] == "gibbs" else "gibbs"
            used = model.config["predict"]
            model.config["predict"] = other
            t = time.perf_counter()
            errors[f"{other}_prediction_mse_per_pixel"] = next_frame_errors(
                model, dataset.split("test"), batch_size=25)["next_frame_mse_per_dim"]
            errors[f"{other}_prediction_eval_s"] = round(time.perf_counter() - t, 1)
            model.config["predict"] = used
            errors[f"{used}_prediction_mse_per_pixel"] = errors["next_frame_mse_per_dim"]
        row = {"model": name, "hidden": args.hidden, "preset": args.preset,
               "cd_steps": [args.cd_steps, args.cd_steps_late], "batch_size": args.batch_size,
               "lr": model.training_defaults.get("lr"), "n_train": args.n_train,
               "prepare_s": round(prepare_s, 1), "train_s": round(float(summary["train_s"] or 0), 1),
               "steps": summary["steps"],
               "epochs": None if summary["steps"] is None else round(summary["steps"] * args.batch_size / args.n_train, 2),
               "test_mse_per_pixel": errors["next_frame_mse_per_dim"],
               "test_se_per_frame": errors["next_frame_se_per_frame"],
               "copy_last_mse_per_pixel": errors["baseline_copy_last_mse_per_dim"],
               "published_mse_per_pixel": PUBLISHED.get(name), "eval_s": round(eval_s, 1),
               "threads": args.threads,
               "predict": model.config.get("predict", "mean-field"),
               **{k: v for k, v in errors.items() if k.startswith(("gibbs", "mean-field"))}}
        log(row)
        results.append(row)
    return results


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["rtrbm", "trbm"])
    p.add_argument("--budget-min", type=float, default=30.0, help="training wall-clock budget per model")
    p.add_argument("--eval-every-min", type=float, default=5.0)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--preset", default="thesis")
    p.add_argument("--cd-steps", type=int, default=10)
    p.add_argument("--cd-steps-late", type=int, default=25)
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--mean-field-steps", type=int, default=20)
    p.add_argument("--lr", type=float, default=None, help="override the preset's learning rate")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--n-train", type=int, default=400)
    p.add_argument("--n-valid", type=int, default=20)
    p.add_argument("--n-valid-eval", type=int, default=20)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--load-dir", default=None,
                   help="skip training: load <model>.pt weights saved by --save-dir and only evaluate")
    p.add_argument("--out", default=None, help="append the JSON lines to this file")
    p.add_argument("--save-dir", default=None, help="save the trained weights here")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
