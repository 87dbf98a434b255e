"""Dialogue responses as text: the :class:`Response` record and the ``probseq sample --prime`` report.

The dialogue models (:mod:`probseq.models.vhred`) answer a context given in a file, one turn per
line (:func:`read_context_file`); :func:`format_responses` writes the context and the sampled and
beam-search responses, speakers alternating ``A``/``B``, each with its ``log p`` under the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from probseq.errors import UserError

__all__ = ["Response", "read_context_file", "format_responses"]


@dataclass
class Response:
    """A generated turn: its ids (``<eot>`` last unless ``cut``), its text and ``log p`` under the model.

    ``log_prob`` is ``log p(response | context)`` for HRED and ``log p(response | context, z)`` for
    VHRED (given the ``z`` it was generated with); ``cut`` is True when it reached the length cap
    before ``<eot>``.
    """

    ids: list[int]
    text: str
    log_prob: float
    cut: bool


def read_context_file(path: str) -> list[str]:
    """The turns of a context file: one turn per line, blank lines ignored (at least one turn)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read the context file {path} ({type(exc).__name__})") from None
    context = [line.strip() for line in lines if line.strip()]
    if not context:
        raise UserError(f"the context file {path} holds no turns (one turn per line)")
    return context


def format_responses(context: Sequence[str], sampled: Sequence[Response], beamed: Sequence[Response], *,
                     temperature: float, beam_size: int, latent: bool) -> str:
    """The report: the context, then the sampled responses, then the beam-search responses.

    ``latent`` notes that each beam-search response had its own ``z`` drawn from the prior (VHRED).
    """
    speakers = "AB"
    parts = ["context:"]
    parts += [f"  {speakers[i % 2]}: {turn}" for i, turn in enumerate(context)]
    who = speakers[len(context) % 2]

    def show(title, responses):
        parts.append(title)
        for i, r in enumerate(responses, 1):
            note = " [cut at the length cap]" if r.cut else ""
            parts.append(f"  {i}. {who}: {r.text}    (log p = {r.log_prob:.2f}){note}")

    show(f"sampled responses (temperature {temperature:g}):", sampled)
    show(f"beam search (beam {int(beam_size)}"
         + (", z drawn from the prior per response" if latent else "") + "):", beamed)
    return "\n".join(parts)
