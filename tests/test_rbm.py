"""The RBM against brute-force oracles (probseq/testing/rbm_oracle.py) on tiny models, in float64."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from scipy import stats

from probseq.errors import UserError
from probseq.frames.rbm import RBM
from probseq.frames.rbm_exact import binary_states
from probseq.frames.rbm_frame import RBMFrame
from probseq.testing import rbm_oracle as oracle
from probseq.testing.rbm_oracle import random_rbm


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------- log-partition
@pytest.mark.parametrize("d,h", [(3, 2), (2, 3), (3, 3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_log_partition_matches_sum_over_both_layers(d, h, seed):
    rbm = random_rbm(d, h, seed=seed)
    exact = rbm.log_partition("exact").value
    torch.testing.assert_close(exact, oracle.brute_force_log_partition(rbm), rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_gaussian_log_partition_matches_numeric_integration(seed):
    rbm = random_rbm(3, 2, "gaussian", seed=seed, scale=0.7)
    exact = rbm.log_partition("exact").value
    torch.testing.assert_close(exact, oracle.grid_log_partition(rbm), rtol=0, atol=1e-6)


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_batched_bias_overrides_give_one_rbm_per_example(visible):
    rbm = random_rbm(3, 2, visible, seed=3)
    g = torch.Generator().manual_seed(0)
    vb = torch.randn(4, 1, 3, generator=g, dtype=torch.float64)
    hb = torch.randn(5, 2, generator=g, dtype=torch.float64)
    batched = rbm.log_partition("exact", visible_bias=vb, hidden_bias=hb).value
    assert batched.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            # one RBM at a time: brute force for Bernoulli visibles; for Gaussian ones the analytic
            # formula (checked against numeric integration above, which is too slow to repeat here)
            one = (oracle.brute_force_log_partition(rbm, vb[i, 0], hb[j]) if visible == "bernoulli"
                   else rbm.log_partition("exact", visible_bias=vb[i, 0], hidden_bias=hb[j]).value)
            torch.testing.assert_close(batched[i, j], one, rtol=0, atol=1e-10)


def test_probabilities_sum_to_one():
    rbm = random_rbm(4, 3, seed=4)
    v = binary_states(4, dtype=torch.float64)
    total = torch.logsumexp(rbm.log_prob(v), 0)
    torch.testing.assert_close(total, torch.zeros((), dtype=torch.float64), rtol=0, atol=1e-12)


def test_exact_refuses_too_many_units_and_unknown_methods():
    rbm = RBM(30, 30)
    with pytest.raises(UserError, match="ais"):
        rbm.log_partition("exact")
    with pytest.raises(UserError, match="unknown log-partition method"):
        RBM(3, 2).log_partition("magic")
    with pytest.raises(UserError):
        RBM(3, 2, "poisson")


# ---------------------------------------------------------------------------- free energy, conditionals
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_free_energy_is_minus_log_sum_over_hiddens(visible):
    rbm = random_rbm(3, 2, visible, seed=5)
    g = torch.Generator().manual_seed(1)
    v = (binary_states(3, dtype=torch.float64) if visible == "bernoulli"
         else torch.randn(7, 3, generator=g, dtype=torch.float64))
    torch.testing.assert_close(rbm.free_energy(v), oracle.brute_force_free_energy(rbm, v), rtol=0, atol=1e-12)


def test_hidden_and_visible_conditionals_match_the_energy():
    rbm = random_rbm(3, 2, seed=6)
    vs, hs = binary_states(3, dtype=torch.float64), binary_states(2, dtype=torch.float64)
    neg_e = -rbm.energy(vs[:, None], hs[None])                      # (8, 4)
    p_h_given_v = torch.softmax(neg_e, 1)
    p_v_given_h = torch.softmax(neg_e, 0)
    torch.testing.assert_close(torch.sigmoid(rbm.hidden_logits(vs)), p_h_given_v @ hs)
    torch.testing.assert_close(rbm.visible_mean(hs), p_v_given_h.t() @ vs)


def test_gaussian_conditional_mean_minimises_the_energy():
    rbm = random_rbm(3, 2, "gaussian", seed=7)
    hs = binary_states(2, dtype=torch.float64)
    mean = rbm.visible_mean(hs).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(rbm.energy(mean, hs).sum(), mean)
    torch.testing.assert_close(grad, torch.zeros_like(grad), rtol=0, atol=1e-12)


class _LogZ(torch.nn.Module):
    """``log Z`` as a module output, so ``functional_call`` can feed it parameters."""

    def __init__(self, rbm):
        super().__init__()
        self.rbm = rbm

    def forward(self):
        return self.rbm.log_partition("exact").value


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_log_partition_gradients_pass_gradcheck(visible):
    wrapper = _LogZ(random_rbm(3, 2, visible, seed=8, learn_sigma=True))
    names = [n for n, _ in wrapper.named_parameters()]

    def log_z(*params):
        return torch.func.functional_call(wrapper, dict(zip(names, params)), ())

    inputs = tuple(p.detach().clone().requires_grad_(True) for _, p in wrapper.named_parameters())
    assert torch.autograd.gradcheck(log_z, inputs)


# ---------------------------------------------------------------------------- contrastive divergence
@pytest.mark.parametrize("visible,learn_sigma", [("bernoulli", False), ("gaussian", False), ("gaussian", True)])
def test_hand_written_cd_gradient_equals_autograd_and_finite_differences(visible, learn_sigma):
    rbm = random_rbm(4, 3, visible, seed=9, learn_sigma=learn_sigma)
    g = torch.Generator().manual_seed(2)
    v = (torch.bernoulli(torch.full((6, 4), 0.5, dtype=torch.float64), generator=g) if visible == "bernoulli"
         else torch.randn(6, 4, generator=g, dtype=torch.float64))
    hand = rbm.cd_gradients(v, 3, generator=torch.Generator().manual_seed(5))
    negatives = rbm.gibbs(v, 3, generator=torch.Generator().manual_seed(5))
    surrogate = lambda: (rbm.free_energy(v) - rbm.free_energy(negatives)).mean()  # noqa: E731
    auto = dict(zip([n for n, _ in rbm.named_parameters()],
                    torch.autograd.grad(surrogate(), list(rbm.parameters()))))
    assert set(hand) == set(auto)
    for name in hand:
        torch.testing.assert_close(hand[name], auto[name], rtol=1e-10, atol=1e-12)
    # the same gradient by central finite differences of the surrogate (negatives held fixed)
    eps = 1e-6
    for name, param in rbm.named_parameters():
        numeric = torch.zeros_like(param)
        with torch.no_grad():
            for i in range(param.numel()):
                flat = param.view(-1)
                old = float(flat[i])
                flat[i] = old + eps
                up = float(surrogate())
                flat[i] = old - eps
                down = float(surrogate())
                flat[i] = old
                numeric.view(-1)[i] = (up - down) / (2 * eps)
        torch.testing.assert_close(hand[name], numeric, rtol=1e-5, atol=1e-7)


def test_cd_loss_equals_the_hand_written_gradient_path():
    rbm = random_rbm(4, 3, seed=10)
    v = torch.bernoulli(torch.full((8, 4), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(3))
    loss = rbm.cd_loss(v, 2, generator=torch.Generator().manual_seed(7)).mean()
    grads = torch.autograd.grad(loss, [rbm.weight, rbm.visible_bias, rbm.hidden_bias])
    hand = rbm.cd_gradients(v, 2, generator=torch.Generator().manual_seed(7))
    for g, name in zip(grads, ["weight", "visible_bias", "hidden_bias"]):
        torch.testing.assert_close(g, hand[name])


def test_expected_cd_k_gradient_tends_to_the_exact_gradient():
    rbm = random_rbm(3, 2, seed=11, scale=0.8)
    data = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 0, 1], [1, 0, 1]], dtype=torch.float64)
    exact = oracle.exact_gradient(rbm, data)
    gaps = []
    for k in (1, 5, 200):
        cd = oracle.expected_cd_gradient(rbm, data, k)
        gaps.append(max(float((cd[n] - exact[n]).abs().max()) for n in exact))
    assert gaps[0] > 1e-3, "CD-1 should be visibly biased on this model (else the test proves nothing)"
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 1e-10


def test_sampled_cd_k_gradient_is_unbiased_for_the_expected_cd_k_gradient():
    """Mean of the sampled CD-k gradient over 40 groups of 500 copies vs the exact expectation.

    Each component must lie within 5 standard errors (estimated from the spread of the groups):
    under the null, with 11 components and a t-distribution with 39 degrees of freedom, the
    chance of a failure is below 1e-4; the seed makes the run deterministic anyway.
    """
    rbm = random_rbm(3, 2, seed=12, scale=0.8)
    data = torch.tensor([[1, 0, 1], [1, 1, 1], [0, 0, 1], [1, 0, 0]], dtype=torch.float64)
    g = torch.Generator().manual_seed(13)
    for k in (1, 3):
        expected = oracle.expected_cd_gradient(rbm, data, k)
        groups = []
        for _ in range(40):
            copies = data.repeat(125, 1)
            loss = rbm.cd_loss(copies, k, generator=g).mean()
            grads = torch.autograd.grad(loss, [rbm.weight, rbm.visible_bias, rbm.hidden_bias])
            groups.append(torch.cat([x.flatten() for x in grads]))
        groups = torch.stack(groups)
        target = torch.cat([expected[n].flatten() for n in ("weight", "visible_bias", "hidden_bias")])
        se = groups.std(0) / math.sqrt(groups.shape[0])
        z = (groups.mean(0) - target) / se
        assert (z.abs() < 5).all(), f"CD-{k}: z-scores {z}"


def test_persistent_cd_continues_its_chains():
    rbm = random_rbm(4, 3, seed=14)
    v = torch.zeros(5, 4, dtype=torch.float64)
    rbm.cd_loss(v, 2, persistent=True, generator=torch.Generator().manual_seed(0))
    first = rbm.persistent_chains.clone()
    rbm.cd_loss(v, 2, persistent=True, generator=torch.Generator().manual_seed(1))
    continued = rbm.gibbs(first, 2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(rbm.persistent_chains, continued)
    # plain CD-k starts from the data again
    plain = rbm.gibbs(v, 2, generator=torch.Generator().manual_seed(1))
    loss = rbm.cd_loss(v, 2, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, rbm.free_energy(v) - rbm.free_energy(plain))


def test_cd_training_lowers_the_exact_negative_log_likelihood():
    torch.manual_seed(0)
    target = random_rbm(5, 3, seed=15, scale=2.0)
    probs = oracle.visible_distribution(target).detach()
    states = binary_states(5, dtype=torch.float64)
    g = torch.Generator().manual_seed(16)
    data = states[torch.multinomial(probs, 2000, replacement=True, generator=g)]
    model = RBM(5, 3).double()
    before = float(-model.log_prob(data).mean())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    for _ in range(600):
        idx = torch.randint(2000, (100,), generator=g)
        model.cd_step(data[idx], optimizer=optimizer, k=1, generator=g)
    after = float(-model.log_prob(data).mean())
    entropy = float(-(probs * probs.log()).sum())
    assert after < before - 0.2, (before, after)
    assert after < entropy + 0.15, (after, entropy)


def test_cd_step_momentum_is_optimizer_state_that_resumes_exactly():
    """Momentum's velocity lives in the optimiser (saved by its state_dict), not on the RBM: a
    pre-training stopped after 3 steps and resumed from the saved RBM + optimiser states ends where an
    uninterrupted one does, and the update is ``u <- m u + grad; theta <- theta - lr u``."""
    data = torch.bernoulli(torch.full((40, 5), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(1))

    def run(rbm, optimizer, steps, first):
        for step in range(first, first + steps):
            rbm.cd_step(data[step::5], optimizer=optimizer, k=2, generator=torch.Generator().manual_seed(step))

    straight = random_rbm(5, 3, seed=30)
    run(straight, torch.optim.SGD(straight.parameters(), lr=0.2, momentum=0.9), 6, 0)
    first = random_rbm(5, 3, seed=30)
    optimizer = torch.optim.SGD(first.parameters(), lr=0.2, momentum=0.9)
    run(first, optimizer, 3, 0)
    assert set(vars(first)) == set(vars(random_rbm(5, 3, seed=30))), "training state stored on the RBM"
    saved = (copy.deepcopy(first.state_dict()), copy.deepcopy(optimizer.state_dict()))
    resumed = random_rbm(5, 3, seed=99)
    resumed.load_state_dict(saved[0])
    optimizer = torch.optim.SGD(resumed.parameters(), lr=0.2, momentum=0.9)
    optimizer.load_state_dict(saved[1])
    run(resumed, optimizer, 3, 3)
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value, rtol=0, atol=0, msg=name)
    # the rule by hand, from the hand-written gradients
    by_hand, velocity = random_rbm(5, 3, seed=30), {}
    for step in range(6):
        grads = by_hand.cd_gradients(data[step::5], 2, generator=torch.Generator().manual_seed(step))
        with torch.no_grad():
            for name, grad in grads.items():
                velocity[name] = 0.9 * velocity[name] + grad if name in velocity else grad.clone()
                getattr(by_hand, name).sub_(0.2 * velocity[name])
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(by_hand.state_dict()[name], value, rtol=1e-12, atol=1e-12, msg=name)
    assert all(p.grad is None for p in straight.parameters())
    with pytest.raises(ValueError, match="exactly one"):
        straight.cd_step(data[:5], lr=0.1, optimizer=optimizer)


# ---------------------------------------------------------------------------- sampling
def test_gibbs_kernel_leaves_the_model_distribution_invariant():
    rbm = random_rbm(3, 2, seed=17)
    p = oracle.visible_distribution(rbm)
    torch.testing.assert_close(p @ oracle.gibbs_kernel(rbm), p, rtol=0, atol=1e-12)


def test_gibbs_samples_follow_the_model_chi_square():
    """Chi-square goodness of fit of 20000 chains (30 rounds each) to the exact P(v).

    Seeded; under the null the test fails with probability 1e-3 (the threshold on the p-value).
    """
    rbm = random_rbm(3, 2, seed=18, scale=1.5)
    g = torch.Generator().manual_seed(19)
    with torch.no_grad():
        v = rbm.sample((20000,), steps=30, generator=g)
    bits = torch.tensor([4, 2, 1], dtype=torch.float64)
    counts = torch.bincount((v @ bits).long(), minlength=8).double()
    expected = oracle.visible_distribution(rbm).detach() * 20000
    assert stats.chisquare(counts.numpy(), expected.numpy()).pvalue > 1e-3


def test_temperature_samples_the_tempered_joint():
    """At temperature T the sampler targets P(v, h)^(1/T): the RBM with every parameter divided by T."""
    rbm = random_rbm(3, 2, seed=20, scale=1.5)
    tempered = random_rbm(3, 2, seed=20, scale=1.5)
    with torch.no_grad():
        for p in tempered.parameters():
            p.div_(2.0)
    g = torch.Generator().manual_seed(21)
    v = rbm.sample((20000,), steps=30, temperature=2.0, generator=g)
    counts = torch.bincount((v @ torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)).long(), minlength=8)
    expected = oracle.visible_distribution(tempered).detach() * 20000
    assert stats.chisquare(counts.double().numpy(), expected.numpy()).pvalue > 1e-3


def test_mean_field_is_exact_without_interactions():
    rbm = random_rbm(3, 2, seed=22)
    with torch.no_grad():
        rbm.weight.zero_()
    torch.testing.assert_close(rbm.mean_field(), torch.sigmoid(rbm.visible_bias))


def test_mean_field_is_close_to_the_exact_mean_for_weak_weights():
    rbm = random_rbm(3, 2, seed=23, scale=0.3)
    exact = oracle.visible_distribution(rbm) @ binary_states(3, dtype=torch.float64)
    assert float((rbm.mean_field(steps=50) - exact).abs().max()) < 0.02


# ---------------------------------------------------------------------------- the frame distribution
def test_rbm_frame_offsets_the_rbm_biases_and_normalises():
    frame = RBMFrame(3, 2).double()
    with torch.no_grad():
        frame.rbm.weight.normal_()
    params = torch.randn(2, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    states = binary_states(3, dtype=torch.float64)
    lp = frame.log_prob(params.unsqueeze(-2).expand(2, 5, 8, 5), states)      # (2, 5, 8)
    torch.testing.assert_close(torch.logsumexp(lp, -1), torch.zeros(2, 5, dtype=torch.float64))
    zero = frame.log_prob(torch.zeros(8, 5, dtype=torch.float64), states)
    torch.testing.assert_close(zero, frame.rbm.log_prob(states))


def test_rbm_frame_loss_sends_gradient_to_the_dynamic_biases():
    frame = RBMFrame(4, 3, cd_steps=2).double()
    params = torch.zeros(6, 7, dtype=torch.float64, requires_grad=True)
    x = torch.bernoulli(torch.full((6, 4), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    frame.loss(params, x, generator=torch.Generator().manual_seed(2)).sum().backward()
    assert params.grad is not None and float(params.grad.abs().sum()) > 0
    sample = frame.sample(params.detach(), generator=torch.Generator().manual_seed(3))
    assert sample.shape == (6, 4) and ((sample == 0) | (sample == 1)).all()
    assert frame.mean(params.detach()).shape == (6, 4)
    with pytest.raises(UserError, match="0s and 1s"):
        frame.validate(torch.full((2, 4), 0.5))


@pytest.mark.parametrize("persistent", [False, True])
def test_fused_cd_step_makes_the_hand_written_update(persistent):
    fused, plain = random_rbm(5, 4, seed=24), random_rbm(5, 4, seed=24)
    v = torch.bernoulli(torch.full((7, 5), 0.4, dtype=torch.float64), generator=torch.Generator().manual_seed(8))
    for rbm in (fused, plain):
        rbm.persistent_chains = None
    for step in range(3):
        fused.cd_step(v, lr=0.3, k=2, persistent=persistent, generator=torch.Generator().manual_seed(step))
        grads = plain.cd_gradients(v, 2, persistent=persistent, generator=torch.Generator().manual_seed(step))
        with torch.no_grad():
            for name, grad in grads.items():
                getattr(plain, name).sub_(0.3 * grad)
    for (name, a), (_, b) in zip(fused.named_parameters(), plain.named_parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12, msg=name)
    if persistent:
        assert torch.equal(fused.persistent_chains, plain.persistent_chains)


def test_gaussian_gibbs_samples_have_the_exact_mean_and_variance():
    """Gaussian visibles: E[v] and Var[v] of 20000 chains (30 rounds) vs the exact mixture moments.

    P(h) is exact by enumeration (the analytic integral over v), v | h ~ N(b + sigma W h, sigma^2).
    Each of the 3 means and 3 variances must lie within 5 standard errors; under the null the
    chance of a failure is about 6 * 6e-7 (normal approximation); the run is seeded.
    """
    rbm = random_rbm(3, 2, "gaussian", seed=25, scale=1.0)
    hs = binary_states(2, dtype=torch.float64)
    with torch.no_grad():
        u = hs @ rbm.weight.t()
        log_p_h = hs @ rbm.hidden_bias + ((rbm.visible_bias / rbm.sigma) * u + 0.5 * u * u).sum(-1)
        p_h = torch.softmax(log_p_h, 0)
        means = rbm.visible_bias + rbm.sigma * u                       # (4, 3)
        mean = p_h @ means
        var = rbm.sigma ** 2 + p_h @ (means - mean) ** 2
        v = rbm.sample((20000,), steps=30, generator=torch.Generator().manual_seed(26))
    z_mean = (v.mean(0) - mean) / (v.std(0) / math.sqrt(20000))
    fourth = ((v - mean) ** 4).mean(0)
    z_var = (v.var(0) - var) / torch.sqrt((fourth - var ** 2) / 20000)
    assert (z_mean.abs() < 5).all(), z_mean
    assert (z_var.abs() < 5).all(), z_var
