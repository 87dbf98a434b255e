"""Beam search over a token-by-token decoder whose turns end with ``<eot>`` (used by HRED/VHRED).

The decoder is given as two functions, so the search knows nothing about the network:
``initial_hidden(cond) -> hidden`` (a recurrent state ``(layers, R, H)``) and
``step(prev, hidden, cond) -> (log-probs (R, V), hidden)``, which reads the previous ids ``(R,)``.
The first input is ``<eot>`` (the end of the previous turn acts as the begin symbol).

Hypotheses are ranked during the search by ``log p`` and at the end by ``log p / M^alpha``
(``alpha`` = ``length_penalty``; 0 gives plain ``log p``). A finished hypothesis (``<eot>``
emitted) is carried along at no cost by extending it with ``<pad>``. Cost: ``max_length`` decoder
steps on ``R * beam_size`` rows and a top-``k`` over ``beam_size * V`` candidates per row and step.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from probseq.text.vocab import EOT_ID, PAD_ID

__all__ = ["beam_search"]


def beam_search(step: Callable[[Tensor, Tensor, Tensor], tuple[Tensor, Tensor]],
                initial_hidden: Callable[[Tensor], Tensor], cond: Tensor, *, vocab_size: int,
                beam_size: int, max_length: int, length_penalty: float
                ) -> list[list[tuple[list[int], float, bool]]]:
    """Beam search for each row of ``cond (R, C)``.

    Returns, per row, the hypotheses ``(ids, log p, cut)`` best first (at most ``beam_size``;
    ``cut`` = reached ``max_length`` without ``<eot>``).
    """
    rows, k, vocab = cond.shape[0], beam_size, vocab_size
    cond_k = cond.repeat_interleave(k, 0)
    hidden = initial_hidden(cond_k)
    prev = torch.full((rows * k,), EOT_ID, dtype=torch.long, device=cond.device)
    scores = cond.new_full((rows, k), -math.inf)
    scores[:, 0] = 0.0
    history = torch.zeros(rows, k, 0, dtype=torch.long, device=cond.device)
    finished = torch.zeros(rows, k, dtype=torch.bool, device=cond.device)
    lengths = torch.zeros(rows, k, dtype=torch.long, device=cond.device)
    carry = cond.new_full((vocab,), -math.inf)
    carry[PAD_ID] = 0.0  # a finished hypothesis extends by <pad> at no cost
    for _ in range(max_length):
        lp, hidden = step(prev, hidden, cond_k)
        lp = lp.view(rows, k, vocab)
        lp = torch.where(finished.unsqueeze(-1), carry, lp)
        cand = (scores.unsqueeze(-1) + lp).view(rows, k * vocab)
        scores, flat = cand.topk(k, dim=1)
        parent, tok = flat // vocab, flat % vocab
        gather = parent + torch.arange(rows, device=cond.device).unsqueeze(1) * k
        hidden = hidden[:, gather.view(-1)]
        history = torch.cat([history.gather(1, parent.unsqueeze(-1).expand(-1, -1, history.shape[2])),
                             tok.unsqueeze(-1)], -1)
        was_finished = finished.gather(1, parent)
        lengths = lengths.gather(1, parent) + (~was_finished).long()
        finished = was_finished | (tok == EOT_ID)
        prev = tok.view(-1)
        if bool(finished[torch.isfinite(scores)].all()):
            break
    results = []
    for r in range(rows):
        hyps = []
        for j in range(k):
            score = float(scores[r, j])
            if not math.isfinite(score):
                continue
            m = int(lengths[r, j])
            ids = history[r, j, :m].tolist()
            hyps.append((ids, score, not bool(finished[r, j])))
        hyps.sort(key=lambda h: (h[2], -h[1] / max(len(h[0]), 1) ** length_penalty))
        results.append(hyps)
    return results
