"""Free Spoken Digit Dataset (FSDD): spoken digit strings for CTC speech recognition.

The folder holds ``{digit}_{speaker}_{take}.wav`` files: one spoken digit each, 8 kHz mono
(Jakobovski et al., github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0; six speakers x
ten digits x 50 takes). The dataset's own split is by take: takes 0-4 are the test set, 5-49 the
training set; probseq carves the validation set out of training by take (5-9 valid, 10-49 train),
so no recording is in two splits.

Each example is a *digit string* of 1 to ``max_digits`` recordings of its split concatenated with
short pauses (derived data, made deterministically from ``seed``): every split is covered
``passes`` times, each pass a fresh random partition of the shuffled recordings into strings, so
every recording appears ``passes`` times in different contexts. The audio is built on demand from
the shared clips (no copies are held), so examples are cheap.

``spec = DataSpec("categorical", 10)``: the labels are the digits 0-9; the recognizer adds the CTC
blank itself. ``--data-dir`` takes the recordings folder or the repository's root holding it;
without it the copy in the data home is used (``probseq download fsdd`` puts it there). Example:
``probseq fit ctc --data fsdd --data-dir free-spoken-digit-dataset``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from probseq.ctc.features import read_wav, resample
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["SpokenDigits", "load_fsdd", "SAMPLE_RATE", "split_of_take"]

SAMPLE_RATE = 8000
_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")


@dataclass(frozen=True, eq=False)
class SpokenDigits:
    """One example: recordings of digits joined by pauses, and the digit string.

    Attributes:
        clips: the recordings, float32 signals at :data:`SAMPLE_RATE` (shared, never modified).
        pauses: ``len(clips) + 1`` silence lengths in samples (before, between and after the clips).
        labels: ``(S,)`` int64 digits.
        noise_seed: seeds the low-level noise in the pauses, so the audio is the same every time.
    """

    clips: tuple[np.ndarray, ...]
    pauses: tuple[int, ...]
    labels: torch.Tensor
    noise_seed: int
    sample_rate: int = SAMPLE_RATE

    @property
    def audio(self) -> np.ndarray:
        """The concatenated float32 signal (built on each access)."""
        rng = np.random.default_rng(self.noise_seed)
        parts = []
        for i, pause in enumerate(self.pauses):
            parts.append((1e-3 * rng.standard_normal(pause)).astype(np.float32))
            if i < len(self.clips):
                parts.append(self.clips[i])
        return np.concatenate(parts)

    @property
    def text(self) -> str:
        return "".join(str(int(d)) for d in self.labels)

    def __len__(self) -> int:
        """Number of labels (the CLI counts "frames" of a conditional example this way)."""
        return int(self.labels.shape[0])


def split_of_take(take: int) -> str:
    """FSDD's split by take index: 0-4 test, 5-9 valid (carved from train), 10-49 train."""
    return "test" if take <= 4 else "valid" if take <= 9 else "train"


def _digit_strings(clips: list[tuple[int, np.ndarray]], *, passes: int, max_digits: int,
                   rng: np.random.Generator) -> list[SpokenDigits]:
    out = []
    for _ in range(passes):
        order = rng.permutation(len(clips))
        start = 0
        while start < len(order):
            n = int(rng.integers(1, max_digits + 1))
            chosen = [clips[i] for i in order[start:start + n]]
            start += n
            # pauses of 50-250 ms between digits, 100-300 ms at the ends
            pauses = [int(rng.integers(800, 2400))] + [int(rng.integers(400, 2000)) for _ in chosen[1:]] \
                + [int(rng.integers(800, 2400))]
            out.append(SpokenDigits(tuple(c for _, c in chosen), tuple(pauses),
                                    torch.tensor([d for d, _ in chosen], dtype=torch.long),
                                    int(rng.integers(2 ** 31))))
    return out


@register_dataset(
    "fsdd",
    description="Free Spoken Digit Dataset: digit strings (1-5 recordings joined by pauses), 8 kHz audio -> digit labels (for CTC)",
    source="github.com/Jakobovski/free-spoken-digit-dataset recordings/ (CC BY-SA 4.0); point --data-dir at the recordings folder",
    needs="dir",
    home="fsdd/recordings/*.wav",
)
def load_fsdd(data_file=None, data_dir=None, *, max_digits: int = 5, train_passes: int = 6,
              valid_passes: int = 2, test_passes: int = 4, seed: int = 0,
              speakers: str = "") -> Dataset:
    """Load the recordings in ``data_dir`` and build digit strings for each split.

    Args:
        max_digits: longest digit string (each string has 1..max_digits recordings, uniformly).
        train_passes / valid_passes / test_passes: how often each split's recordings are used.
        seed: seeds the partition into strings, the pauses and the pause noise.
        speakers: comma-separated speaker names to keep (all when empty).
    """
    if data_file is not None:
        raise UserError("dataset 'fsdd' reads a folder of wav files: use --data-dir, not --data-file")
    if data_dir is None:
        raise UserError("dataset 'fsdd' is not in the data home; run `probseq download fsdd`, or pass "
                        "--data-dir pointing at the FSDD recordings folder or repository "
                        "(github.com/Jakobovski/free-spoken-digit-dataset)")
    folder = Path(data_dir)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a directory")
    if next(folder.glob("*.wav"), None) is None and (folder / "recordings").is_dir():
        folder = folder / "recordings"  # the repository's root, as users clone or unpack it
    if max_digits < 1:
        raise UserError(f"max_digits must be at least 1, got {max_digits}")
    keep = {s.strip() for s in str(speakers).split(",") if s.strip()}
    by_split: dict[str, list[tuple[int, np.ndarray]]] = {"train": [], "valid": [], "test": []}
    rates = set()
    for path in sorted(folder.glob("*.wav")):
        match = _NAME.match(path.name)
        if match is None or (keep and match.group(2) not in keep):
            continue
        signal, rate = read_wav(path)
        rates.add(rate)
        signal = resample(signal, rate, SAMPLE_RATE)
        by_split[split_of_take(int(match.group(3)))].append((int(match.group(1)), signal))
    if not any(by_split.values()):
        raise UserError(f"no FSDD recordings named DIGIT_SPEAKER_TAKE.wav in {folder}")
    # one generator per split, so a split's strings do not depend on the other splits' options
    splits = {name: _digit_strings(clips, passes=passes, max_digits=max_digits,
                                   rng=np.random.default_rng([seed, index]))
              for index, ((name, clips), passes) in enumerate(zip(by_split.items(),
                                                                  (train_passes, valid_passes, test_passes)))}
    meta = {
        "sample_rate": SAMPLE_RATE, "alphabet": "0123456789", "media": "speech",
        "recordings": {k: len(v) for k, v in by_split.items()},
        "source_rates": sorted(rates), "max_digits": max_digits,
        "split_rule": "take 0-4 test, 5-9 valid, 10-49 train",
    }
    return Dataset("fsdd", DataSpec("categorical", 10), splits, meta)
