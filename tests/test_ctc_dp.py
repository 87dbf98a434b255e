"""The CTC lattice DP against brute-force enumeration of all C^T paths, and its gradient.

Both variants (collapse repeats, Graves 2006; drop blanks only, Sutskever 2013 eq. 2.46) and all
three semirings (log: likelihood; max: Viterbi; sample: posterior paths, in test_ctc_distribution).
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probseq.ctc import CTC, ctc_loss
from probseq.ctc.dp import Lattice, log_partition, partition
from probseq.ctc.semiring import LogSemiring, MaxSemiring, SampleSemiring
from probseq.testing import ctc_oracle

VARIANTS = [True, False]


@st.composite
def tiny_cases(draw):
    """A random tiny input: T <= 5 frames, C <= 4 symbols, a blank anywhere, peaky or flat scores."""
    steps = draw(st.integers(1, 5))
    classes = draw(st.integers(2, 4 if steps <= 4 else 3))
    blank = draw(st.integers(0, classes - 1))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(steps, classes, generator=g, dtype=torch.float64)
    labels_pool = [c for c in range(classes) if c != blank]
    n_labels = draw(st.integers(0, steps + 1))
    labels = tuple(draw(st.sampled_from(labels_pool)) for _ in range(n_labels))
    return logits.log_softmax(-1), labels, blank


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
@settings(max_examples=60, deadline=None)
@given(case=tiny_cases())
def test_log_prob_equals_enumeration(collapse_repeats, case):
    log_probs, labels, blank = case
    expected = ctc_oracle.log_prob(log_probs, labels, blank=blank, collapse_repeats=collapse_repeats)
    dist = CTC(log_probs, blank=blank, collapse_repeats=collapse_repeats)
    got = float(dist.log_prob(torch.tensor(labels, dtype=torch.long)))
    if expected == -math.inf:
        assert got == -math.inf
    else:
        assert got == pytest.approx(expected, abs=1e-10)
    # and through the torch-compatible entry point, time-major with a batch of one
    loss = ctc_loss(log_probs.unsqueeze(1), torch.tensor([labels], dtype=torch.long).reshape(1, len(labels)),
                    [log_probs.shape[0]], [len(labels)], blank=blank, reduction="sum",
                    collapse_repeats=collapse_repeats, impl="dp")
    assert float(loss) == pytest.approx(-expected, abs=1e-10) if expected > -math.inf else math.isinf(loss)


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
def test_batched_variable_lengths_equal_enumeration(collapse_repeats):
    """One padded batch mixing input lengths 1..4 and label lengths 0..4 against per-item enumeration."""
    g = torch.Generator().manual_seed(11)
    steps, classes = 4, 3
    logits = torch.randn(6, steps, classes, generator=g, dtype=torch.float64)
    lengths = torch.tensor([4, 1, 3, 2, 4, 3])
    labels = torch.tensor([[1, 1, 2, 0], [2, 0, 0, 0], [1, 2, 1, 0], [2, 2, 0, 0], [1, 2, 2, 1], [0, 0, 0, 0]])
    label_lengths = torch.tensor([3, 1, 3, 2, 4, 0])
    dist = CTC(logits, lengths, collapse_repeats=collapse_repeats)
    got = dist.log_prob(labels, label_lengths)
    for b in range(6):
        lp = logits[b, : int(lengths[b])].log_softmax(-1)
        expected = ctc_oracle.log_prob(lp, tuple(labels[b, : int(label_lengths[b])].tolist()),
                                       collapse_repeats=collapse_repeats)
        assert float(got[b]) == pytest.approx(expected, abs=1e-10) or (expected == -math.inf == float(got[b]))


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
def test_probabilities_of_all_label_sequences_sum_to_one(collapse_repeats):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(4, 3, generator=g, dtype=torch.float64)
    dist = CTC(logits, collapse_repeats=collapse_repeats)
    support = ctc_oracle.label_distribution(dist.logits, collapse_repeats=collapse_repeats)
    width = max(len(k) for k in support)
    labels = torch.full((len(support), 1, width), -1, dtype=torch.long)
    for i, k in enumerate(support):
        labels[i, 0, : len(k)] = torch.tensor(k, dtype=torch.long)
    lengths = torch.tensor([[len(k)] for k in support])
    batched = CTC(logits.unsqueeze(0), collapse_repeats=collapse_repeats)
    total = torch.logsumexp(batched.log_prob(labels, lengths).reshape(-1), 0)
    assert float(total) == pytest.approx(0.0, abs=1e-12)
    # 1 + 2 + 4 + 6 + 2 collapsed sequences of length 0..4 fit in 4 frames; all 31 without collapsing
    assert len(support) == (15 if collapse_repeats else 31)


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
def test_gradcheck_log_partition_on_unnormalised_emissions(collapse_repeats):
    """The hand-written forward-backward against finite differences (float64), variable lengths."""
    g = torch.Generator().manual_seed(3)
    steps, batch = 7, 4
    targets = torch.tensor([[1, 1, 2], [2, 3, 0], [3, 0, 0], [1, 2, 1]])
    target_lengths = torch.tensor([3, 2, 0, 3])
    input_lengths = torch.tensor([7, 5, 2, 6])
    lattice = Lattice.build(targets, target_lengths, input_lengths, blank=0,
                            collapse_repeats=collapse_repeats, dtype=torch.float64)
    emissions = torch.randn(steps, batch, lattice.n_states, generator=g, dtype=torch.float64)
    emissions.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e: log_partition(e, lattice), (emissions,))
    log_probs = torch.randn(steps, batch, 4, generator=g, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda lp: ctc_loss(lp, targets, input_lengths, target_lengths, reduction="none",
                            collapse_repeats=collapse_repeats, impl="dp"), (log_probs,))


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
def test_semiring_scan_values_agree(collapse_repeats):
    """The generic scan under each semiring returns the same value as the fast log-partition
    (log, sample) or the best single path (max, checked against enumeration below)."""
    g = torch.Generator().manual_seed(4)
    targets = torch.tensor([[1, 2, 2, 1], [2, 1, 0, 0]])
    lattice = Lattice.build(targets, torch.tensor([4, 2]), torch.tensor([10, 6]), blank=0,
                            collapse_repeats=collapse_repeats, dtype=torch.float64)
    emissions = torch.randn(10, 2, lattice.n_states, generator=g, dtype=torch.float64)
    fast = log_partition(emissions, lattice)
    torch.testing.assert_close(partition(LogSemiring(), emissions, lattice), fast, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(partition(SampleSemiring(), emissions, lattice), fast, rtol=1e-12, atol=1e-12)
    assert (partition(MaxSemiring(), emissions, lattice) < fast).all()


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
@settings(max_examples=40, deadline=None)
@given(case=tiny_cases())
def test_viterbi_alignment_and_marginals_equal_enumeration(collapse_repeats, case):
    log_probs, labels, blank = case
    dist = CTC(log_probs, blank=blank, collapse_repeats=collapse_repeats)
    label_tensor = torch.tensor(labels, dtype=torch.long)
    frames, score = dist.align(label_tensor)
    best_path, best_score = ctc_oracle.best_alignment(log_probs, labels, blank=blank,
                                                      collapse_repeats=collapse_repeats)
    if best_path is None:
        assert float(score) == -math.inf and (frames == -1).all()
        assert (dist.marginals(label_tensor) == 0).all()
        return
    assert float(score) == pytest.approx(best_score, abs=1e-10)
    # the returned path maps onto the labels and scores what it claims (ties may pick another path)
    path = tuple(frames.tolist())
    assert ctc_oracle.label_map(path, blank=blank, collapse_repeats=collapse_repeats) == labels
    assert sum(float(log_probs[t, s]) for t, s in enumerate(path)) == pytest.approx(best_score, abs=1e-10)
    expected = ctc_oracle.symbol_marginals(log_probs, labels, blank=blank, collapse_repeats=collapse_repeats)
    torch.testing.assert_close(dist.marginals(label_tensor), expected, rtol=1e-9, atol=1e-10)


def test_float32_is_numerically_safe_on_long_peaky_inputs():
    """Very confident wrong frames (log-probs near -100 and -inf) in float32: finite, no NaN."""
    g = torch.Generator().manual_seed(6)
    steps, batch, classes = 300, 3, 6
    logits = 40 * torch.randn(steps, batch, classes, generator=g)
    lp = logits.log_softmax(-1)
    lp[5:9, 0, :] = torch.tensor([0.0, -float("inf"), -200.0, -float("inf"), -150.0, -90.0])
    targets = torch.randint(1, classes, (batch, 30), generator=g)
    x = lp.clone().requires_grad_(True)
    loss = ctc_loss(x, targets, [steps] * batch, [30] * batch, reduction="none", impl="dp")
    reference = ctc_loss(lp.double(), targets, [steps] * batch, [30] * batch, reduction="none", impl="dp")
    assert torch.isfinite(loss).all()
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-2)
    loss.sum().backward()
    assert torch.isfinite(x.grad).all()
