"""The CTC distribution: sampling (seeded chi-square tests), decoding against exhaustive search, shapes.

Statistical tests: each draws n samples with a fixed seed and runs Pearson's chi-square test
against the exact probabilities; it fails when p < 1e-3. For a correct sampler and a random seed
that happens with probability 0.001 per test; with the fixed seeds here the outcome is
deterministic (these seeds pass). A wrong sampler (e.g. forgetting to collapse repeats, or sampling
alignments uniformly) gives p-values below 1e-30 at these sample sizes.
"""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from probseq.ctc import CTC
from probseq.ctc.decode import collapse, prefix_beam_search
from probseq.errors import UserError
from probseq.testing import ctc_oracle

VARIANTS = [True, False]
ALPHA = 1e-3


def _chi_square_p(counts: Counter, probs: dict, n: int) -> float:
    """Pearson's test; cells with expected count < 5 are pooled into one."""
    assert set(counts) <= set(probs), f"sampled outcomes of probability zero: {set(counts) - set(probs)}"
    big = [k for k, p in probs.items() if p * n >= 5]
    small = [k for k in probs if k not in big]
    observed = [counts.get(k, 0) for k in big]
    expected = [probs[k] * n for k in big]
    if small:
        observed.append(sum(counts.get(k, 0) for k in small))
        expected.append(sum(probs[k] for k in small) * n)
    scale = sum(observed) / sum(expected)              # absorbs float rounding of sum(probs) = 1
    return float(chisquare(observed, [e * scale for e in expected]).pvalue)


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
def test_sampled_label_frequencies_match_log_prob(collapse_repeats):
    g = torch.Generator().manual_seed(20)
    logits = torch.randn(2, 4, 3, generator=g, dtype=torch.float64)   # batch 2, T = 4, C = 3
    lengths = torch.tensor([4, 3])
    dist = CTC(logits, lengths, collapse_repeats=collapse_repeats)
    n = 20000
    labels, label_lengths = dist.sample((n,), generator=torch.Generator().manual_seed(21))
    assert labels.shape == (n, 2, 4) and label_lengths.shape == (n, 2)
    for b in range(2):
        counts = Counter(tuple(labels[i, b, : int(label_lengths[i, b])].tolist()) for i in range(n))
        support = ctc_oracle.label_distribution(dist.logits[b, : int(lengths[b])],
                                                collapse_repeats=collapse_repeats)
        # the expected probabilities come from the DP, whose values the oracle checks elsewhere
        keys = list(support)
        width = max(len(k) for k in keys)
        padded = torch.full((len(keys), width), -1, dtype=torch.long)
        for i, k in enumerate(keys):
            padded[i, : len(k)] = torch.tensor(k, dtype=torch.long)
        single = CTC(logits[b, : int(lengths[b])].expand(len(keys), -1, -1),
                     collapse_repeats=collapse_repeats)
        probs = dict(zip(keys, single.log_prob(padded, torch.tensor([len(k) for k in keys])).exp().tolist()))
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-12)
        assert _chi_square_p(counts, probs, n) > ALPHA


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
def test_posterior_alignment_samples_match_enumeration(collapse_repeats):
    g = torch.Generator().manual_seed(22)
    log_probs = torch.randn(5, 3, generator=g, dtype=torch.float64).log_softmax(-1)
    labels = (1, 2) if collapse_repeats else (1, 1)
    dist = CTC(log_probs.expand(4000, -1, -1), collapse_repeats=collapse_repeats)
    frames = dist.sample_alignment(torch.tensor([labels] * 4000), generator=torch.Generator().manual_seed(23))
    counts = Counter(tuple(f) for f in frames.tolist())
    posterior = ctc_oracle.alignment_posterior(log_probs, labels, collapse_repeats=collapse_repeats)
    assert _chi_square_p(counts, posterior, 4000) > ALPHA


def test_temperature_sharpens_samples():
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]] * 3))
    dist = CTC(logits)
    cold = dist.sample_frames((2000,), temperature=0.2, generator=torch.Generator().manual_seed(0))
    hot = dist.sample_frames((2000,), temperature=1.0, generator=torch.Generator().manual_seed(0))
    # p(1) at temperature 0.2 is 0.6^5 / (0.1^5 + 0.6^5 + 0.3^5) = 0.9696
    assert (cold == 1).double().mean() == pytest.approx(0.9696, abs=0.02)
    assert (hot == 1).double().mean() == pytest.approx(0.6, abs=0.04)
    with pytest.raises(UserError, match="temperature"):
        dist.sample(temperature=0.0)


@pytest.mark.parametrize("collapse_repeats", VARIANTS)
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), steps=st.integers(1, 5), scale=st.sampled_from([0.3, 1.0, 3.0]))
def test_wide_beam_search_equals_exhaustive_map(collapse_repeats, seed, steps, scale):
    classes = 3 if steps == 5 else 4
    g = torch.Generator().manual_seed(seed)
    log_probs = (scale * torch.randn(steps, classes, generator=g, dtype=torch.float64)).log_softmax(-1)
    support = ctc_oracle.label_distribution(log_probs, collapse_repeats=collapse_repeats)
    best_score = max(support.values())
    hyps = prefix_beam_search(log_probs, beam_width=len(support) + 1, collapse_repeats=collapse_repeats,
                              n_best=len(support))
    assert hyps[0][1] == pytest.approx(best_score, abs=1e-9)
    ties = [k for k, v in support.items() if abs(v - best_score) < 1e-9]
    assert hyps[0][0] in ties
    # unpruned, the search's score of every hypothesis is its exact probability
    assert len(hyps) == len(support)
    for labels, score in hyps:
        assert score == pytest.approx(support[labels], abs=1e-9)
    # and the distribution's beam search returns exact (rescored) log-probabilities
    top = CTC(log_probs, collapse_repeats=collapse_repeats).beam_search(len(support) + 1)[0][0]
    assert top[1] == pytest.approx(best_score, abs=1e-9)


def test_beam_search_finds_the_map_where_best_path_fails():
    """A case where the best path differs from the MAP label sequence: beam search finds the MAP."""
    # blank 0.4 wins every frame, but p(l = (1,)) = 0.309 beats p(()) = 0.4^3 = 0.064
    y = torch.log(torch.tensor([[0.4, 0.35, 0.25]] * 3, dtype=torch.float64))
    dist = CTC(y)
    _, best_lengths = dist.best_path()
    assert int(best_lengths) == 0                      # argmax is blank in every frame
    (labels, score), *_ = dist.beam_search(8)[0]
    expected_labels, expected_score = ctc_oracle.map_labels(y)
    assert labels == expected_labels and labels != ()
    assert score == pytest.approx(expected_score, abs=1e-12)


def test_collapse_and_best_path():
    frames = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 0], [0, 3, 3, 3, 9, 9, 9, 9]])
    lengths = torch.tensor([8, 4])
    labels, n = collapse(frames, lengths)
    assert n.tolist() == [3, 1]
    assert labels[0, :3].tolist() == [1, 1, 2] and labels[1, :1].tolist() == [3]
    assert (labels[0, 3:] == -1).all() and (labels[1, 1:] == -1).all()
    labels, n = collapse(frames, lengths, collapse_repeats=False)
    assert n.tolist() == [5, 3]
    assert labels[0, :5].tolist() == [1, 1, 1, 2, 2]
    logits = torch.nn.functional.one_hot(frames, 10).double() * 5
    dist = CTC(logits, lengths)
    best, best_n = dist.best_path()
    assert best_n.tolist() == [3, 1] and best[0, :3].tolist() == [1, 1, 2]


def test_shapes_follow_torch_distributions():
    g = torch.Generator().manual_seed(1)
    dist = CTC(torch.randn(2, 3, 6, 4, generator=g))          # batch_shape (2, 3), T = 6
    assert dist.batch_shape == (2, 3)
    labels, lengths = dist.sample((5,), generator=g)
    assert labels.shape == (5, 2, 3, 6) and lengths.shape == (5, 2, 3)
    lp = dist.log_prob(labels, lengths)
    assert lp.shape == (5, 2, 3) and torch.isfinite(lp).all()
    # log_prob of a sample_shape batch equals one per-item call
    item = CTC(dist.logits[1, 2]).log_prob(labels[4, 1, 2, : int(lengths[4, 1, 2])])
    assert float(item) == pytest.approx(float(lp[4, 1, 2]), abs=1e-5)
    assert dist.marginals(labels[0], lengths[0]).shape == (2, 3, 6, 4)
    frames, score = dist.align(labels[0], lengths[0])
    assert frames.shape == (2, 3, 6) and score.shape == (2, 3)
    with pytest.raises(UserError, match="labels must have shape"):
        dist.log_prob(torch.ones(3, 2, 4, dtype=torch.long))
    with pytest.raises(UserError, match="blank index"):
        dist.log_prob(torch.zeros(2, 3, 2, dtype=torch.long))


def test_marginals_sum_to_one_per_frame_and_zero_past_the_end():
    g = torch.Generator().manual_seed(3)
    dist = CTC(torch.randn(3, 8, 5, generator=g, dtype=torch.float64), torch.tensor([8, 5, 6]))
    labels = torch.tensor([[1, 2, 2], [4, 1, 0], [3, 3, 3]])
    m = dist.marginals(labels, torch.tensor([3, 2, 3]))
    sums = m.sum(-1)
    inside = torch.arange(8) < torch.tensor([8, 5, 6]).unsqueeze(1)
    torch.testing.assert_close(sums[inside], torch.ones(int(inside.sum()), dtype=torch.float64))
    assert (sums[~inside] == 0).all()
    # labels (3, 3, 3) in 6 frames: label 3 fills at least 3 frames, the blank at least the 2 between
    assert float(m[2, :6, 3].sum()) >= 3 - 1e-9 and float(m[2, :6, 0].sum()) >= 2 - 1e-9
    assert float(m[2, :6, 3].sum() + m[2, :6, 0].sum()) == pytest.approx(6.0, abs=1e-9)
