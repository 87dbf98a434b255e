"""How well a model fills in what was hidden (``probseq evaluate --metric infill``).

Each test sequence has a fraction ``P`` of its observed values hidden (seeded, ``--hide-pattern``):

* ``random``: ``round(P T D)`` values chosen uniformly (at least one, never all);
* ``frames``: ``round(P T)`` whole frames chosen uniformly (at least one, never all; sequences of
  one frame are left whole);
* ``gap``: one contiguous run of ``round(P T)`` whole frames at a uniform position.

The model fills them in (:func:`probseq.missing.infill.infill`: ``S`` completions from ``K``
particles / proposals) and is scored on the hidden values only, against the truth:

* ``infill_mse_per_value``: squared error of the model's estimate of :math:`E[x^{hid} \\mid x^{obs}]`
  (for binary data the Brier score of that probability): the mean of the completions, or a
  lower-variance estimate where the model has one (:attr:`Infilled.posterior_mean`;
  ``infill_mean`` says which);
* binary data: ``infill_expected_hamming_per_value``, the expected fraction of hidden values a
  completion gets wrong (``|x - q|`` with ``q`` that estimated probability: a unit drawn with
  probability ``q`` differs from ``x`` with probability ``|x - q|``), ``infill_accuracy_per_value`` of the
  mean thresholded at 1/2, and ``infill_note_f1``, the F1 score of the hidden notes (ones) that
  thresholded mean recovers (piano-rolls are sparse: accuracy alone rewards silence);
* ``nll_hidden_per_value``: :math:`-\\log p(x^{hid} \\mid x^{obs}) = \\log p(x^{obs}) - \\log p(x^{obs}, x^{hid})`
  per hidden value, from the model's labelled likelihoods (:mod:`probseq.missing.scoring`). Exact
  when both terms are; when ``log p(x^obs)`` is a stochastic lower bound (``is-K``, ``smc-K``) the
  difference is an estimate whose NLL is low in expectation (optimistic), labelled so; ``None``
  where the model has no likelihood of partly observed data (the RBM family).

Beside it, three baselines that use no model, scored on the same values: **linear interpolation**
in time of each dimension between its nearest observed values (copying the nearest one at the
edges), **copy-nearest** (the observed value of the same dimension nearest in time), and the
**per-dimension mean** of the training frames (for binary data the note frequency; its NLL is that
of independent Bernoulli / Gaussian units).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from probseq.errors import UserError
from probseq.likelihood import likelihood_labels
from probseq.missing.infill import infill
from probseq.missing.scoring import DEFAULT_PARTICLES

__all__ = ["HIDE_PATTERNS", "hide_values", "interpolate", "copy_nearest", "infill_metrics"]

HIDE_PATTERNS = ("random", "frames", "gap")


def hide_values(x: Tensor, fraction: float, pattern: str, generator: torch.Generator) -> Tensor:
    """A ``(T, D)`` bool mask of the values to hide among the observed (non-NaN) ones."""
    if pattern not in HIDE_PATTERNS:
        raise UserError(f"unknown hide pattern {pattern!r}; expected one of {', '.join(HIDE_PATTERNS)}")
    seen = ~torch.isnan(x)
    T, D = x.shape
    hidden = torch.zeros(T, D, dtype=torch.bool)
    if pattern == "random":
        candidates = seen.reshape(-1).nonzero().flatten()
        n = min(max(1, int(round(fraction * T * D))), len(candidates) - 1)
        if n > 0:
            pick = candidates[torch.randperm(len(candidates), generator=generator)[:n]]
            hidden.view(-1)[pick] = True
        return hidden
    g = min(max(1, int(round(fraction * T))), T - 1)
    if g <= 0:
        return hidden
    if pattern == "frames":
        rows = torch.randperm(T, generator=generator)[:g]
    else:
        start = int(torch.randint(0, T - g + 1, (1,), generator=generator))
        rows = torch.arange(start, start + g)
    hidden[rows] = True
    return hidden & seen


def _per_dimension(x: np.ndarray, seen: np.ndarray, fallback: np.ndarray, how: str) -> np.ndarray:
    """Fill every value of ``x`` ``(T, D)`` from the ``seen`` ones of its dimension."""
    T, D = x.shape
    out = np.empty_like(x)
    steps = np.arange(T)
    for d in range(D):
        known = np.flatnonzero(seen[:, d])
        if len(known) == 0:
            out[:, d] = fallback[d]
        elif how == "linear":
            out[:, d] = np.interp(steps, known, x[known, d])
        else:
            right = np.clip(np.searchsorted(known, steps), 0, len(known) - 1)
            left = np.clip(right - 1, 0, len(known) - 1)
            nearer = np.where(np.abs(known[left] - steps) <= np.abs(known[right] - steps), left, right)
            out[:, d] = x[known[nearer], d]
    return out


def interpolate(x: np.ndarray, seen: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Linear interpolation in time per dimension between seen values; the nearest at the edges."""
    return _per_dimension(x, seen, fallback, "linear")


def copy_nearest(x: np.ndarray, seen: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The seen value of the same dimension nearest in time (the earlier one on a tie)."""
    return _per_dimension(x, seen, fallback, "nearest")


class _Tally:
    """Sums of the error measures over hidden values, for one method."""

    def __init__(self, binary: bool) -> None:
        self.binary, self.se, self.hamming, self.correct = binary, 0.0, 0.0, 0.0
        self.tp = self.fp = self.fn = 0.0

    def add(self, guess: np.ndarray, truth: np.ndarray) -> None:
        self.se += float(((guess - truth) ** 2).sum())
        if self.binary:
            self.hamming += float(np.abs(guess - truth).sum())
            self.correct += float(((guess > 0.5) == (truth > 0.5)).sum())
            self.tp += float(((guess > 0.5) & (truth > 0.5)).sum())
            self.fp += float(((guess > 0.5) & (truth <= 0.5)).sum())
            self.fn += float(((guess <= 0.5) & (truth > 0.5)).sum())

    def report(self, prefix: str, n: int) -> dict[str, float]:
        out = {f"{prefix}_mse_per_value": self.se / n}
        if self.binary:
            out[f"{prefix}_expected_hamming_per_value"] = self.hamming / n
            out[f"{prefix}_accuracy_per_value"] = self.correct / n
            out[f"{prefix}_note_f1"] = 2 * self.tp / max(2 * self.tp + self.fp + self.fn, 1.0)
        return out


def _training_statistics(train: list[Any], dim: int) -> tuple[np.ndarray, np.ndarray]:
    frames = torch.cat([torch.as_tensor(e, dtype=torch.float64).reshape(-1, dim) for e in train], 0)
    mean = frames.nanmean(0).nan_to_num(0.0)
    std = ((frames - mean) ** 2).nanmean(0).nan_to_num(1.0).sqrt().clamp_min(1e-3)
    return mean.numpy(), std.numpy()


def _baseline_nll(truth: np.ndarray, dims: np.ndarray, mean: np.ndarray, std: np.ndarray, binary: bool) -> float:
    if binary:
        p = np.clip(mean[dims], 1e-4, 1 - 1e-4)
        return float(-(truth * np.log(p) + (1 - truth) * np.log1p(-p)).sum())
    z = (truth - mean[dims]) / std[dims]
    return float((0.5 * z * z + np.log(std[dims]) + 0.5 * math.log(2 * math.pi)).sum())


def infill_metrics(model, examples: list[Any], train: list[Any], *, hide: float = 0.1, pattern: str = "random",
                   particles: int | None = None, draws: int = 8, seed: int = 0,
                   batch_size: int = 64) -> dict[str, Any]:
    """The JSON fields of ``--metric infill`` (module docstring)."""
    if model.spec.kind == "categorical":
        raise UserError("--metric infill needs binary or real-valued frames, not categorical symbols")
    if not 0 < hide < 1:
        raise UserError(f"--hide must lie strictly between 0 and 1, got {hide}")
    if draws < 1:
        raise UserError(f"--draws must be positive, got {draws}")
    if getattr(model, "infill_method", "none") == "none":
        raise UserError(f"model {model.name!r} cannot fill in missing values")
    binary = model.spec.kind == "binary"
    dim = model.spec.dim
    K = int(particles or DEFAULT_PARTICLES)
    mean, std = _training_statistics(train, dim)
    g = torch.Generator().manual_seed(int(seed))
    sample_gen = torch.Generator(device=next(model.parameters()).device).manual_seed(int(seed))
    truths = [torch.as_tensor(e, dtype=torch.float32).reshape(-1, dim) for e in examples]
    masks = [hide_values(x, hide, pattern, g) for x in truths]
    n_hidden = int(sum(int(m.sum()) for m in masks))
    if n_hidden == 0:
        raise UserError("nothing was hidden (every test sequence is a single frame or fully missing); "
                        "use --hide-pattern random")
    tallies = {name: _Tally(binary) for name in ("infill", "baseline_linear", "baseline_nearest", "baseline_mean")}
    nll_model, nll_mean, labels, method, exact, nll_reason = 0.0, 0.0, None, "", True, None
    if not getattr(model, "supports_missing", False):
        nll_reason = f"model {model.name!r} has no likelihood of partly observed sequences"
    model.eval()
    for start in range(0, len(examples), batch_size):
        part = range(start, min(start + batch_size, len(examples)))
        partial = [torch.where(masks[i], torch.tensor(float("nan")), truths[i]) for i in part]
        batch = model.collate(partial)
        result = infill(model, batch, draws=draws, particles=K, generator=sample_gen)
        method, exact = result.method, exact and result.exact
        posterior_estimate = result.posterior_mean is not None
        guess = (result.posterior_mean if result.posterior_mean is not None
                 else result.completions.mean(1)).double().cpu()              # (B, T, D)
        for j, i in enumerate(part):
            hid = masks[i].numpy()
            truth = truths[i].double().numpy()
            seen = ~np.isnan(partial[j].numpy())
            dims = np.nonzero(hid)[1]
            tallies["infill"].add(guess[j, : truth.shape[0]].numpy()[hid], truth[hid])
            tallies["baseline_linear"].add(interpolate(np.where(seen, truth, 0), seen, mean)[hid], truth[hid])
            tallies["baseline_nearest"].add(copy_nearest(np.where(seen, truth, 0), seen, mean)[hid], truth[hid])
            tallies["baseline_mean"].add(mean[dims], truth[hid])
            nll_mean += _baseline_nll(truth[hid], dims, mean, std, binary)
        if nll_reason is None:
            try:
                with torch.no_grad():
                    lp_obs = model.log_prob(batch, samples=K, generator=sample_gen)
                    lp_all = model.log_prob(model.collate([examples[i] for i in part]), samples=K,
                                            generator=sample_gen)
            except UserError as exc:
                nll_reason = str(exc)
                continue
            nll_model += float((lp_obs.values - lp_all.values).sum())
            labels = _combine_labels(lp_all, lp_obs, labels)
    out: dict[str, Any] = {"hide": hide, "hide_pattern": pattern, "n_hidden_values": n_hidden,
                           "particles": K, "draws": draws, "infill_method": method, "infill_exact": exact,
                           "infill_mean": "posterior-mean estimate" if posterior_estimate else "mean of the draws"}
    for name, tally in tallies.items():
        out.update(tally.report(name, n_hidden))
    if nll_reason is None and labels is not None:
        out["nll_hidden_per_value"] = nll_model / n_hidden
        out.update({f"nll_hidden_{k}": v for k, v in labels.items()})
    else:
        out["nll_hidden_per_value"] = None
        out["nll_hidden_unavailable"] = nll_reason
    out["baseline_mean_nll_hidden_per_value"] = nll_mean / n_hidden
    return out


def _combine_labels(full, observed, previous: dict | None) -> dict:
    """The label of ``log p(obs) - log p(all)`` (the NLL of the hidden values).

    Exact when both are exact; when ``log p(obs)`` is a stochastic lower bound and ``log p(all)``
    exact, the NLL of the hidden values is low in expectation: an estimate of ``log p(hid | obs)``
    biased upward (optimistic). Anything else: an approximation.
    """
    if full.kind == "exact" and observed.kind == "exact":
        kind, estimator, bias = "exact", "exact", "none"
    elif full.kind == "exact" and observed.bias == "lower":
        kind, estimator, bias = "estimate", f"exact-minus-{observed.estimator}", "upper"
    else:
        kind, estimator, bias = "approximation", f"{full.estimator}-minus-{observed.estimator}", "unknown"
    label = {"kind": kind, "estimator": estimator, **likelihood_labels(kind, estimator, bias)}
    if previous is not None and previous["kind"] != label["kind"]:
        order = ["exact", "estimate", "approximation"]       # the weakest label of any batch holds
        return previous if order.index(previous["kind"]) > order.index(label["kind"]) else label
    return label
