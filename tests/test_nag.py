"""Nesterov's accelerated gradient: the update order of thesis eqs. 7.12-7.13 and the mu schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from probseq.errors import UserError
from probseq.optim import NesterovMomentum, momentum_schedule


def test_momentum_schedule_of_the_thesis():
    assert momentum_schedule(0, 0.99) == 0.5
    assert momentum_schedule(249, 0.99) == 0.5
    assert momentum_schedule(250, 0.99) == 0.75
    assert momentum_schedule(500, 0.99) == pytest.approx(1 - 1 / 6)   # 1 - 2^(-1 - log2 3)
    assert momentum_schedule(750, 0.99) == pytest.approx(0.875)
    assert momentum_schedule(10 ** 6, 0.9) == 0.9                     # capped at mu_max
    assert momentum_schedule(10 ** 6, 0.9, "constant") == 0.9
    with pytest.raises(UserError):
        momentum_schedule(0, 0.9, "cubic")


@pytest.mark.parametrize("schedule", ["constant", "sutskever"])
def test_nag_follows_equations_7_12_and_7_13(schedule):
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    a = m @ m.T + torch.eye(4, dtype=torch.float64)
    b = torch.randn(4, generator=gen, dtype=torch.float64)
    theta0 = torch.randn(4, generator=gen, dtype=torch.float64)
    lr, mu_max, steps = 0.05, 0.95, 520     # crosses the schedule's first two switches

    def grad(t):   # f(theta) = theta^T A theta / 2 - b^T theta
        return a @ t - b

    theta, v = theta0.clone(), torch.zeros(4, dtype=torch.float64)   # hand-written 7.12-7.13
    expected = []
    for t in range(steps):
        mu = momentum_schedule(t, mu_max, schedule)
        v = mu * v - lr * grad(theta + mu * v)
        theta = theta + v
        expected.append(theta.clone())

    param = nn.Parameter(theta0.clone())
    opt = NesterovMomentum([param], lr=lr, momentum=mu_max, schedule=schedule)
    looked_at = []

    def closure():
        opt.zero_grad()
        looked_at.append(param.detach().clone())
        loss = 0.5 * param @ a @ param - b @ param
        loss.backward()
        return loss

    for t in range(steps):
        opt.step(closure)
        torch.testing.assert_close(param.detach(), expected[t], rtol=1e-12, atol=1e-12)
    # the gradient was taken at the look-ahead point, not at theta_t
    assert not torch.equal(looked_at[1], expected[0])


def test_nag_equals_torch_sgd_nesterov_after_the_change_of_variables():
    """torch.optim.SGD(nesterov=True) keeps phi_t = theta_t + mu v_t in the parameters (constant mu,
    lr folded into the buffer); the two trajectories agree after the change of variables."""
    gen = torch.Generator().manual_seed(1)
    a = torch.diag(torch.rand(3, generator=gen, dtype=torch.float64) + 0.5)
    theta0 = torch.randn(3, generator=gen, dtype=torch.float64)
    lr, mu = 0.1, 0.9
    ours = nn.Parameter(theta0.clone())
    opt = NesterovMomentum([ours], lr=lr, momentum=mu)
    theirs = nn.Parameter(theta0.clone())
    sgd = torch.optim.SGD([theirs], lr=lr, momentum=mu, nesterov=True)

    def closure(p, o):
        o.zero_grad()
        loss = 0.5 * p @ a @ p
        loss.backward()
        return loss

    for _ in range(50):
        opt.step(lambda: closure(ours, opt))
        closure(theirs, sgd)
        sgd.step()
        v = opt.state[ours]["velocity"]
        torch.testing.assert_close(theirs.detach(), ours.detach() + mu * v, rtol=1e-10, atol=1e-12)


def test_nag_needs_a_closure_and_sane_arguments():
    p = nn.Parameter(torch.zeros(2))
    with pytest.raises(UserError):
        NesterovMomentum([p], lr=0.1, momentum=1.0)
    with pytest.raises(UserError):
        NesterovMomentum([p], lr=0.1).step()
    assert math.isfinite(momentum_schedule(10 ** 9, 0.999))
