"""NADE against its oracles (probseq/testing/nade_oracle.py).

* normalisation: probabilities of all 2^D vectors sum to one (D <= 12), for random parameters, random
  orderings (shared and per example), per-example biases, and ensembles over orderings;
* the O(DH) cumulative-sum log_prob equals a naive per-dimension O(D^2 H) implementation;
* the hand-written backward passes gradcheck in float64 and matches autograd of the plain formula;
* samplers: seeded chi-square goodness-of-fit tests (each at alpha = 1e-3: a correct sampler fails a
  given test with probability 1e-3 over seeds; the seeds are fixed, so the outcome is deterministic).
"""

from __future__ import annotations

import math

import pytest
import torch

from probseq.errors import UserError
from probseq.frames.nade import NADE, NADEFrame, _NADELogProb, make_ordering
from probseq.testing.nade_oracle import (all_binary_vectors, chi_square_pvalue, naive_nade_log_prob,
                                         vector_index)

ALPHA = 1e-3


def random_nade(D, H, seed=0, scale=1.0, bias=True) -> NADE:
    torch.manual_seed(seed)
    nade = NADE(D, H, init_scale=scale, bias=bias).double()
    if bias:
        with torch.no_grad():
            nade.visible_bias.normal_()
            nade.hidden_bias.normal_()
    return nade


# ------------------------------------------------------------------ normalisation
@pytest.mark.parametrize("D,H", [(1, 1), (3, 2), (6, 5), (12, 7)])
def test_sums_to_one(D, H):
    nade = random_nade(D, H, seed=D)
    X = all_binary_vectors(D)
    total = nade.log_prob(X).exp().sum()
    assert total.item() == pytest.approx(1.0, abs=1e-10)


def test_sums_to_one_with_random_orderings():
    D, H = 7, 4
    nade = random_nade(D, H, seed=1)
    X = all_binary_vectors(D)
    gen = torch.Generator().manual_seed(0)
    for o in nade.random_orderings(5, generator=gen):
        assert nade.log_prob(X, ordering=o).exp().sum().item() == pytest.approx(1.0, abs=1e-10)
    # a different ordering is a different distribution (the test would catch an ignored ordering)
    o1, o2 = nade.random_orderings(2, generator=gen)
    assert not torch.allclose(nade.log_prob(X, ordering=o1), nade.log_prob(X, ordering=o2))


def test_per_example_orderings_match_shared():
    D, H = 5, 3
    nade = random_nade(D, H, seed=2)
    X = all_binary_vectors(D)
    orders = nade.random_orderings(X.shape[0], generator=torch.Generator().manual_seed(3))
    per = nade.log_prob(X, ordering=orders)
    one_by_one = torch.stack([nade.log_prob(X[i], ordering=orders[i]) for i in range(X.shape[0])])
    torch.testing.assert_close(per, one_by_one)


def test_sums_to_one_with_per_example_biases():
    """Per-example biases (B, D)/(B, H): each of B conditionals is a normalised distribution."""
    D, H, B = 6, 4, 3
    nade = random_nade(D, H, seed=3, bias=False)
    gen = torch.Generator().manual_seed(1)
    b = torch.randn(B, D, generator=gen, dtype=torch.float64) * 2
    c = torch.randn(B, H, generator=gen, dtype=torch.float64) * 2
    X = all_binary_vectors(D).unsqueeze(1)                       # (2^D, 1, D) broadcast with (B, .)
    lp = nade.log_prob(X, visible_bias=b, hidden_bias=c)
    assert lp.shape == (2 ** D, B)
    torch.testing.assert_close(lp.exp().sum(0), torch.ones(B, dtype=torch.float64))
    # the biases matter: example 0 and 1 are different distributions
    assert not torch.allclose(lp[:, 0], lp[:, 1])
    # and per-example random orderings with per-example biases, all broadcast together
    orders = nade.random_orderings(B, generator=gen)
    lp = nade.log_prob(X, visible_bias=b, hidden_bias=c, ordering=orders)
    torch.testing.assert_close(lp.exp().sum(0), torch.ones(B, dtype=torch.float64))


def test_ensemble_is_normalised_log_mean_exp():
    D, H, K = 6, 5, 4
    nade = random_nade(D, H, seed=4)
    X = all_binary_vectors(D)
    orders = nade.random_orderings(K, generator=torch.Generator().manual_seed(5))
    lp = nade.log_prob_ensemble(X, orders)
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-10)
    per = torch.stack([nade.log_prob(X, ordering=o) for o in orders])
    torch.testing.assert_close(lp, torch.logsumexp(per, 0) - math.log(K))
    # averaging the per-dimension logits over orderings is NOT a distribution: show the
    # difference is real, so the test above would catch that mistake
    avg_logits = torch.stack([nade.conditional_logits(X, ordering=o) for o in orders]).mean(0)
    wrong = (X * avg_logits - torch.nn.functional.softplus(avg_logits)).sum(-1)
    assert abs(wrong.exp().sum().item() - 1.0) > 1e-3


# ------------------------------------------------------------------ against the naive implementation
@pytest.mark.parametrize("shared_order", [True, False])
def test_equals_naive_per_dimension(shared_order):
    D, H, N = 9, 6, 12
    nade = random_nade(D, H, seed=6, bias=False)
    gen = torch.Generator().manual_seed(7)
    x = torch.bernoulli(torch.full((N, D), 0.4, dtype=torch.float64), generator=gen)
    b = torch.randn(N, D, generator=gen, dtype=torch.float64)
    c = torch.randn(N, H, generator=gen, dtype=torch.float64)
    o = nade.random_orderings(1 if shared_order else N, generator=gen)
    o = o[0] if shared_order else o
    fast = nade.log_prob(x, visible_bias=b, hidden_bias=c, ordering=o)
    naive = naive_nade_log_prob(nade.weight, nade.output_weight, b, c, x, o)
    torch.testing.assert_close(fast, naive, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(nade.log_prob_autograd(x, visible_bias=b, hidden_bias=c, ordering=o),
                               naive, rtol=1e-12, atol=1e-12)


def test_conditional_logits_are_indexed_by_dimension():
    D, H = 5, 3
    nade = random_nade(D, H, seed=8)
    o = torch.tensor([3, 0, 4, 1, 2])
    x = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    logits = nade.conditional_logits(x, ordering=o)
    # the first dimension in the ordering sees nothing: its logit is b + V h(c)
    expected = nade.visible_bias[3] + nade.output_weight[3] @ torch.sigmoid(nade.hidden_bias)
    assert logits[3].item() == pytest.approx(expected.item(), abs=1e-12)
    lp = (x * logits - torch.nn.functional.softplus(logits)).sum()
    assert lp.item() == pytest.approx(nade.log_prob(x, ordering=o).item(), abs=1e-12)


# ------------------------------------------------------------------ gradients
@pytest.mark.parametrize("shared", [True, False])
def test_fused_backward_gradcheck(shared):
    gen = torch.Generator().manual_seed(9)
    N, D, H = 3, 5, 4
    xp = torch.bernoulli(torch.full((N, D), 0.5, dtype=torch.float64), generator=gen).requires_grad_()
    wshape = (D, H) if shared else (N, D, H)
    Wp = torch.randn(*wshape, generator=gen, dtype=torch.float64).requires_grad_()
    Vp = torch.randn(*wshape, generator=gen, dtype=torch.float64).requires_grad_()
    bp = torch.randn(N, D, generator=gen, dtype=torch.float64).requires_grad_()
    c = torch.randn(N, H, generator=gen, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(_NADELogProb.apply, (xp, Wp, Vp, bp, c))


def test_whole_log_prob_gradcheck_through_orderings_and_biases():
    """gradcheck the public log_prob (gathers, broadcasting, reshapes) w.r.t. every parameter."""
    nade = random_nade(4, 3, seed=10)
    gen = torch.Generator().manual_seed(11)
    x = torch.bernoulli(torch.full((2, 3, 4), 0.5, dtype=torch.float64), generator=gen)
    o = nade.random_orderings(3, generator=gen)
    b = torch.randn(3, 4, dtype=torch.float64, generator=gen, requires_grad=True)

    def log_prob(W, V, c, b):
        params = {"weight": W, "output_weight": V, "hidden_bias": c,
                  "visible_bias": nade.visible_bias, "ordering": nade.ordering}
        return torch.func.functional_call(nade, params, (x,), {"visible_bias": b, "ordering": o})

    inputs = tuple(t.detach().clone().requires_grad_()
                   for t in (nade.weight, nade.output_weight, nade.hidden_bias)) + (b,)
    assert torch.autograd.gradcheck(log_prob, inputs)


def test_fused_gradients_match_autograd_in_float32():
    """The shipped dtype: hand-written gradients equal autograd's of the plain formula."""
    torch.manual_seed(12)
    nade = NADE(30, 20, init_scale=0.3, bias=False)
    x = torch.bernoulli(torch.full((64, 30), 0.2))
    b = torch.randn(64, 30, requires_grad=True)
    c = torch.randn(64, 20, requires_grad=True)
    grads = []
    for fn in (nade.log_prob, nade.log_prob_autograd):
        lp = fn(x, visible_bias=b, hidden_bias=c)
        grads.append(torch.autograd.grad(lp.sum(), [nade.weight, nade.output_weight, b, c]))
    for g_fused, g_auto in zip(*grads):
        torch.testing.assert_close(g_fused, g_auto, rtol=1e-4, atol=1e-4)


def test_data_gradient_matches_autograd():
    """d log p / d x (used by nobody in training, but the Function must not lie about it)."""
    nade = random_nade(5, 4, seed=13)
    x = torch.rand(3, 5, dtype=torch.float64, requires_grad=True)
    g1 = torch.autograd.grad(nade.log_prob(x).sum(), x)[0]
    g2 = torch.autograd.grad(nade.log_prob_autograd(x).sum(), x)[0]
    torch.testing.assert_close(g1, g2)


# ------------------------------------------------------------------ sampling
def _sample_pvalue(nade, n, probs, **kw):
    s = nade.sample(n, generator=torch.Generator().manual_seed(kw.pop("seed", 0)), **kw)
    return chi_square_pvalue(torch.bincount(vector_index(s), minlength=probs.numel()), probs)


def test_sampling_frequencies_match_probabilities():
    """Chi-square at alpha=1e-3 (false-alarm rate 1e-3 per seed); 20,000 draws over 2^5 cells."""
    nade = random_nade(5, 4, seed=14)
    X = all_binary_vectors(5)
    probs = nade.log_prob(X).exp().detach()
    assert _sample_pvalue(nade, 20000, probs) > ALPHA


def test_sampling_frequencies_with_ordering_and_per_example_bias():
    nade = random_nade(4, 3, seed=15, bias=False)
    gen = torch.Generator().manual_seed(16)
    b = torch.randn(4, dtype=torch.float64, generator=gen)
    c = torch.randn(3, dtype=torch.float64, generator=gen)
    o = torch.tensor([2, 0, 3, 1])
    X = all_binary_vectors(4)
    probs = nade.log_prob(X, visible_bias=b, hidden_bias=c, ordering=o).exp().detach()
    bb, cc = b.expand(20000, 4), c.expand(20000, 3)
    s = nade.sample(visible_bias=bb, hidden_bias=cc, ordering=o, generator=torch.Generator().manual_seed(17))
    assert s.shape == (20000, 4)
    p_right = chi_square_pvalue(torch.bincount(vector_index(s), minlength=16), probs)
    assert p_right > ALPHA
    # power check: the same draws are rejected against the natural ordering's distribution
    wrong = nade.log_prob(X, visible_bias=b, hidden_bias=c).exp().detach()
    assert chi_square_pvalue(torch.bincount(vector_index(s), minlength=16), wrong) < ALPHA


def test_temperature_divides_each_conditional_logit():
    """At temperature T the sampler draws from prod_k sigmoid(+-logit_k / T): enumerate that."""
    nade = random_nade(4, 3, seed=18)
    X = all_binary_vectors(4)
    T = 0.5
    logits = nade.conditional_logits(X) / T
    probs = (X * logits - torch.nn.functional.softplus(logits)).sum(-1).exp().detach()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-10)
    assert _sample_pvalue(nade, 20000, probs, temperature=T, seed=19) > ALPHA


def test_random_orderings_are_uniform():
    """All 3! = 6 permutations equally likely (chi-square, alpha=1e-3)."""
    nade = NADE(3, 2)
    o = nade.random_orderings(6000, generator=torch.Generator().manual_seed(20))
    code = o[:, 0] * 9 + o[:, 1] * 3 + o[:, 2]
    counts = torch.bincount(code, minlength=27)
    counts = counts[counts > 0]
    assert counts.numel() == 6
    assert chi_square_pvalue(counts, torch.full((6,), 1 / 6)) > ALPHA


def test_ensemble_frame_samples_the_mixture():
    torch.manual_seed(21)
    frame = NADEFrame(4, 3, n_orderings=3, seed=5, init_scale=1.0).double()
    params = torch.randn(frame.param_dim, dtype=torch.float64)
    X = all_binary_vectors(4)
    probs = frame.log_prob(params.expand(16, -1), X).exp().detach()
    assert probs.sum().item() == pytest.approx(1.0, abs=1e-10)
    s = frame.sample(params.expand(20000, -1), generator=torch.Generator().manual_seed(22))
    assert chi_square_pvalue(torch.bincount(vector_index(s), minlength=16), probs) > ALPHA


# ------------------------------------------------------------------ order-agnostic training
def test_order_agnostic_loss_is_unbiased_for_the_ordering_average():
    """Mean of the random-order loss over many draws -> the average over all D! orderings."""
    import itertools

    nade = random_nade(4, 3, seed=23)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    perms = torch.tensor(list(itertools.permutations(range(4))))
    exact = -torch.stack([nade.log_prob(x, ordering=p) for p in perms]).mean()
    draws = nade.order_agnostic_loss(x.expand(40000, 4), generator=torch.Generator().manual_seed(24))
    se = draws.std() / math.sqrt(draws.numel())
    # 5 standard errors: fails with probability ~6e-7 for a correct implementation
    assert abs(draws.mean() - exact).item() < 5 * se.item()
    # the orderings matter for this x, so the test is not vacuous
    assert draws.std().item() > 1e-3


def test_order_agnostic_training_reduces_ensemble_nll():
    """A few Adam steps of the random-order objective lower the exact ensemble NLL on the data."""
    torch.manual_seed(25)
    D = 8
    data = (torch.rand(256, D) < torch.linspace(0.1, 0.9, D)).float()
    data[:, 1] = data[:, 0]                                     # a dependency to learn
    nade = NADE(D, 16, init_scale=0.1)
    orders = nade.random_orderings(4, generator=torch.Generator().manual_seed(0))
    before = -nade.log_prob_ensemble(data, orders).mean().item()
    opt = torch.optim.Adam(nade.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(26)
    for _ in range(60):
        loss = nade.order_agnostic_loss(data, generator=gen).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = -nade.log_prob_ensemble(data, orders).mean().item()
    assert after < before - 0.5


# ------------------------------------------------------------------ errors and orderings
def test_make_ordering():
    assert make_ordering("natural", 4).tolist() == [0, 1, 2, 3]
    assert make_ordering("reversed", 4).tolist() == [3, 2, 1, 0]
    assert sorted(make_ordering("random", 6, seed=1).tolist()) == list(range(6))
    with pytest.raises(UserError, match="unknown ordering"):
        make_ordering("sideways", 4)


def test_clear_errors():
    nade = NADE(4, 3)
    with pytest.raises(UserError, match="permutation"):
        nade.log_prob(torch.zeros(4), ordering=torch.tensor([0, 0, 1, 2]))
    with pytest.raises(UserError, match="vectors of size 4"):
        nade.log_prob(torch.zeros(2, 5))
    with pytest.raises(UserError, match="hidden_bias"):
        nade.log_prob(torch.zeros(2, 4), hidden_bias=torch.zeros(2, 5))
    with pytest.raises(UserError, match="temperature"):
        nade.sample(3, temperature=0.0)
    with pytest.raises(UserError, match="no biases"):
        NADE(4, 3, bias=False).log_prob(torch.zeros(4))


def test_batch_shapes():
    nade = NADE(6, 4)
    x = torch.zeros(2, 3, 6)
    assert nade.log_prob(x).shape == (2, 3)
    assert nade.sample((2, 3)).shape == (2, 3, 6)
    assert nade.sample().shape == (6,)
    b = torch.zeros(5, 6)
    assert nade.sample(2, visible_bias=b).shape == (2, 5, 6)


# ------------------------------------------------------------------ the sparse "segments" implementation
@pytest.mark.parametrize("shared_order", [True, False])
def test_all_implementations_agree_values_and_gradients(shared_order):
    """cumsum (hand-written backward), segments (sum over the ones) and autograd, against naive."""
    D, H, N = 10, 6, 16
    nade = random_nade(D, H, seed=30, bias=False)
    gen = torch.Generator().manual_seed(31)
    x = torch.bernoulli(torch.full((N, D), 0.3, dtype=torch.float64), generator=gen)
    x[0] = 0.0                                       # no ones: one segment
    x[1] = 1.0                                       # all ones: D + 1 segments
    b = torch.randn(N, D, generator=gen, dtype=torch.float64, requires_grad=True)
    c = torch.randn(N, H, generator=gen, dtype=torch.float64, requires_grad=True)
    o = nade.random_orderings(1 if shared_order else N, generator=gen)
    o = o[0] if shared_order else o
    naive = naive_nade_log_prob(nade.weight, nade.output_weight, b, c, x, o)
    wrt = [nade.weight, nade.output_weight, b, c]
    g_naive = torch.autograd.grad(naive.sum(), wrt)
    for impl in ("cumsum", "segments", "autograd", "auto"):
        lp = nade.log_prob(x, visible_bias=b, hidden_bias=c, ordering=o, impl=impl)
        torch.testing.assert_close(lp, naive, rtol=1e-12, atol=1e-12)
        for g, g_ref in zip(torch.autograd.grad(lp.sum(), wrt), g_naive):
            torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


def test_segments_sums_to_one_and_gradcheck():
    nade = random_nade(6, 4, seed=32)
    X = all_binary_vectors(6)
    lp = nade.log_prob(X, impl="segments")
    assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-10)
    x = X[torch.tensor([0, 5, 22, 63])]
    inputs = tuple(t.detach().clone().requires_grad_()
                   for t in (nade.weight, nade.output_weight, nade.visible_bias, nade.hidden_bias))

    def log_prob(W, V, b, c):
        params = {"weight": W, "output_weight": V, "visible_bias": b, "hidden_bias": c,
                  "ordering": nade.ordering}
        return torch.func.functional_call(nade, params, (x,), {"impl": "segments"})

    assert torch.autograd.gradcheck(log_prob, inputs)


def test_segments_rejects_non_binary_and_auto_falls_back():
    nade = random_nade(4, 3, seed=33)
    x = torch.tensor([[0.5, 0.0, 1.0, 0.0]], dtype=torch.float64)
    with pytest.raises(UserError, match="exactly binary"):
        nade.log_prob(x, impl="segments")
    torch.testing.assert_close(nade.log_prob(x), nade.log_prob(x, impl="cumsum"))
    with pytest.raises(UserError, match="unknown NADE implementation"):
        nade.log_prob(x, impl="fast")
