"""Make the pictures of the documentation with probseq's own functions (run from the repository root).

    python docs/make_figures.py            # writes docs/images/*.png and docs/images/dialogue_sample.txt

Each picture comes from data that ships with probseq or that probseq generates, drawn by
probseq's plotting functions, so anyone can remake it; the committed copies are small (low dpi).
The motion-capture stick figure is made by the motion models' own script.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent


def pianoroll(out: Path) -> Path:
    """Two JSB chorales of the test split (the embedded copy), as piano-rolls."""
    from probseq.data.registry import load_dataset
    from probseq.io.plots import plot_pianoroll

    data = load_dataset("jsb", data_file=_embedded_jsb())
    return plot_pianoroll(data.split("test")[:2], out / "pianoroll.png", steps_per_beat=1,
                          title="JSB Chorales (test split): what the music models fit")


def _embedded_jsb() -> Path:
    from importlib import resources

    from probseq.data.sets.polyphonic import EMBEDDED_JSB

    return Path(str(resources.files("probseq.data") / "embedded" / EMBEDDED_JSB))


def bouncing_balls(out: Path) -> Path:
    """A strip of frames of one generated bouncing-balls video (Sutskever, Hinton & Taylor 2008)."""
    from probseq.data.registry import load_dataset
    from probseq.io.plots import plot_frames

    data = load_dataset("bouncing-balls", n_train=1, n_valid=1, n_test=1, n_frames=40)
    return plot_frames(data.split("train")[:1], out / "bouncing_balls.png",
                       frame_shape=data.meta["frame_shape"], max_frames=10,
                       title="bouncing balls: 10 of the 40 frames of one video")


def ctc_alignment(out: Path) -> Path:
    """CTC's posterior alignment of the digit string 3 1 4 to 40 frames of per-frame probabilities.

    The per-frame probabilities are made up for the picture (each digit is likely over a stretch of
    frames, blank elsewhere, with noise); the alignment is what probseq's dynamic program infers.
    """
    from probseq.io.plots import plot_ctc_alignment

    generator = torch.Generator().manual_seed(0)
    frames, classes = 40, 11               # blank + digits 0-9 (class c + 1 is digit c)
    logits = 0.8 * torch.randn(frames, classes, generator=generator)
    logits[:, 0] += 2.0                    # blank is likely everywhere...
    for digit, (start, stop) in zip((3, 1, 4), ((6, 12), (17, 21), (27, 34))):
        logits[start:stop, digit + 1] += 4.0   # ...except where a digit is spoken
    logits[22:25, 2] += 2.0                # an echo of the "1" the alignment must explain
    return plot_ctc_alignment(logits.log_softmax(-1), [4, 2, 5], out / "ctc_alignment.png",
                              symbols=["-"] + [str(d) for d in range(10)],
                              title="CTC: l = 3 1 4 over 40 frames")


def dialogue_sample(out: Path) -> Path:
    """The first turns of a conversation of the embedded dialogue sample (Self-dialogue Corpus)."""
    from importlib import resources

    folder = resources.files("probseq.data") / "embedded"
    name = next(p.name for p in folder.iterdir() if p.name.startswith("dialogue") and p.name.endswith(".gz"))
    with gzip.open(str(folder / name), "rt", encoding="utf-8") as f:
        first = json.loads(f.readline())
    turns = first["turns"][:6]
    text = "\n".join(f"{'AB'[i % 2]}: {turn}" for i, turn in enumerate(turns)) + "\n"
    path = out / "dialogue_sample.txt"
    path.write_text(text)
    return path


FIGURES = {"pianoroll": pianoroll, "bouncing_balls": bouncing_balls, "ctc_alignment": ctc_alignment,
           "dialogue_sample": dialogue_sample}


def main(args) -> list[Path]:
    import matplotlib

    matplotlib.rcParams["savefig.dpi"] = args.dpi
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [FIGURES[name](out) for name in (args.only or FIGURES)]
    for path in written:
        print(f"wrote {path}")
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE / "images"))
    parser.add_argument("--only", nargs="*", choices=sorted(FIGURES))
    parser.add_argument("--dpi", type=int, default=60)
    main(parser.parse_args())
