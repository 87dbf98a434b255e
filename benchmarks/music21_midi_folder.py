"""Export part of music21's bundled corpus to a folder of MIDI files, for ``--data midi`` (issue 18).

A public MIDI collection that is none of the four Boulanger-Lewandowski sets, made reproducibly:
music21 (``pip install music21``, BSD) ships its corpus inside the package, so nothing is fetched.
The default is Ryan's Mammoth Collection (1883; about 1,050 fiddle tunes, jigs, reels and
hornpipes, in ABC), a different folk collection from the Nottingham set; ``--collection palestrina``
gives Renaissance vocal polyphony instead. Every tune becomes one MIDI file named after its corpus
path (and its number inside a multi-tune ABC file), so the ``midi`` dataset's path-hash split is the
same on every machine.

    python benchmarks/music21_midi_folder.py --out /tmp/ryans-midi
    probseq fit rnn-nade --data midi --data-dir /tmp/ryans-midi --minutes 5 --threads 1 --out runs/ryans

Only the script is committed, not the MIDI files.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collection", default="ryansMammoth",
                        help="a folder of music21's corpus (ryansMammoth, palestrina, essenFolksong, ...)")
    parser.add_argument("--out", required=True, help="folder to write the .mid files into")
    parser.add_argument("--limit", type=int, default=0, help="at most this many corpus files (0: all)")
    args = parser.parse_args()
    try:
        from music21 import corpus
    except ImportError:
        print("needs music21: pip install music21", file=sys.stderr)
        return 2
    paths = sorted(p for p in corpus.getPaths() if f"/corpus/{args.collection}/" in str(p))
    if args.limit:
        paths = paths[: args.limit]
    if not paths:
        print(f"music21's corpus has no collection {args.collection!r}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, written, failed = time.time(), 0, 0
    for path in paths:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(path).split("/corpus/")[1].rsplit(".", 1)[0])
        try:
            parsed = corpus.parse(path)
        except Exception as exc:  # a corpus file music21 itself cannot parse
            print(f"skipped {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            failed += 1
            continue
        scores = list(parsed.scores) if hasattr(parsed, "scores") and len(parsed.scores) else [parsed]
        for i, score in enumerate(scores):
            name = f"{stem}.mid" if len(scores) == 1 else f"{stem}_{i:03d}.mid"
            try:
                score.write("midi", fp=str(out / name))
                written += 1
            except Exception as exc:
                print(f"skipped {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed += 1
    print(f"wrote {written} MIDI files from {len(paths)} corpus files of {args.collection} into {out} "
          f"({failed} skipped) in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
