"""``probseq demo``: three kinds of likelihood, compared honestly in one table, on the JSB chorales.

Fits four models to JSB Chorales (Boulanger-Lewandowski et al. 2012 splits; the copy shipped in
the package unless the data home has one) and scores them on the same test chorales:

* the independent-frames baseline and a GRU — **exact** likelihoods;
* a VRNN (Chung et al. 2015) — a **bound**: the IWAE-K lower bound on ``log p`` (so its NLL is an
  upper bound on the true NLL);
* an RNN-RBM (Boulanger-Lewandowski et al. 2012) — an **estimate**: AIS (its expected ``log p``
  is too high, so its NLL is optimistic) and RAISE (the conservative counterpart, Burda et al.
  2015). The RBM is kept small enough (10 hidden units) for its likelihood to be computed exactly
  too, so the table shows AIS and RAISE bracketing the exact value of the same model.

It prints the table (kind, which way each number can err, paired differences to the best), writes
GRU samples as MIDI and a piano-roll PNG, and a figure of the learning curves and per-sequence
NLLs (:mod:`probseq.evaluate.run_plots`). Each model is a run directory that ``probseq evaluate``,
``sample``, ``compare`` and ``plot`` accept. A few minutes on 2 CPU cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from probseq.data.registry import load_dataset
from probseq.device import generator_for
from probseq.errors import UserError

__all__ = ["run_demo", "DEMO_MODELS"]

#: (run name, model, hyperparameters, training options, share of ``steps``)
DEMO_MODELS = (
    ("independent", "independent", {}, {"eval_every": 25}, 0.2),
    ("gru", "gru", {"hidden": 128}, {"eval_every": 50}, 1.0),
    ("vrnn", "vrnn", {"hidden": 64, "latent": 8, "features": 64}, {"eval_every": 50}, 2 / 3),
    ("rnn-rbm", "rnn-rbm", {"hidden": 64, "rbm_hidden": 10, "cd_steps": 5, "ais_chains": 8,
                            "ais_steps": 100}, {"eval_every": 50}, 1.0),
)
#: how each model is scored on the test split: (row label, run name, estimator, samples)
DEMO_SCORES = (
    ("independent", "independent", None, None),
    ("gru", "gru", None, None),
    ("vrnn (iwae)", "vrnn", "iwae", 20),
    ("rnn-rbm (ais)", "rnn-rbm", "ais", 8),
    ("rnn-rbm (raise)", "rnn-rbm", "raise", 8),
    ("rnn-rbm (exact)", "rnn-rbm", "exact", None),
)


def run_demo(out: Path, *, steps: int = 300, quiet: bool = False,
             device: str | torch.device | None = None, test_sequences: int | None = None) -> int:
    """The demo; ``steps``: training steps of the GRU, VRNN and RNN-RBM; ``device``: where models
    train and score (``None``: the CPU); ``test_sequences``: score only the first N test chorales
    (default all; every model is scored on the same ones)."""
    from probseq.evaluate.compare import comparison_table, format_table
    from probseq.evaluate.run_plots import kind_label, plot_runs, read_training_log
    from probseq.evaluate.scoring import score_split
    from probseq.io.media import write_samples
    from probseq.models.registry import build_model
    from probseq.train.checkpoint import write_run_info
    from probseq.train.fit import fit, training_options

    out = Path(out)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UserError(f"the demo's number of training steps must be a positive integer, got {steps}")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} exists and is not empty; choose another --out")
    started = time.perf_counter()
    data = load_dataset("jsb")
    print(f"JSB Chorales ({data.meta.get('source', 'jsb')}): {len(data.splits['train'])} train / "
          f"{len(data.splits['valid'])} valid / {len(data.splits['test'])} test chorales, "
          f"{data.spec.dim} keys per frame")
    runs = {}
    for run_name, model_name, hyper, train_opts, share in DEMO_MODELS:
        run_dir = out / run_name
        n_steps = max(1, round(share * steps))
        torch.manual_seed(0)
        model = build_model(model_name, data.spec, hyper)
        opts = training_options(model, train_opts)
        write_run_info(run_dir, {
            "model": model_name, "spec": data.spec.to_dict(), "hyperparameters": model.config,
            "training": opts, "steps": n_steps, "seed": 0,
            "dataset": {"name": "jsb", "data_file": None, "data_dir": None, "options": {}},
            "meta": data.meta, "version": "demo",
        })
        print(f"fitting {run_name} ({model.likelihood_kind} likelihood, {n_steps} steps) ...")
        summary = fit(model, data, run_dir, steps=n_steps, seed=0, options=opts, progress=not quiet,
                      device=device)
        best = "" if summary.best_valid is None else f"; best validation loss {summary.best_valid:.3f}"
        print(f"  done in {summary.wall_s:.0f} s{best}")
        runs[run_name] = model

    test = data.split("test")[:test_sequences]
    print(f"scoring {len(test)} test chorales ...")
    scored = []
    for label, run_name, estimator, samples in DEMO_SCORES:
        model = runs[run_name]
        scored.append((label, score_split(model, test, estimator=estimator, samples=samples,
                                          generator=generator_for(model, 0))))
    rows = comparison_table(scored)
    models = {label: run_name for label, run_name, _, _ in DEMO_SCORES}
    for row in rows:
        row["model"] = models[row["run"]]
    print()
    print(format_table(rows))
    print()
    print("How to read it: 'exact' rows are log-likelihoods; the VRNN's IWAE is a lower bound on its\n"
          "log-likelihood, so its NLL can only be too high; the RNN-RBM's AIS NLL is too low in\n"
          "expectation and its RAISE NLL too high, bracketing its exact NLL. Rank models on numbers\n"
          "of the same kind; a bound or an estimate beating an exact number proves nothing by itself.")
    print()
    generator = generator_for(runs["gru"], 0)
    samples = runs["gru"].sample(4, length=64, generator=generator).to("cpu")
    written = write_samples(samples, out / "gru_samples.mid", data.meta)
    written += write_samples(samples, out / "gru_samples.png", data.meta)
    by_label = dict(scored)
    figure = plot_runs(out / "demo.png",
                       [(name, read_training_log(out / name)) for name in runs],
                       per_sequence=[(label, by_label[label].nll / by_label[label].n_frames,
                                      kind_label(by_label[label].kind, by_label[label].estimator))
                                     for label in ("gru", "vrnn (iwae)", "rnn-rbm (exact)")])
    written.append(figure)
    print(f"wrote {', '.join(str(p) for p in written)}")
    print(f"runs are in {', '.join(str(out / n) for n in runs)}; try `probseq evaluate {out}/gru --json`, "
          f"`probseq sample {out}/gru -n 2 --length 64 --out more.mid` or `probseq plot {out}/gru "
          f"{out}/vrnn --out curves.png`")
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0
