"""One-step prediction error on the MIT motion capture data (49 dims): TRBM vs RTRBM vs copy-last.

Published figures (Sutskever 2013, thesis §3.11; Sutskever, Hinton & Taylor 2008), squared
one-step prediction error per dimension on the normalised 49-dimensional data, 200 hidden units:
**RTRBM 0.42**, **TRBM 0.47**. The papers do not state the split or exactly how the prediction was
formed; ours are documented in ``probseq/data/sets/mocap.py`` (contiguous 80/10/10 of each of the 3
sequences, z-scored with training statistics) and in each model's ``predict_next`` (mean-field
``E[v_t]`` of step ``t``'s RBM given the true past). The copy-last-frame baseline predicts
``x_t = x_{t-1}``; all three are scored on the same frames (every test frame but each sequence's
first) by :func:`probseq.evaluate.prediction.next_frame_errors`.

Both models are trained by the project's trainer (``probseq fit``) with the same options, for the
same wall-clock budget each: ``--budget-min`` minutes are turned into a step count by timing a few
steps first (so the linear learning-rate decay of ``preset=thesis`` ends on time). The result (one
JSON object) goes to stdout and to ``--out/result.json``.

Example (the run recorded in ``benchmarks/RESULTS.md``)::

    python benchmarks/mocap_mit.py --budget-min 20 --threads 1 --out runs/mocap
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from probseq.data.batch import Batch
from probseq.data.registry import load_dataset
from probseq.evaluate.prediction import next_frame_errors
from probseq.models.registry import build_model
from probseq.train.checkpoint import write_run_info
from probseq.train.fit import fit, training_options

PUBLISHED = {"rtrbm": 0.42, "trbm": 0.47}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-file", default=None, help="motion.mat (default: the shared developer copy)")
    p.add_argument("--models", default="trbm,rtrbm")
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--preset", default="thesis", choices=["thesis", "none"])
    p.add_argument("--cd-steps", type=int, default=10)
    p.add_argument("--cd-steps-late", type=int, default=25)
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--lr", type=float, default=None, help="default: the preset's")
    p.add_argument("--batch-size", type=int, default=32, help="windows of --chunk frames per step")
    p.add_argument("--chunk", type=int, default=100, help="training window length (train_chunk)")
    p.add_argument("--budget-min", type=float, default=20.0, help="training minutes per model")
    p.add_argument("--steps", type=int, default=None, help="fixed step count instead of a budget")
    p.add_argument("--probe-steps", type=int, default=5)
    p.add_argument("--eval-every", type=int, default=50, help="steps between validations")
    p.add_argument("--denoise-noise", type=float, default=1.0,
                   help="std of the Gaussian noise (normalised units) for the TRBM denoising check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="runs/mocap_mit")
    return p.parse_args(argv)


def _hyper(args) -> dict:
    return {"hidden": args.hidden, "preset": args.preset, "cd_steps": args.cd_steps,
            "cd_steps_late": args.cd_steps_late, "pretrain_steps": args.pretrain_steps}


def _options(model, args) -> dict:
    opts = {"batch_size": args.batch_size, "patience": 0, "eval_every": args.eval_every}
    if args.lr is not None:
        opts["lr"] = args.lr
    return training_options(model, opts)


def _seconds_per_step(name, dataset, args) -> float:
    """Time ``probe_steps`` training steps (loss, backward, at the late CD-k) of a throwaway model."""
    torch.manual_seed(args.seed)
    model = build_model(name, dataset.spec, _hyper(args))
    model.train()
    model.on_train_step(10 ** 9, 10 ** 9)                     # the slower, late CD-k
    train = dataset.split("train")
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(args.probe_steps):
        idx = torch.randint(len(train), (args.batch_size,), generator=g).tolist()
        model.loss(model.collate([train[i] for i in idx]), generator=g).backward()
    return (time.perf_counter() - start) / args.probe_steps


def _denoise_check(model, test, noise: float, seed: int) -> dict:
    """Online denoising (thesis fig. 3.2): squared error per dimension of noisy vs denoised test frames."""
    g = torch.Generator().manual_seed(seed)
    clean = Batch.from_sequences(test)
    noisy = clean.values + noise * torch.randn(clean.values.shape, generator=g)
    denoised = model.denoise(noisy)
    mask = clean.mask.unsqueeze(-1)
    frames = float(mask.sum()) * clean.values.shape[-1]

    def mse(x):
        return float(torch.where(mask, (x - clean.values) ** 2, torch.zeros(())).sum()) / frames

    return {"noise_std": noise, "noisy_mse_per_dim": mse(noisy), "denoised_mse_per_dim": mse(denoised)}


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    dataset = load_dataset("mocap-mit", data_file=args.data_file, train_chunk=args.chunk)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"dataset": "mocap-mit", "split": "test", "hidden": args.hidden, "preset": args.preset,
              "threads": args.threads, "models": {}}
    test = dataset.split("test")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        steps = args.steps
        per_step = None
        if steps is None:
            per_step = _seconds_per_step(name, dataset, args)
            steps = max(1, int(args.budget_min * 60 / per_step))
        torch.manual_seed(args.seed)
        model = build_model(name, dataset.spec, _hyper(args))
        opts = _options(model, args)
        # run.json as `probseq fit` writes it, so `probseq sample/evaluate` work on the run
        write_run_info(out / name, {
            "model": name, "spec": dataset.spec.to_dict(), "hyperparameters": model.config,
            "training": opts, "steps": steps, "seed": args.seed,
            "dataset": {"name": "mocap-mit", "data_file": args.data_file, "data_dir": None,
                        "options": {"train_chunk": args.chunk}},
            "meta": dataset.meta, "version": "benchmark"})
        started = time.perf_counter()
        summary = fit(model, dataset, out / name, steps=steps, seed=args.seed, options=opts, progress=False)
        wall = time.perf_counter() - started
        model.eval()
        errors = next_frame_errors(model, test)
        valid = next_frame_errors(model, dataset.split("valid"))
        entry = {"steps": steps, "probe_s_per_step": per_step, "wall_s": round(wall, 1),
                 "best_step": summary.best_step, "best_valid_loss": summary.best_valid,
                 "options": {k: opts[k] for k in ("lr", "optimizer", "momentum", "lr_schedule", "batch_size")},
                 "test_mse_per_dim": errors["next_frame_mse_per_dim"],
                 "valid_mse_per_dim": valid["next_frame_mse_per_dim"],
                 "published_mse_per_dim": PUBLISHED.get(name)}
        if hasattr(model, "denoise") and args.denoise_noise > 0:
            entry["denoise"] = _denoise_check(model, test, args.denoise_noise, args.seed)
        result["models"][name] = entry
        result["copy_last_test_mse_per_dim"] = errors["baseline_copy_last_mse_per_dim"]
        result["n_predicted_frames"] = errors["n_predicted_frames"]
        print(json.dumps({name: entry}), file=sys.stderr, flush=True)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(parse_args())
