"""``addition``: the addition problem of Hochreiter & Schmidhuber (1997, experiment 4), generated.

Each example is a sequence of ``T`` pairs ``(x_t, m_t)``: ``x_t ~ U[-1, 1]`` and a marker
``m_t in {0, 1}`` that is 1 at exactly two positions, the first drawn uniformly from the first
``max(1, T // 10)`` steps and the second from the remaining steps of the first half
(``t < T // 2``). After the last input the network must output

.. math:: y = 0.5 + (x_{t_1} + x_{t_2}) / 4 \\in [0, 1],

and an example counts as correct when the absolute error is below 0.04 (Hochreiter &
Schmidhuber's criterion; the *zero-one loss* of Sutskever 2013, Table 7.3, is the fraction of
test examples that are not correct). The marked numbers are at least ``T / 2`` steps before the
answer, which is what makes the problem pathological for gradient descent: the information must
be carried across that many steps. Predicting the mean 0.5 gives a zero-one loss of about 0.84.

Differences from H&S (who also drew lengths from ``[T, 1.1 T]`` and put ``-1`` markers on the
first and last pair): the length is ``T`` unless ``jitter > 0`` (lengths uniform in
``[T, T (1 + jitter)]``), and there are no ``-1`` markers.

Splits are drawn from independent seed streams of ``seed``; ``fresh`` draws new training
examples for the trainer's ``fresh=true`` (every step new data, as these problems are usually
trained). Examples are :class:`~probseq.data.regression.RegressionExample` s with inputs
``(T, 2)`` and target ``(1,)``; the spec is ``DataSpec("real", 2)`` (the inputs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from probseq.data.regression import RegressionExample
from probseq.data.registry import Dataset, register_dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError

__all__ = ["addition_examples", "load_addition", "TOLERANCE"]

#: an answer is correct when its absolute error is below this (Hochreiter & Schmidhuber 1997)
TOLERANCE = 0.04


def addition_examples(n: int, length: int, *, rng: np.random.Generator,
                      jitter: float = 0.0) -> list[RegressionExample]:
    """``n`` examples of the addition problem with ``length`` steps (see the module docstring)."""
    if length < 4:
        raise UserError(f"the addition problem needs length >= 4, got {length}")
    out = []
    for _ in range(int(n)):
        steps = length + (int(rng.integers(0, int(length * jitter) + 1)) if jitter > 0 else 0)
        values = rng.uniform(-1.0, 1.0, size=steps)
        first = int(rng.integers(0, max(1, length // 10)))
        second = int(rng.integers(0, length // 2 - 1))
        second += second >= first                      # any step of the first half but `first`
        markers = np.zeros(steps)
        markers[[first, second]] = 1.0
        target = 0.5 + (values[first] + values[second]) / 4.0
        inputs = torch.from_numpy(np.stack([values, markers], 1).astype(np.float32))
        out.append(RegressionExample(inputs, torch.tensor([target], dtype=torch.float32)))
    return out


@register_dataset(
    "addition",
    description="The addition problem (Hochreiter & Schmidhuber 1997): remember two marked numbers "
                "over T steps and output their scaled sum (generated; options length, n_train, "
                "n_valid, n_test, jitter, seed)",
    source="generated as in Hochreiter & Schmidhuber, Neural Computation 1997, experiment 4",
    needs="none",
)
def load_addition(data_file=None, data_dir=None, *, length: int = 100, n_train: int = 10000,
                  n_valid: int = 1000, n_test: int = 1000, jitter: float = 0.0, seed: int = 0,
                  **unknown: Any) -> Dataset:
    """Generate the addition problem with sequences of ``length`` steps."""
    if data_file is not None or data_dir is not None:
        raise UserError("addition is generated, not read: drop --data-file/--data-dir")
    if unknown:
        raise UserError(f"unknown addition option(s) {', '.join(sorted(unknown))}; known: "
                        "length, n_train, n_valid, n_test, jitter, seed")
    try:
        length, seed = int(length), int(seed)
        sizes = {k: int(v) for k, v in (("train", n_train), ("valid", n_valid), ("test", n_test))}
        jitter = float(jitter)
    except (TypeError, ValueError):
        raise UserError("addition options length, n_train, n_valid, n_test, seed must be integers "
                        "and jitter a number") from None
    if min(sizes.values()) < 1 or seed < 0 or jitter < 0:
        raise UserError("addition needs n_train, n_valid, n_test >= 1, seed >= 0 and jitter >= 0")
    streams = np.random.SeedSequence(seed).spawn(3)
    splits = {name: addition_examples(sizes[name], length, rng=np.random.default_rng(stream),
                                      jitter=jitter)
              for name, stream in zip(("train", "valid", "test"), streams)}

    def fresh(n: int, step_seed: int) -> list[RegressionExample]:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 3, int(step_seed)]))
        return addition_examples(n, length, rng=rng, jitter=jitter)

    meta = {"task": "addition", "length": length, "tolerance": TOLERANCE, "seed": seed}
    return Dataset(name="addition", spec=DataSpec("real", 2), splits=splits, meta=meta, fresh=fresh)
