"""Continue the opening bars of a chorale with RNN-NADE, and write the result as MIDI and a piano-roll.

    python examples/continue_chorale.py --out chorale_out                  # embedded JSB, brief fit
    python examples/continue_chorale.py --midi song.mid --run runs/jsb --out chorale_out

Steps: (1) the prime is the first ``--prime-steps`` frames of a MIDI file (read with
``probseq.io.media.read_prime`` at JSB's quarter-note resolution) or of a JSB test chorale (the copy
embedded in probseq); (2) the model is loaded from a run directory made by ``probseq fit rnn-nade``
or fitted here for ``--steps`` steps on the embedded JSB training set (tiny by default: a demo,
not a good model — see ``benchmarks/rnn_nade_music.py`` for a real fit); (3) ``model.sample(prefix=...)``
continues the prime to ``--length`` frames; (4) the samples go to ``continuation.mid`` and
``continuation.png`` (prime and continuation, separated by a line in the plot).

The fitted run directory is an ordinary probseq run: ``probseq sample OUT/run --prime song.mid ...``
works on it too.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from probseq import build_model
from probseq.io.media import read_prime, write_samples
from probseq.data.sets.polyphonic import load_polyphonic


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Continue a chorale with RNN-NADE; write MIDI and PNG.")
    p.add_argument("--out", default="chorale_out", help="output directory")
    p.add_argument("--midi", default=None, help="a MIDI file to continue (default: a JSB test chorale)")
    p.add_argument("--chorale", type=int, default=0, help="index of the JSB test chorale to continue")
    p.add_argument("--run", default=None, help="a run directory from `probseq fit rnn-nade --data jsb`")
    p.add_argument("--steps", type=int, default=60, help="training steps when fitting here")
    p.add_argument("--hidden", type=int, default=64, help="RNN state size when fitting here")
    p.add_argument("--nade-hidden", type=int, default=32, help="NADE hidden units when fitting here")
    p.add_argument("--prime-steps", type=int, default=8, help="frames of the prime (8 = two 4/4 bars)")
    p.add_argument("--length", type=int, default=32, help="total frames: prime plus continuation")
    p.add_argument("-n", type=int, default=2, help="number of continuations")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p.parse_args(argv)


def get_model(args, dataset, out: Path):
    """Load ``--run`` or fit a small RNN-NADE into ``out/run`` (a run the CLI can use)."""
    if args.run:
        from probseq.train.checkpoint import load_run

        model, info = load_run(args.run)
        return model, info.get("meta") or dataset.meta
    from probseq.train.checkpoint import write_run_info
    from probseq.train.fit import fit, training_options

    run = out / "run"
    torch.manual_seed(args.seed)
    model = build_model("rnn-nade", dataset.spec, {"hidden": args.hidden, "nade_hidden": args.nade_hidden,
                                                    "init_scale": 0.2})
    opts = training_options(model, {"batch_size": 8, "patience": 0})
    write_run_info(run, {"model": "rnn-nade", "spec": dataset.spec.to_dict(),
                         "hyperparameters": model.config, "training": opts, "steps": args.steps,
                         "seed": args.seed, "dataset": {"name": "jsb", "data_file": None,
                                                        "data_dir": None, "options": {}},
                         "meta": dataset.meta})
    fit(model, dataset, run, steps=args.steps, seed=args.seed, options=opts, progress=False)
    model.eval()
    return model, dataset.meta


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_polyphonic("jsb")
    if args.midi:
        frames = read_prime(args.midi, dataset.meta)
    else:
        frames = dataset.split("test")[args.chorale]
    prime = frames[: args.prime_steps]
    model, meta = get_model(args, dataset, out)
    samples = model.sample(args.n, length=args.length, prefix=prime.unsqueeze(0),
                           temperature=args.temperature,
                           generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        nll = -model.log_prob(samples).values / samples.lengths
    midi = write_samples(samples, out / "continuation.mid", meta)
    png = [plot_continuation(out / "continuation.png", samples, prime.shape[0], meta)]
    report = {"prime_frames": int(prime.shape[0]), "length": args.length, "n": args.n,
              "files": [str(p) for p in midi + png],
              "nll_per_frame_of_samples": [round(float(v), 3) for v in nll]}
    print(json.dumps(report))
    return report


def plot_continuation(path: Path, samples, prime_len: int, meta) -> Path:
    """Piano-roll PNG, one panel per sample, with a line where the prime ends (matplotlib)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lowest = int(meta.get("lowest_note", 21))
    n = len(samples.lengths)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n), squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        roll = samples.values[i, : int(samples.lengths[i])].T.numpy()
        keys = roll.any(1).nonzero()[0]
        lo, hi = (keys.min(), keys.max() + 1) if keys.size else (0, roll.shape[0])
        ax.imshow(roll[lo:hi], aspect="auto", origin="lower", cmap="Greys", interpolation="nearest",
                  extent=(0, roll.shape[1], lowest + lo - 0.5, lowest + hi - 0.5))
        ax.axvline(prime_len, color="tab:red", lw=1.5)
        ax.set_ylabel("MIDI note")
        ax.set_title(f"continuation {i + 1}: prime (left of the red line) + RNN-NADE samples", fontsize=9)
    axes[-1, 0].set_xlabel("time step")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main(parse_args())
