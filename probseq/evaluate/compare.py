"""Comparing several models on the same sequences, with paired differences.

Two models scored on the same test sequences give paired per-sequence NLLs ``a_i`` and ``b_i``.
The difference in pooled NLL per frame is the ratio estimate ``r = sum_i d_i / sum_i T_i`` with
``d_i = a_i - b_i``; its standard error over the sampling of sequences is the usual ratio-estimator
(delta-method) one,

.. math:: \\mathrm{se}(r) = \\frac{\\sqrt{\\tfrac{n}{n-1}\\sum_i (d_i - r T_i)^2}}{\\sum_i T_i},

and the sequence-averaged difference is the mean of ``d_i / T_i`` with standard error
``std / sqrt(n)``. Pairing removes the variation between sequences that both models share, so a
paired difference is far more precise than the difference of two unpaired means. When the scores
are themselves estimates, their estimator errors add in quadrature.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from probseq.errors import UserError
from probseq.evaluate.scoring import SplitScores

__all__ = ["paired_difference", "comparison_table", "format_table"]


def paired_difference(a: SplitScores, b: SplitScores) -> dict[str, float]:
    """NLL(a) - NLL(b) per frame, both conventions, with standard errors (negative: a is better)."""
    if len(a.nll) != len(b.nll) or not np.array_equal(a.n_frames, b.n_frames):
        raise UserError("models were scored on different sequences; paired differences need the same data")
    n = len(a.nll)
    frames = a.n_frames
    d = a.nll - b.nll
    r = d.sum() / frames.sum()
    se_pooled = (math.sqrt(n / (n - 1) * float(np.sum((d - r * frames) ** 2))) / frames.sum()
                 if n > 1 else math.nan)
    per_seq = d / frames
    se_avg = float(per_seq.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    for s in (a, b):
        if s.stderr is not None:
            se_pooled = math.hypot(se_pooled, math.sqrt(float(np.sum(s.stderr ** 2))) / frames.sum())
            se_avg = math.hypot(se_avg, math.sqrt(float(np.sum((s.stderr / frames) ** 2))) / n)
    return {"diff_nll_per_frame": float(r), "diff_stderr": float(se_pooled),
            "diff_nll_per_frame_seq_avg": float(per_seq.mean()), "diff_seq_avg_stderr": se_avg}


def comparison_table(named_scores: list[tuple[str, SplitScores]]) -> list[dict[str, Any]]:
    """One row per model, sorted best first, each with its paired difference to the best model."""
    rows = []
    for label, scores in named_scores:
        rows.append({"run": label, **scores.summary()})
    order = sorted(range(len(rows)), key=lambda i: rows[i]["nll_per_frame"])
    best_label, best_scores = named_scores[order[0]]
    out = []
    for i in order:
        row = dict(rows[i])
        row["vs"] = best_label
        if i != order[0]:
            row.update(paired_difference(named_scores[i][1], best_scores))
        else:
            row.update({"diff_nll_per_frame": 0.0, "diff_stderr": None,
                        "diff_nll_per_frame_seq_avg": 0.0, "diff_seq_avg_stderr": None})
        out.append(row)
    return out


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: kind, estimator, both conventions, errors, paired differences."""
    header = ["run", "model", "kind", "estimator", "NLL/frame", "±", "NLL/frame (seq avg)",
              "Δ vs best", "± (paired)", "Δ seq avg", "± (paired)"]
    lines = [header]
    for r in rows:
        lines.append([
            r["run"], r.get("model", "-"), r["kind"], r["estimator"], _fmt(r["nll_per_frame"], 4),
            _fmt(r["stderr"], 4), _fmt(r["nll_per_frame_seq_avg"], 4),
            _fmt(r["diff_nll_per_frame"], 4), _fmt(r["diff_stderr"], 4),
            _fmt(r["diff_nll_per_frame_seq_avg"], 4), _fmt(r["diff_seq_avg_stderr"], 4),
        ])
    widths = [max(len(str(row[c])) for row in lines) for c in range(len(header))]
    text = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    first = rows[0]
    text.append(f"{first['n_sequences']} sequences, {first['n_frames']} frames; NLL in nats per frame, "
                "lower is better; Δ is paired over sequences against the best run.")
    return "\n".join(text)
