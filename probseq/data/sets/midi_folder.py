"""``midi``: a folder of MIDI files as binary piano-rolls, and MIDI back out.

``--data midi --data-dir DIR`` reads every ``*.mid`` / ``*.midi`` under ``DIR`` (recursively), or
``--data-file a.mid,b.mid`` the files named. :mod:`probseq.data.folder` finds them, splits them by a
hash of their path (``valid_fraction``, ``test_fraction``, default 0.1 each; adding a file never
moves another) and caches each file's roll in the data home, keyed by the file's content and the
options below. A file that cannot be read, or has no notes in the pitch range, is skipped with one
warning line; none readable is one error.

Options (``--set key=value``):

``step``
    ``quarter``, ``eighth`` (default) or ``sixteenth``: one roll step per that note value, in
    *beats* (ticks / ticks-per-beat), so the roll follows the music whatever the file's tempo map.
``step_seconds``
    Instead of ``step``: one roll step per this many seconds of *clock* time, through the tempo
    map (a tempo change changes how many steps a beat takes).
``low``, ``high``
    The pitch range, MIDI numbers inclusive (default 21..108, the 88 piano keys A0..C8); column
    ``j`` of a frame is note ``low + j``. Notes outside are dropped (one summary line says how
    many files had any).
``drums``
    ``true`` to read channel 10 (General MIDI percussion) too; by default drum "notes", which are
    instruments rather than pitches, are left out.
``merge``
    ``true`` (default): all tracks and channels of a file sound together in one roll.
    ``false``: one sequence per track that has notes (a type-0 file, all in one track, stays one).

A note covering beats (or seconds) ``[a, b)`` occupies steps ``round(a/s) .. round(b/s) - 1``, at
least one step (:func:`probseq.io.midi.read_midi_pianoroll`). Frames are ``DataSpec("binary",
high - low + 1)``.

The run remembers (``meta``): ``media="pianoroll"``, ``lowest_note``, ``n_keys``,
``steps_per_beat`` and ``tempo_bpm`` (the median opening tempo of the training files; for
``step_seconds`` one beat per step at ``60 / step_seconds`` bpm, which plays at the same speed),
so ``probseq sample RUN --out s.mid`` writes MIDI at the data's resolution and tempo, and
``--prime song.mid`` reads a prime with the run's step, range and drum setting.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from probseq.data.folder import boolean_option, cached_conversion, find_files, read_all, split_files
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.io import media

__all__ = ["load_midi_folder", "STEPS_PER_BEAT", "midi_resolution", "is_midi_folder_data"]

#: roll steps per quarter-note beat for each ``step`` name
STEPS_PER_BEAT = {"quarter": 1, "eighth": 2, "sixteenth": 4}
_EXTENSIONS = (".mid", ".midi")


def midi_resolution(step: str | None, step_seconds: float | None) -> dict[str, Any]:
    """The reader's time resolution: ``{"steps_per_beat": s}`` or ``{"fs": 1 / step_seconds}``."""
    if step_seconds is not None:
        if step is not None:
            raise UserError("give either step= or step_seconds=, not both")
        try:
            seconds = float(step_seconds)
        except (TypeError, ValueError):
            raise UserError(f"step_seconds must be a number of seconds, got {step_seconds!r}") from None
        if not (seconds > 0 and np.isfinite(seconds)):
            raise UserError(f"step_seconds must be positive, got {step_seconds}")
        return {"fs": 1.0 / seconds}
    name = "eighth" if step is None else str(step).lower()
    if name not in STEPS_PER_BEAT:
        raise UserError(f"step must be one of {', '.join(STEPS_PER_BEAT)} (or give step_seconds=), "
                        f"got {step!r}")
    return {"steps_per_beat": STEPS_PER_BEAT[name]}


def _pitch_range(low: Any, high: Any) -> tuple[int, int]:
    try:
        lo, hi = int(low), int(high)
    except (TypeError, ValueError):
        raise UserError(f"low and high must be MIDI note numbers, got low={low!r}, high={high!r}") from None
    if not (0 <= lo <= hi <= 127) or float(low) != lo or float(high) != hi:
        raise UserError(f"the pitch range low={low}..high={high} must be whole MIDI notes with "
                        "0 <= low <= high <= 127")
    return lo, hi


def _opening_tempo_bpm(path: Path) -> float:
    """Beats per minute of the file's first tempo event (MIDI's default 120 when there is none)."""
    import mido

    midi = mido.MidiFile(str(path))
    first = None
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo" and (first is None or tick < first[0]):
                first = (tick, msg.tempo)
                break
    return float(mido.tempo2bpm(first[1])) if first else 120.0


def _convert(path: Path, *, resolution: dict[str, Any], low: int, n_keys: int, drums: bool,
             merge: bool) -> dict[str, np.ndarray]:
    """One file -> ``roll_0, roll_1, ...`` uint8 ``(T_i, n_keys)``, ``tempo_bpm``, ``dropped``."""
    from probseq.io.midi import read_midi_pianoroll, read_midi_pianoroll_tracks

    read = read_midi_pianoroll if merge else read_midi_pianoroll_tracks
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rolls = read(path, lowest_note=low, n_keys=n_keys, include_drums=drums, **resolution)
    rolls = [rolls] if merge else rolls
    out = {f"roll_{i}": r.numpy().astype(np.uint8) for i, r in enumerate(rolls)}
    out["tempo_bpm"] = np.array(_opening_tempo_bpm(path), dtype=np.float64)
    out["dropped"] = np.array(len(caught), dtype=np.int64)   # tracks with notes outside the range
    return out


def is_midi_folder_data(meta: dict) -> bool:
    """Whether ``meta`` is a run fitted on the ``midi`` dataset."""
    return meta.get("reader") == "midi"


@register_dataset(
    "midi",
    description="your MIDI files as binary piano-rolls (88 keys; step=quarter|eighth|sixteenth or "
                "step_seconds=; drums, pitch range and track merging as you choose)",
    source="your own files: --data-dir DIR (searched recursively for .mid/.midi) or --data-file a.mid,b.mid",
    needs="dir",
)
def load_midi_folder(data_file: str | Path | None = None, data_dir: str | Path | None = None, *,
                     step: str | None = None, step_seconds: float | None = None, low: int = 21,
                     high: int = 108, drums: bool = False, merge: bool = True,
                     valid_fraction: float = 0.1, test_fraction: float = 0.1,
                     cache: bool = True) -> Dataset:
    """Load a folder of MIDI files as piano-rolls (the options are in the module docstring).

    Returns:
        A :class:`Dataset` ``"midi"`` of ``(T_i, high - low + 1)`` float32 0/1 rolls, split by
        file (all of a file's tracks go to one split), with ``meta`` for MIDI output.
    """
    resolution = midi_resolution(step, step_seconds)
    lo, hi = _pitch_range(low, high)
    n_keys = hi - lo + 1
    drums, merge, cache = (boolean_option("drums", drums), boolean_option("merge", merge),
                          boolean_option("cache", cache))
    root, files = find_files(data_file=data_file, data_dir=data_dir, extensions=_EXTENSIONS, what="MIDI")
    splits_of_files = split_files(files, root, valid_fraction=float(valid_fraction),
                                  test_fraction=float(test_fraction))
    key = {"resolution": resolution, "low": lo, "high": hi, "drums": drums, "merge": merge}

    def read(path: Path) -> dict[str, np.ndarray]:
        arrays, _ = cached_conversion(
            path, "midi", key,
            lambda p: _convert(p, resolution=resolution, low=lo, n_keys=n_keys, drums=drums, merge=merge),
            cache=cache)
        return arrays

    converted = read_all(files, read, what="MIDI")
    with_dropped = sum(1 for a in converted.values() if int(a["dropped"]) > 0)
    if with_dropped:
        print(f"probseq: note: {with_dropped} MIDI file(s) had notes outside MIDI {lo}..{hi}; "
              "those notes were left out (low= / high= widen the range)", file=sys.stderr)

    def rolls(path: Path) -> list[torch.Tensor]:
        a = converted[path]
        n = sum(1 for k in a if k.startswith("roll_"))
        return [torch.from_numpy(a[f"roll_{i}"].astype(np.float32)) for i in range(n)]

    splits = {name: [r for f in part if f in converted for r in rolls(f)]
              for name, part in splits_of_files.items()}
    if not splits["train"]:
        raise UserError(f"none of the training files under {root} could be read, so there is nothing "
                        "to train on")
    train_files = [f for f in splits_of_files["train"] if f in converted]
    if "fs" in resolution:
        steps_per_beat, tempo = 1, round(60.0 * resolution["fs"], 3)
    else:
        steps_per_beat = resolution["steps_per_beat"]
        tempo = round(float(np.median([float(converted[f]["tempo_bpm"]) for f in train_files])), 1)
    meta = {
        "media": "pianoroll", "reader": "midi", "title": f"MIDI files in {root.name or root}",
        "lowest_note": lo, "n_keys": n_keys, "steps_per_beat": steps_per_beat, "tempo_bpm": tempo,
        "step_seconds": None if "fs" not in resolution else 1.0 / resolution["fs"],
        "drums": drums, "source": str(root),
        "files": {name: len([f for f in part if f in converted])
                  for name, part in splits_of_files.items()},
    }
    return Dataset(name="midi", spec=DataSpec("binary", n_keys), splits=splits, meta=meta)


def read_midi_folder_prime(path: Path, meta: dict) -> torch.Tensor:
    """A ``--prime`` MIDI file read with the run's own step, pitch range and drum setting."""
    from probseq.io.midi import read_midi_pianoroll

    resolution = ({"fs": 1.0 / float(meta["step_seconds"])} if meta.get("step_seconds")
                  else {"steps_per_beat": meta.get("steps_per_beat", 2)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_midi_pianoroll(path, lowest_note=int(meta["lowest_note"]), n_keys=int(meta["n_keys"]),
                                   include_drums=bool(meta.get("drums")), **resolution)


for _ext in _EXTENSIONS:
    media.register_prime_reader(_ext, read_midi_folder_prime, when=is_midi_folder_data)
