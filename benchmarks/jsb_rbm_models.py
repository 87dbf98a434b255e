"""RNN-RBM and RTRBM on JSB Chorales: AIS and RAISE log-likelihoods per frame next to the published rows.

Trains each model with probseq's own trainer (``probseq.train.fit``: Adam, minibatches of whole
chorales) under **one selection rule for both**: ``keep=best`` by the model's validation criterion,
which for 0/1 frames is the AIS-estimated validation NLL per frame (``valid_chains`` chains through
``valid_ais_steps`` intermediate distributions per frame, a fixed seed; see
:func:`probseq.models._rbm_common.likelihood_validation_loss`), evaluated every ``--eval-every``
steps; the test split is touched once, after training, to report. Then scores the test split with
AIS (biased upward in expectation: optimistic) and RAISE (biased downward: conservative) — every
frame's RBM with ``--ais-chains`` chains through ``--ais-steps`` intermediate distributions — so the
two bracket the model's log-likelihood; the standard errors cover chain noise only.

    python benchmarks/jsb_rbm_models.py --models rtrbm --steps 8000 --minutes 30 --eval-every 400 \\
        --ais-chains 20 --ais-steps 500 --out benchmarks/results/jsb_rbm_runs.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch

from probseq.data.registry import load_dataset
from probseq.evaluate.scoring import score_split
from probseq.models.registry import build_model
from probseq.train.checkpoint import safe_load
from probseq import fit  # probseq.fit, the library trainer

#: Boulanger-Lewandowski, Bengio & Vincent (2012), Table 1, JSB log-likelihood per time step
REFERENCE_LL = {"rnn-rbm": -6.27, "rtrbm": -6.35}


def set_ais_steps(model, steps: int) -> None:
    """Point the model's default number of AIS intermediate distributions at ``steps``."""
    model.config["ais_steps"] = steps
    frame = getattr(model, "frame", None)
    if frame is not None and hasattr(frame, "ais_steps"):
        frame.ais_steps = steps


def main(args) -> list[dict]:
    torch.set_num_threads(args.threads)
    dataset = load_dataset("jsb", data_file=args.data_file) if args.data_file else load_dataset("jsb")
    test = dataset.split("test")
    rows = []
    for name in args.models:
        hyper = {"rnn-rbm": {"hidden": args.rnn_hidden, "rbm_hidden": args.rbm_hidden, "cd_steps": args.cd_steps,
                             "pretrain_steps": args.pretrain_steps},
                 "rtrbm": {"hidden": args.rbm_hidden, "cd_steps": args.cd_steps,
                           "pretrain_steps": args.pretrain_steps}}[name]
        hyper.update({"valid_criterion": "nll", "valid_chains": args.valid_chains,
                      "valid_ais_steps": args.valid_ais_steps})
        torch.manual_seed(args.seed)
        model = build_model(name, dataset.spec, hyper)
        run_dir = f"{args.run_root}/{name}" if args.run_root else tempfile.mkdtemp(prefix=f"jsb-{name}-")
        if args.score_existing:
            # score the weights an earlier invocation selected (its log.jsonl says which step)
            model.load_state_dict(safe_load(f"{run_dir}/model.pt")["state_dict"])
            end = [json.loads(line) for line in open(f"{run_dir}/log.jsonl")][-1]
            summary = argparse.Namespace(steps=end["step"], best_step=end["best_step"], best_valid=end["best_valid"],
                                         stopped_early=False)
            train_s = end["wall_s"]
        else:
            t = time.perf_counter()
            summary = fit(model, dataset, run_dir, steps=args.steps, minutes=args.minutes, seed=args.seed,
                          options={"lr": args.lr, "batch_size": args.batch_size, "patience": args.patience,
                                   "keep": "best", "eval_every": args.eval_every}, progress=False)
            train_s = time.perf_counter() - t
        model.eval()
        set_ais_steps(model, args.ais_steps)
        scores, walls = {}, {}
        for offset, estimator in enumerate(("ais", "raise")):
            t = time.perf_counter()
            scores[estimator] = score_split(model, test, estimator=estimator, samples=args.ais_chains,
                                            batch_size=args.eval_batch,
                                            generator=torch.Generator().manual_seed(args.seed + 10 + offset)).summary()
            walls[estimator] = round(time.perf_counter() - t, 1)
        row = {
            "model": name, "hyper": hyper, "lr": args.lr, "batch_size": args.batch_size,
            "ais_chains": args.ais_chains, "ais_steps": args.ais_steps,
            "weights": "best validation (AIS-estimated validation NLL)",
            "steps": summary.steps, "best_step": summary.best_step, "best_valid": summary.best_valid,
            "stopped_early": summary.stopped_early, "train_s": round(train_s, 1),
            **{f"test_nll_per_frame_{e}": scores[e]["nll_per_frame"] for e in scores},
            **{f"stderr_{e}": scores[e]["stderr"] for e in scores},
            **{f"estimator_{e}": scores[e]["estimator"] for e in scores},
            **{f"eval_s_{e}": walls[e] for e in walls},
            "n_frames": scores["ais"]["n_frames"], "reference_ll_per_frame": REFERENCE_LL[name],
            "threads": args.threads,
        }
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")
        rows.append(row)
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["rnn-rbm", "rtrbm"])
    p.add_argument("--data-file", default=None)
    p.add_argument("--steps", type=int, default=8000)
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget for training")
    p.add_argument("--eval-every", type=int, default=400, help="steps between validations")
    p.add_argument("--valid-chains", type=int, default=4)
    p.add_argument("--valid-ais-steps", type=int, default=100)
    p.add_argument("--run-root", default=None, help="keep the run directories here (default: a temporary one)")
    p.add_argument("--score-existing", action="store_true",
                   help="skip training: score the weights already selected in --run-root/MODEL")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patience", type=int, default=0, help="0: train the whole budget, keep the best")
    p.add_argument("--rnn-hidden", type=int, default=100)
    p.add_argument("--rbm-hidden", type=int, default=150)
    p.add_argument("--cd-steps", type=int, default=15)
    p.add_argument("--pretrain-steps", type=int, default=500)
    p.add_argument("--ais-chains", type=int, default=20)
    p.add_argument("--ais-steps", type=int, default=500)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
