"""What a log-likelihood number is, and which way it can err: the one taxonomy of probseq.

Every :class:`LogProb` a model returns carries a **kind** and a **bias direction** (of the
log-likelihood ``log p(x)``; the NLL errs the other way):

==================  =======================================================  ===========  ========
kind                what the number is                                       bias         NLL sign
==================  =======================================================  ===========  ========
``exact``           ``log p(x)`` itself (up to rounding)                     ``none``     ``=``
``bound``           a lower bound on ``log p(x)``: the ELBO, IWAE-k, the     ``lower``    ``≥``
                    log of an importance-sampling estimate ``is-K``
                    or a particle filter's ``smc-K``
                    (``E[log p̂] ≤ log p`` by Jensen); lower in
                    expectation when the bound itself is estimated by
                    sampling
``estimate``        a stochastic estimate of ``log p(x)`` whose error has    ``upper`` /  ``≤`` /
                    a known direction in expectation: AIS (``ais-MxK``,      ``lower``    ``≥``
                    log Z under-estimated, so ``log p`` *over*-estimated:
                    optimistic) and RAISE (``raise-MxK``, reverse
                    annealing: ``log p`` under-estimated: conservative)
``approximation``   a number without a guarantee either way (the TRBM's      ``unknown``  ``≈``
                    mean-field filtering distribution ``Q``, which is a
                    proper distribution but not the model's ``P``)
==================  =======================================================  ===========  ========

The AIS and RAISE values of one model bracket its log-likelihood in expectation (the *sandwich*
of Burda, Grosse & Salakhutdinov 2015): ``E[RAISE] ≲ log p ≤ E[AIS]`` — the RAISE side strictly
for the annealing model's ``log p_ann``, which approaches ``log p`` as the number of
intermediate distributions grows and is below it on average over data the model fits
(``E_p[log p_ann] ≤ E_p[log p]``, Gibbs' inequality). Standard errors cover the sampling noise
only, never the bias.

**Length convention.** ``length_included`` says whether ``values`` contain the length term
``log P(T)`` (a model that models length: ``log p(x, T)``) or not (``log p(x | T)``); numbers with
different conventions must not be ranked against each other (``probseq compare`` refuses).

This module depends on nothing else in probseq, so models, frames, estimators and evaluation all
share it. ``probseq.models.base.LogProb`` is this class.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

__all__ = ["LogProb", "LIKELIHOOD_KINDS", "BIAS_DIRECTIONS", "ESTIMATOR_KINDS", "default_bias",
           "nll_symbol", "describe", "likelihood_labels"]

#: What a log-likelihood number is (DESIGN.md, "Evaluation conventions").
LIKELIHOOD_KINDS = ("exact", "bound", "estimate", "approximation")
#: Which way a log-likelihood can err: not at all, low (conservative), high (optimistic), either.
BIAS_DIRECTIONS = ("none", "lower", "upper", "unknown")
#: The kind and bias each estimator name means, wherever it is used.
ESTIMATOR_KINDS: dict[str, tuple[str, str]] = {
    "exact": ("exact", "none"),
    "elbo": ("bound", "lower"),
    "iwae": ("bound", "lower"),
    "is": ("bound", "lower"),
    "smc": ("bound", "lower"),   # the log of a particle filter's unbiased estimate (probseq.missing)
    "ais": ("estimate", "upper"),
    "raise": ("estimate", "lower"),
}
_KIND_BIAS = {"exact": "none", "bound": "lower", "approximation": "unknown"}
_SYMBOLS = {"none": "=", "lower": "≥", "upper": "≤", "unknown": "≈"}
_SENTENCES = {
    ("exact", "none"): "exact",
    ("bound", "lower"): "a lower bound on log p (the NLL is at least the true one)",
    ("estimate", "upper"): "a stochastic estimate biased upward in expectation (optimistic: the NLL "
                           "tends to be below the true one)",
    ("estimate", "lower"): "a stochastic estimate biased downward in expectation (conservative: the "
                           "NLL tends to be above the true one)",
    ("estimate", "unknown"): "a consistent stochastic estimate whose bias has no known direction",
}


def _family(estimator: str) -> str:
    """``"ais-100x1000"`` -> ``"ais"``; ``"filtered-exact"`` -> ``"filtered"``."""
    return estimator.split("-", 1)[0]


def default_bias(kind: str, estimator: str) -> str:
    """The bias direction implied by ``kind`` (and, for an ``estimate``, the estimator's family)."""
    if kind in _KIND_BIAS:
        return _KIND_BIAS[kind]
    known = ESTIMATOR_KINDS.get(_family(estimator))
    return known[1] if known is not None and known[0] == kind else "unknown"


def nll_symbol(bias: str) -> str:
    """How the reported NLL relates to the true one: ``=``, ``≥`` (at least), ``≤``, ``≈``."""
    return _SYMBOLS[bias]


def describe(kind: str, bias: str) -> str:
    """One phrase for what the number is and which way it can err."""
    return _SENTENCES.get((kind, bias), "an approximation without a guarantee in either direction")


def likelihood_labels(kind: str, estimator: str, bias: str | None = None,
                      length_included: bool | None = None) -> dict:
    """The fields ``probseq evaluate --json`` and ``compare`` add beside ``kind`` and ``estimator``.

    ``bias`` (of the log-likelihood: ``none | lower | upper | unknown``), ``nll_vs_true`` (how the
    reported NLL relates to the true one: ``= | ≥ | ≤ | ≈``, in expectation for estimates),
    ``what`` (one phrase) and ``length_included`` (``None``: not known).
    """
    bias = default_bias(kind, estimator) if bias is None else bias
    return {"bias": bias, "nll_vs_true": nll_symbol(bias), "what": describe(kind, bias),
            "length_included": length_included}


@dataclass
class LogProb:
    """Per-sequence log-likelihoods and what kind of number they are.

    Attributes:
        values: ``(B,)`` log-probabilities in nats (including the length term when
            ``length_included``).
        kind: one of :data:`LIKELIHOOD_KINDS` (see the module docstring).
        estimator: the estimator's name, e.g. ``"exact"``, ``"elbo"``, ``"iwae-100"``,
            ``"ais-100x1000"``, ``"raise-100x1000"``.
        stderr: ``(B,)`` standard error of each value (sampling noise only), or ``None``.
        bias: one of :data:`BIAS_DIRECTIONS`; by default implied by ``kind`` and ``estimator``
            (:func:`default_bias`).
        length_included: whether ``values`` include ``log P(T)``; ``None`` if the producer did not
            say (the scorer then asks the model).
    """

    values: Tensor
    kind: str
    estimator: str
    stderr: Tensor | None = None
    bias: str | None = None
    length_included: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in LIKELIHOOD_KINDS:
            raise ValueError(f"kind must be one of {LIKELIHOOD_KINDS}, got {self.kind!r}")
        if self.values.dim() != 1:
            raise ValueError(f"values must have shape (B,), got {tuple(self.values.shape)}")
        if self.bias is None:
            self.bias = default_bias(self.kind, self.estimator)
        if self.bias not in BIAS_DIRECTIONS:
            raise ValueError(f"bias must be one of {BIAS_DIRECTIONS}, got {self.bias!r}")

    def detach(self) -> "LogProb":
        return LogProb(self.values.detach(), self.kind, self.estimator,
                       None if self.stderr is None else self.stderr.detach(), self.bias,
                       self.length_included)
