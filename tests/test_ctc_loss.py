"""``probseq.ctc_loss`` against ``torch.nn.functional.ctc_loss`` (values and gradients, float64).

torch's kernel returns ``exp(log_probs) - posterior`` as its gradient w.r.t. ``log_probs``; that is
the true gradient only after a ``log_softmax``. So gradients are compared w.r.t. the logits that
go through ``log_softmax``, where both must be exact; ``impl="dp"``'s gradient w.r.t. un-normalised
log-probabilities is checked separately with ``gradcheck`` (tests/test_ctc_dp.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import probseq
from probseq.ctc import ctc_loss
from probseq.errors import UserError

REDUCTIONS = ("none", "sum", "mean")


def _case(seed: int, *, steps=14, batch=6, classes=5, max_labels=5, dtype=torch.float64):
    """Random logits, padded targets with forced repeats, variable input and target lengths."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(steps, batch, classes, generator=g, dtype=dtype)
    targets = torch.randint(1, classes, (batch, max_labels), generator=g)
    targets[0, 1] = targets[0, 0]                     # a repeat: needs a blank in between
    targets[1, 2:4] = targets[1, 1]                   # a run of three
    input_lengths = torch.randint(max_labels * 2 + 1, steps + 1, (batch,), generator=g)
    input_lengths[2] = steps
    target_lengths = torch.randint(0, max_labels + 1, (batch,), generator=g)
    target_lengths[:2] = max_labels
    target_lengths[3] = 0                             # empty label sequence: all blanks
    return logits, targets, input_lengths, target_lengths


def _concatenated(targets, target_lengths):
    return torch.cat([targets[i, : int(n)] for i, n in enumerate(target_lengths)])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("concatenated", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_torch_values_and_gradients(reduction, concatenated, seed):
    logits, targets, input_lengths, target_lengths = _case(seed)
    tgt = _concatenated(targets, target_lengths) if concatenated else targets
    x_dp = logits.clone().requires_grad_(True)
    x_torch = logits.clone().requires_grad_(True)
    ours = ctc_loss(x_dp.log_softmax(-1), tgt, input_lengths, target_lengths,
                    reduction=reduction, impl="dp")
    theirs = F.ctc_loss(x_torch.log_softmax(-1), tgt, input_lengths, target_lengths,
                        reduction=reduction)
    assert torch.isfinite(theirs).all()
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    weights = torch.randn(ours.shape, dtype=ours.dtype, generator=torch.Generator().manual_seed(9))
    (ours * weights).sum().backward()
    (theirs * weights).sum().backward()
    torch.testing.assert_close(x_dp.grad, x_torch.grad, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_zero_infinity_matches_torch(reduction):
    logits, targets, input_lengths, target_lengths = _case(3)
    input_lengths[0] = 4            # 5 labels with one repeat need >= 6 frames: impossible
    input_lengths[1] = 3
    for zero_infinity in (False, True):
        x_dp = logits.clone().requires_grad_(True)
        x_torch = logits.clone().requires_grad_(True)
        ours = ctc_loss(x_dp.log_softmax(-1), targets, input_lengths, target_lengths,
                        reduction=reduction, zero_infinity=zero_infinity, impl="dp")
        theirs = F.ctc_loss(x_torch.log_softmax(-1), targets, input_lengths, target_lengths,
                            reduction=reduction, zero_infinity=zero_infinity)
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
        ours.sum().backward()
        if zero_infinity:
            theirs.sum().backward()
            torch.testing.assert_close(x_dp.grad, x_torch.grad, rtol=1e-9, atol=1e-10)
        # an infinite loss has no gradient; ours is zero there, never NaN
        assert torch.isfinite(x_dp.grad).all()
    per_seq = ctc_loss(logits.log_softmax(-1), targets, input_lengths, target_lengths,
                       reduction="none", impl="dp")
    assert torch.isinf(per_seq[:2]).all() and torch.isfinite(per_seq[2:]).all()


def test_native_and_auto_agree_with_dp_in_float32():
    logits, targets, input_lengths, target_lengths = _case(4, dtype=torch.float32)
    lp = logits.log_softmax(-1)
    values = {impl: ctc_loss(lp, targets, input_lengths, target_lengths, reduction="none", impl=impl)
              for impl in ("dp", "native", "auto")}
    torch.testing.assert_close(values["dp"], values["native"], rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(values["auto"], values["dp"], rtol=1e-5, atol=1e-4)
    assert values["dp"].dtype == torch.float32


def test_top_level_export_and_unbatched_input():
    logits, targets, input_lengths, target_lengths = _case(5)
    lp = logits.log_softmax(-1)
    batched = probseq.ctc_loss(lp, targets, input_lengths, target_lengths, reduction="none")
    for b in range(lp.shape[1]):
        n, s = int(input_lengths[b]), int(target_lengths[b])
        single = probseq.ctc_loss(lp[:n, b], targets[b, :s], n, s, reduction="none", impl="dp")
        reference = F.ctc_loss(lp[:n, b], targets[b, :s], (n,), (s,), reduction="none")
        assert single.dim() == 0
        torch.testing.assert_close(single, batched[b], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(single, reference.reshape(()), rtol=1e-10, atol=1e-10)


def test_padding_never_changes_the_result():
    logits, targets, input_lengths, target_lengths = _case(6)
    lp = logits.log_softmax(-1)
    clean = ctc_loss(lp, targets, input_lengths, target_lengths, reduction="none", impl="dp")
    noisy_lp, noisy_targets = lp.clone(), targets.clone()
    for b in range(lp.shape[1]):
        noisy_lp[int(input_lengths[b]):, b] = float("nan")
        noisy_targets[b, int(target_lengths[b]):] = 0 if b % 2 else 99     # blank or out of range
    x = noisy_lp.clone().requires_grad_(True)
    garbage = ctc_loss(x, noisy_targets, input_lengths, target_lengths, reduction="none", impl="dp")
    torch.testing.assert_close(garbage, clean, rtol=0, atol=0)
    garbage.sum().backward()
    assert torch.isfinite(x.grad).all()
    for b in range(lp.shape[1]):
        assert (x.grad[int(input_lengths[b]):, b] == 0).all()


def test_thesis_variant_is_not_the_native_one():
    # labels (1, 1) in two frames: only "1 1" maps onto it without collapsing; impossible with it
    lp = torch.log(torch.tensor([[[0.2, 0.8]], [[0.3, 0.7]]], dtype=torch.float64))
    kept = ctc_loss(lp, torch.tensor([[1, 1]]), [2], [2], reduction="none", collapse_repeats=False)
    collapsed = ctc_loss(lp, torch.tensor([[1, 1]]), [2], [2], reduction="none")
    torch.testing.assert_close(kept, -torch.log(torch.tensor([0.8 * 0.7], dtype=torch.float64)))
    assert torch.isinf(collapsed).all()
    with pytest.raises(UserError, match="collapse_repeats=True"):
        ctc_loss(lp, torch.tensor([[1, 1]]), [2], [2], collapse_repeats=False, impl="native")


@pytest.mark.parametrize("bad, message", [
    (dict(reduction="avg"), "reduction"),
    (dict(impl="cuda"), "impl"),
    (dict(blank=7), "blank"),
    (dict(input_lengths=[20, 3, 3, 3, 3, 3]), "input length"),
    (dict(target_lengths=[6, 1, 1, 1, 1, 1]), "exceeds"),
    (dict(targets=torch.full((6, 5), 9)), "lie in"),
    (dict(targets=torch.zeros(6, 5, dtype=torch.long)), "blank index"),
    (dict(targets=torch.ones(7, dtype=torch.long)), "concatenated"),
    (dict(target_lengths=[1, 1]), "6 entries"),
])
def test_clear_errors(bad, message):
    logits, targets, input_lengths, target_lengths = _case(7)
    args = dict(targets=targets, input_lengths=input_lengths, target_lengths=target_lengths)
    args.update(bad)
    kwargs = {k: args.pop(k) for k in ("reduction", "impl", "blank") if k in args}
    with pytest.raises(UserError, match=message):
        ctc_loss(logits.log_softmax(-1), args["targets"], args["input_lengths"], args["target_lengths"],
                 **kwargs)
