"""RNN-NADE test NLL per frame on the Boulanger-Lewandowski piano-roll sets, with probseq's own trainer.

A thin wrapper over ``probseq reproduce bl2012-polyphonic DATASET rnn-nade``, i.e. over

    probseq fit rnn-nade --data DATASET [--data-file F] [--minutes M] --out RUN
    probseq evaluate RUN --split test --json

with the model's default recipe (``RNNNADE.hyperparameters`` / ``training_defaults``, written down in
``docs/training.md``): a 300-unit LSTM with DropConnect 0.7 on its recurrent weights, dropout on the notes the RNN reads (0.4) and on its state (0.6),
Adam 2e-3 on minibatches of 4 pieces, learning rate halved after 3 validations without improvement,
stopped after 10, the moving average of the weights validated and kept; pieces longer than 200
frames (all sets but JSB) trained as windows of 200 frames.
Published (Boulanger-Lewandowski et al. 2012, Table 1): JSB 5.19, Piano-midi.de 7.05, Nottingham 2.31,
MuseData 5.60 nats per frame, pooled over frames.

    python benchmarks/rnn_nade_music.py --dataset jsb --minutes 20 --threads 1 --out result.json

Prints our figure beside the published one and writes the result JSON (``probseq.reproduce``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from probseq.cli import run_in_process
from probseq.reproduce import BL2012_TABLE1, format_result, reproduce


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="jsb", choices=sorted(BL2012_TABLE1["rnn-nade"]))
    p.add_argument("--data-file", default=None, help="the dataset's file (jsb: embedded by default)")
    p.add_argument("--minutes", type=float, default=None, help="training budget (default: until "
                                                               "validation stops improving)")
    p.add_argument("--steps", type=int, default=None, help="training steps instead (tests)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override the recipe (the result is then marked partial)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=None, help="directory for the run (default: a temporary one)")
    p.add_argument("--out", default=None, help="JSON result file")
    return p.parse_args(argv)


def main(args) -> dict:
    torch.set_num_threads(args.threads)
    work = Path(args.work or tempfile.mkdtemp(prefix="rnn_nade_"))
    result = reproduce("bl2012-polyphonic", [args.dataset, "rnn-nade"],
                       run_command=run_in_process, out=work, minutes=args.minutes,
                       steps=args.steps, sets=args.set, data_file=args.data_file, seed=args.seed,
                       threads=args.threads)
    print(format_result(result))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main(parse_args())
