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

Only like is ranked with like: scores whose length conventions differ (a model of length reports
``log p(x, T)``, a model without one ``log p(x | T)``) are refused unless the caller allows mixing,
and then every row is labelled with its convention. Each row also says how its NLL relates to the
true one (``=``, ``≥``, ``≤``, ``≈``; :mod:`probseq.likelihood`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from probseq.errors import UserError
from probseq.evaluate.scoring import SplitScores

__all__ = ["paired_difference", "check_length_conventions", "comparison_table", "format_table"]


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


def check_length_conventions(named_scores: list[tuple[str, SplitScores]], allow_mixed: bool = False) -> bool:
    """Refuse to rank scores whose length conventions differ (``log p(x, T)`` against ``log p(x | T)``).

    Returns whether the conventions are mixed (then allowed by ``allow_mixed``, and the rows must
    be labelled); raises :class:`UserError` with one sentence naming the difference otherwise.
    """
    conventions = {label: s.length_included for label, s in named_scores if s.length_included is not None}
    if len(set(conventions.values())) < 2:
        return False
    if not allow_mixed:
        with_length = [label for label, inc in conventions.items() if inc]
        without = [label for label, inc in conventions.items() if not inc]
        raise UserError(f"the runs use different length conventions: {', '.join(with_length)} include the "
                        f"length term (log p(x, T)) and {', '.join(without)} do not (log p(x | T)); pass "
                        "--allow-mixed-length to rank them anyway")
    return True


def comparison_table(named_scores: list[tuple[str, SplitScores]], *,
                     allow_mixed_length: bool = False) -> list[dict[str, Any]]:
    """One row per model, sorted best first, each with its paired difference to the best model.

    Raises :class:`UserError` when the length conventions differ, unless ``allow_mixed_length``
    (then every row says whether it includes the length term, ``length_included``, and carries
    ``mixed_length: true``).
    """
    mixed = check_length_conventions(named_scores, allow_mixed_length)
    rows = []
    for label, scores in named_scores:
        rows.append({"run": label, **scores.summary()})
    order = sorted(range(len(rows)), key=lambda i: rows[i]["nll_per_frame"])
    best_label, best_scores = named_scores[order[0]]
    out = []
    for i in order:
        row = dict(rows[i])
        row["vs"] = best_label
        row["mixed_length"] = mixed
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


def _length_label(row: dict[str, Any]) -> str:
    included = row.get("length_included")
    return "?" if included is None else ("log p(x,T)" if included else "log p(x|T)")


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: kind, how the NLL relates to the true one, estimator, both conventions,
    errors, paired differences (and the length convention when the rows mix them)."""
    mixed = any(r.get("mixed_length") for r in rows)
    header = ["run", "model", "kind", "vs true", "estimator", "NLL/frame", "±", "NLL/frame (seq avg)",
              "Δ vs best", "± (paired)", "Δ seq avg", "± (paired)"] + (["length"] if mixed else [])
    lines = [header]
    for r in rows:
        lines.append([
            r["run"], r.get("model", "-"), r["kind"], r.get("nll_vs_true", "-"), r["estimator"],
            _fmt(r["nll_per_frame"], 4),
            _fmt(r["stderr"], 4), _fmt(r["nll_per_frame_seq_avg"], 4),
            _fmt(r["diff_nll_per_frame"], 4), _fmt(r["diff_stderr"], 4),
            _fmt(r["diff_nll_per_frame_seq_avg"], 4), _fmt(r["diff_seq_avg_stderr"], 4),
        ] + ([_length_label(r)] if mixed else []))
    widths = [max(len(str(row[c])) for row in lines) for c in range(len(header))]
    text = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    first = rows[0]
    text.append(f"{first['n_sequences']} sequences, {first['n_frames']} frames; NLL in nats per frame, "
                "lower is better; Δ is paired over sequences against the best run.")
    text.append("vs true: = exact; ≥ at least the true NLL (a bound, or an estimate biased that way in "
                "expectation, like RAISE); ≤ at most, in expectation (AIS); ≈ no guarantee.")
    if mixed:
        text.append("MIXED LENGTH CONVENTIONS (--allow-mixed-length): log p(x,T) includes the length term, "
                    "log p(x|T) does not; these rows are not like for like.")
    return "\n".join(text)
