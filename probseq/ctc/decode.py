"""Decoding CTC outputs: the label map, best-path decoding and prefix beam search.

The map :math:`\\mathcal{B}` from per-frame symbols to labels collapses runs of a symbol into one
(only with ``collapse_repeats=True``, Graves et al. 2006) and then drops blanks; the thesis variant
(Sutskever 2013, eq. 2.46) only drops blanks.

* :func:`collapse` applies :math:`\\mathcal{B}` to a batch, vectorised (no loop over time).
* :func:`best_path` is :math:`\\mathcal{B}(\\arg\\max_\\pi p(\\pi \\mid x))`: the most likely
  *alignment*, not in general the most likely *label sequence*.
* :func:`prefix_beam_search` searches label sequences directly, keeping for each prefix the total
  probability of the alignments that map onto it (Graves 2012, "Supervised sequence labelling",
  §7.5; Hannun et al. 2014, arXiv:1408.2873). With a beam as wide as the number of distinct
  prefixes nothing is pruned, every alignment is counted and the result is the exact MAP label
  sequence; the tests check this against exhaustive enumeration.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["PAD", "collapse", "best_path", "prefix_beam_search", "edit_distance"]

#: the value that pads label sequences past their length
PAD = -1


def collapse(frames: Tensor, lengths: Tensor, *, blank: int = 0,
             collapse_repeats: bool = True) -> tuple[Tensor, Tensor]:
    """Map per-frame symbols to label sequences, for a batch.

    Args:
        frames: ``(N, T)`` int64 symbols; entries past ``lengths`` are ignored.
        lengths: ``(N,)`` frames of each sequence.

    Returns:
        ``labels (N, T)`` padded with :data:`PAD`, and ``label_lengths (N,)``.
    """
    n, steps = frames.shape
    inside = torch.arange(steps, device=frames.device) < lengths.unsqueeze(1)
    keep = inside & (frames != blank)
    if collapse_repeats:
        repeat = torch.zeros_like(keep)
        repeat[:, 1:] = frames[:, 1:] == frames[:, :-1]
        keep &= ~repeat
    label_lengths = keep.sum(1)
    labels = torch.full((n, steps), PAD, dtype=torch.long, device=frames.device)
    slot = torch.arange(steps, device=frames.device) < label_lengths.unsqueeze(1)
    labels[slot] = frames[keep]          # boolean indexing keeps row-major order
    return labels, label_lengths


def best_path(log_probs: Tensor, lengths: Tensor, *, blank: int = 0,
              collapse_repeats: bool = True) -> tuple[Tensor, Tensor]:
    """Best-path decoding of ``log_probs (N, T, C)``: collapse the frame-wise argmax."""
    return collapse(log_probs.argmax(-1), lengths, blank=blank, collapse_repeats=collapse_repeats)


def _logadd(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log1p(math.exp(-abs(a - b)))


def prefix_beam_search(log_probs: Tensor | np.ndarray, *, beam_width: int = 16, blank: int = 0,
                       collapse_repeats: bool = True, n_best: int = 1,
                       symbol_threshold: float | None = None) -> list[tuple[tuple[int, ...], float]]:
    """Prefix beam search over label sequences of one input.

    For each prefix :math:`\\ell` the search keeps :math:`p_b(\\ell)` and :math:`p_{nb}(\\ell)`, the
    probabilities of the alignments of the frames so far that map onto :math:`\\ell` and end in a
    blank / in a label. At each frame every prefix is extended by every symbol:

    * blank: :math:`p_b(\\ell) \\mathrel{+}= (p_b + p_{nb})(\\ell)\\, y_t(\\varnothing)`;
    * label :math:`c` equal to :math:`\\ell`'s last label, collapsing variant: staying
      adds :math:`p_{nb}(\\ell)\\, y_t(c)` to :math:`p_{nb}(\\ell)`, and :math:`p_b(\\ell)\\, y_t(c)`
      starts the new label, :math:`p_{nb}(\\ell c)`;
    * any other label (and every label in the thesis variant):
      :math:`p_{nb}(\\ell c) \\mathrel{+}= (p_b + p_{nb})(\\ell)\\, y_t(c)`;

    then the ``beam_width`` most probable prefixes survive. Cost
    :math:`O(T \\cdot \\text{beam} \\cdot C)` Python operations.

    Args:
        log_probs: ``(T, C)`` log-probabilities of one input (already cut to its length).
        beam_width: prefixes kept after each frame.
        n_best: how many hypotheses to return.
        symbol_threshold: skip labels whose per-frame log-probability is below this (speed; ``None``
            considers every symbol, as the exactness guarantee needs).

    Returns:
        Up to ``n_best`` pairs ``(labels, log_score)``, best first. The score is the summed
        probability of the alignments the search kept: a lower bound on :math:`\\log p(\\ell \\mid x)`
        that is exact when nothing was pruned.
    """
    y = log_probs.detach().double().cpu().numpy() if isinstance(log_probs, Tensor) else np.asarray(log_probs, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"log_probs must have shape (T, C), got {y.shape}")
    n_classes = y.shape[1]
    neg = -math.inf
    beam: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg)}
    for frame in y:
        symbols = [c for c in range(n_classes) if c != blank
                   and (symbol_threshold is None or frame[c] >= symbol_threshold)]
        fresh: dict[tuple[int, ...], list[float]] = {}

        def add(prefix: tuple[int, ...], slot: int, value: float) -> None:
            entry = fresh.setdefault(prefix, [neg, neg])
            entry[slot] = _logadd(entry[slot], value)

        for prefix, (p_b, p_nb) in beam.items():
            total = _logadd(p_b, p_nb)
            add(prefix, 0, total + frame[blank])
            for c in symbols:
                if collapse_repeats and prefix and prefix[-1] == c:
                    add(prefix, 1, p_nb + frame[c])
                    add(prefix + (c,), 1, p_b + frame[c])
                else:
                    add(prefix + (c,), 1, total + frame[c])
        ranked = sorted(fresh.items(), key=lambda kv: _logadd(*kv[1]), reverse=True)
        beam = {prefix: (p[0], p[1]) for prefix, p in ranked[:beam_width]}
    ranked = sorted(((prefix, _logadd(*p)) for prefix, p in beam.items()), key=lambda kv: kv[1],
                    reverse=True)
    return [(prefix, score) for prefix, score in ranked[:n_best] if score > neg]


def edit_distance(hypothesis: Sequence[int], reference: Sequence[int]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions turning
    ``hypothesis`` into ``reference`` (Wagner & Fischer 1974); ``O(len * len)``."""
    previous = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        current = [i]
        for j, r in enumerate(reference, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]
