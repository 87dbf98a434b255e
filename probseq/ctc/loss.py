"""``ctc_loss``: :func:`torch.nn.functional.ctc_loss` plus the thesis variant and a choice of kernel.

.. math:: \\mathcal{L}_n = -\\log p(l_n \\mid x_n) = -\\log \\sum_{\\pi \\in \\mathcal{B}^{-1}(l_n)}
          \\prod_{t=1}^{T_n} y^n_t(\\pi_t)

where :math:`\\mathcal{B}` maps a per-frame symbol sequence to a label sequence: by default it
collapses repeats and then drops blanks (Graves et al. 2006, ICML); with ``collapse_repeats=False``
it only drops blanks (Sutskever 2013, PhD thesis, eq. 2.46), so ``a a`` in consecutive frames reads
as two labels and no blank is needed between repeated labels.

The arguments mean exactly what they mean for :func:`torch.nn.functional.ctc_loss`:
``log_probs (T, N, C)`` (or ``(T, C)`` unbatched), ``targets`` padded ``(N, S)`` or concatenated
1-D of length ``sum(target_lengths)``, ``reduction="mean"`` divides each loss by its target length
(at least 1) and then averages over the batch, ``zero_infinity`` replaces infinite losses (no
alignment exists) and their gradients by zero.

One difference in the gradient, on purpose: torch's kernel returns :math:`\\exp(\\log y) - \\gamma`
as the gradient w.r.t. ``log_probs``, which is the true gradient only after a ``log_softmax`` (the
extra term vanishes there); ``impl="dp"`` returns the exact gradient of the returned loss,
:math:`-\\gamma`, for any input. Through a ``log_softmax`` the two agree.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from probseq.ctc.dp import Lattice, log_partition
from probseq.errors import UserError
from probseq.precision import full_precision

__all__ = ["ctc_loss", "ctc_log_likelihood", "normalize_targets", "check_labels"]

_REDUCTIONS = ("none", "mean", "sum")
_IMPLS = ("auto", "native", "dp")


def _as_lengths(name: str, value: Tensor | Sequence[int] | int, batch: int, device) -> Tensor:
    lengths = torch.as_tensor(value, device=device)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise UserError(f"{name} must hold integers, got dtype {lengths.dtype}")
    lengths = lengths.long().reshape(-1)
    if lengths.shape[0] != batch:
        raise UserError(f"{name} must have {batch} entries (one per sequence), got {lengths.shape[0]}")
    return lengths


def normalize_targets(targets: Tensor | Sequence[int], target_lengths: Tensor, batch: int) -> Tensor:
    """Padded ``(N, S)`` targets from padded ``(N, S)`` or concatenated 1-D ones (torch's two forms)."""
    targets = torch.as_tensor(targets, device=target_lengths.device)
    if targets.dtype.is_floating_point:
        raise UserError(f"targets must hold integer labels, got dtype {targets.dtype}")
    targets = targets.long()
    if target_lengths.numel() and int(target_lengths.min()) < 0:
        raise UserError("target_lengths must be non-negative")
    if targets.dim() == 2:
        if targets.shape[0] != batch:
            raise UserError(f"padded targets must have shape ({batch}, S), got {tuple(targets.shape)}")
        if target_lengths.numel() and int(target_lengths.max()) > targets.shape[1]:
            raise UserError(
                f"a target length ({int(target_lengths.max())}) exceeds the padded targets' width "
                f"({targets.shape[1]})"
            )
        return targets
    if targets.dim() != 1:
        raise UserError(f"targets must be padded (N, S) or concatenated 1-D, got shape {tuple(targets.shape)}")
    total = int(target_lengths.sum())
    if targets.shape[0] != total:
        raise UserError(
            f"concatenated targets must have sum(target_lengths) = {total} entries, got {targets.shape[0]}"
        )
    width = int(target_lengths.max()) if batch else 0
    padded = targets.new_zeros((batch, width))
    positions = torch.arange(width, device=targets.device).expand(batch, -1)
    padded[positions < target_lengths.unsqueeze(1)] = targets
    return padded


def check_labels(targets: Tensor, target_lengths: Tensor, n_classes: int, blank: int) -> None:
    """Raise :class:`UserError` unless every label inside ``target_lengths`` lies in ``[0, C)`` and is not ``blank``."""
    inside = torch.arange(targets.shape[1], device=targets.device) < target_lengths.unsqueeze(1)
    used = targets[inside]
    if used.numel() == 0:
        return
    low, high = int(used.min()), int(used.max())
    if low < 0 or high >= n_classes:
        raise UserError(f"target labels must lie in [0, {n_classes - 1}], got {low}..{high}")
    if bool((used == blank).any()):
        raise UserError(f"targets contain the blank index {blank}; labels must be other symbols")


@full_precision
def ctc_log_likelihood(log_probs: Tensor, targets: Tensor, input_lengths: Tensor,
                       target_lengths: Tensor, *, blank: int = 0,
                       collapse_repeats: bool = True) -> Tensor:
    """:math:`\\log p(l_n \\mid x_n)`, ``(N,)``, by probseq's DP (validated inputs, padded targets).

    ``log_probs (T, N, C)``; ``-inf`` where no alignment exists. Differentiable (exact gradient).
    """
    n_frames = int(input_lengths.max())
    lattice = Lattice.build(targets, target_lengths, input_lengths, blank=blank,
                            collapse_repeats=collapse_repeats, dtype=log_probs.dtype)
    return log_partition(lattice.emissions(log_probs[:n_frames]), lattice)


@full_precision
def ctc_loss(log_probs: Tensor, targets: Tensor | Sequence[int], input_lengths: Tensor | Sequence[int],
             target_lengths: Tensor | Sequence[int], blank: int = 0, reduction: str = "mean",
             zero_infinity: bool = False, *, collapse_repeats: bool = True,
             impl: str = "auto") -> Tensor:
    """Connectionist temporal classification loss (see the module docstring for the maths).

    Args:
        log_probs: ``(T, N, C)`` per-frame log-probabilities (normally a ``log_softmax`` output),
            or ``(T, C)`` for one unbatched sequence.
        targets: padded ``(N, S)`` or concatenated 1-D labels (``(S,)`` when unbatched); entries
            past ``target_lengths`` are ignored. Labels lie in ``[0, C)`` and are never ``blank``.
        input_lengths: ``(N,)`` frames of each sequence, each in ``[1, T]``.
        target_lengths: ``(N,)`` labels of each sequence.
        blank: index of the blank symbol.
        reduction: ``"none"`` (``(N,)`` losses), ``"sum"``, or ``"mean"`` (each loss divided by
            ``max(target_length, 1)``, then averaged).
        zero_infinity: replace infinite losses and their gradients by zero.
        collapse_repeats: ``True`` for the usual CTC (Graves 2006); ``False`` for the variant that
            only drops blanks (Sutskever 2013, eq. 2.46).
        impl: ``"native"`` (torch's kernel; only with ``collapse_repeats=True``), ``"dp"``
            (probseq's dynamic program, :mod:`probseq.ctc.dp`), or ``"auto"``: ``"dp"`` on CPU and
            for the thesis variant, torch's kernel on other devices (cuDNN/CUDA kernels there).

    Returns:
        A scalar, or ``(N,)`` losses with ``reduction="none"`` (a scalar for unbatched input).

    Under autocast the loss is computed in float32 (:func:`~probseq.precision.full_precision`):
    ``log_probs`` below float32 are cast up and the dynamic program never runs in half precision.
    """
    if not isinstance(log_probs, Tensor) or not log_probs.dtype.is_floating_point:
        raise UserError("log_probs must be a floating-point tensor of shape (T, N, C)")
    if reduction not in _REDUCTIONS:
        raise UserError(f"reduction must be one of {', '.join(_REDUCTIONS)}, got {reduction!r}")
    if impl not in _IMPLS:
        raise UserError(f"impl must be one of {', '.join(_IMPLS)}, got {impl!r}")
    unbatched = log_probs.dim() == 2
    if unbatched:
        log_probs = log_probs.unsqueeze(1)
        targets = torch.as_tensor(targets).reshape(1, -1)
    if log_probs.dim() != 3:
        raise UserError(f"log_probs must have shape (T, N, C), got {tuple(log_probs.shape)}")
    n_frames, batch, n_classes = log_probs.shape
    if not 0 <= blank < n_classes:
        raise UserError(f"blank must lie in [0, {n_classes - 1}], got {blank}")
    device = log_probs.device
    input_lengths = _as_lengths("input_lengths", input_lengths, batch, device)
    target_lengths = _as_lengths("target_lengths", target_lengths, batch, device)
    if batch and (int(input_lengths.min()) < 1 or int(input_lengths.max()) > n_frames):
        raise UserError(f"every input length must lie in [1, {n_frames}], got "
                        f"{int(input_lengths.min())}..{int(input_lengths.max())}")
    padded = normalize_targets(targets, target_lengths, batch)
    check_labels(padded, target_lengths, n_classes, blank)

    if impl == "auto":
        impl = "dp" if (not collapse_repeats or device.type == "cpu") else "native"
    if impl == "native":
        if not collapse_repeats:
            raise UserError("torch's native CTC kernel only implements collapse_repeats=True; use impl='dp'")
        losses = torch.nn.functional.ctc_loss(log_probs, padded, input_lengths, target_lengths,
                                              blank=blank, reduction="none", zero_infinity=zero_infinity)
    else:
        work = log_probs if log_probs.dtype in (torch.float32, torch.float64) else log_probs.float()
        losses = -ctc_log_likelihood(work, padded, input_lengths, target_lengths, blank=blank,
                                     collapse_repeats=collapse_repeats).to(log_probs.dtype)
        if zero_infinity:
            losses = torch.where(torch.isinf(losses), torch.zeros((), dtype=losses.dtype,
                                                                  device=device), losses)
    if reduction == "none":
        return losses[0] if unbatched else losses
    if reduction == "sum":
        return losses.sum()
    return (losses / target_lengths.clamp_min(1).to(losses.dtype)).mean()
