"""Brute-force oracle for missing values: the marginal of the observed part as the sum over every
completion, scored by the model's own complete-data log-likelihood.

.. math:: \\log p(x^{obs}) = \\log \\sum_{x^{mis} \\in \\{0,1\\}^m} p(x^{obs}, x^{mis})

for binary data with ``m`` missing values per sequence (``2^m`` complete sequences, each scored
exactly, written the slow obvious way so that it shares nothing with the particle filter or the
NADE reorderings it checks).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from probseq.data.batch import Batch

__all__ = ["brute_force_observed_log_prob", "brute_force_conditional"]


def _completions(values: Tensor, observed: Tensor, length: int) -> tuple[Tensor, list[tuple[int, ...]]]:
    """Every completion ``(2^m, length, D)`` of one sequence and the missing positions."""
    holes = [tuple(i) for i in (~observed[:length]).nonzero().tolist()]
    if len(holes) > 16:
        raise ValueError(f"refusing to enumerate 2^{len(holes)} completions")
    base = values[:length].clone()
    out = []
    for bits in itertools.product((0.0, 1.0), repeat=len(holes)):
        full = base.clone()
        for pos, bit in zip(holes, bits):
            full[pos] = bit
        out.append(full)
    return torch.stack(out, 0), holes


def brute_force_observed_log_prob(model, batch: Batch) -> Tensor:
    """``(B,)`` exact ``log p(x^obs)`` of each sequence of ``batch`` (binary frames, few holes),
    from ``model.log_prob(..., estimator="exact")`` on every completion."""
    out = []
    observed = batch.observed_or_all
    for i in range(batch.batch_size):
        n = int(batch.lengths[i])
        full, _ = _completions(batch.values[i], observed[i], n)
        lengths = torch.full((full.shape[0],), n, dtype=torch.long)
        with torch.no_grad():
            lp = model.log_prob(Batch(full, lengths), estimator="exact").values
        out.append(torch.logsumexp(lp.double(), 0))
    return torch.stack(out)


def brute_force_conditional(model, batch: Batch, index: int = 0) -> tuple[Tensor, Tensor]:
    """The exact conditional of the completions of sequence ``index`` given its observed part:
    ``(completions (2^m, T, D), probabilities (2^m,))``."""
    n = int(batch.lengths[index])
    full, _ = _completions(batch.values[index], batch.observed_or_all[index], n)
    with torch.no_grad():
        lp = model.log_prob(Batch(full, torch.full((full.shape[0],), n, dtype=torch.long)),
                            estimator="exact").values.double()
    return full, torch.softmax(lp, 0)
