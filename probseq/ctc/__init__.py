"""Connectionist temporal classification: a distribution over label sequences given frames.

* :func:`ctc_loss` — :func:`torch.nn.functional.ctc_loss` with the same arguments, plus the
  thesis variant that does not collapse repeats (``collapse_repeats=False``) and a choice of kernel.
* :class:`CTC` — the distribution :math:`p(l \\mid x)` given per-frame log-probabilities:
  ``log_prob``, ``sample``, best-path and prefix-beam-search decoding, Viterbi ``align``,
  posterior ``marginals`` and posterior alignment samples.
* :mod:`probseq.ctc.dp` — the one lattice dynamic program, written over the semirings of
  :mod:`probseq.ctc.semiring` (log: likelihood, max: Viterbi, sample: posterior paths).
"""

from probseq.ctc.distribution import CTC
from probseq.ctc.loss import ctc_loss

__all__ = ["CTC", "ctc_loss"]
