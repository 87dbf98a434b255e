"""Hessian-free optimisation: Gauss-Newton products against explicit matrices, CG, one-step
convergence on a convex quadratic, repeatability, and the initialisations it goes with."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from probseq.optim import (CurvatureOutputs, GaussNewtonOperator, HessianFree, conjugate_gradient,
                           echo_state_init_, sparse_init_, spectral_radius)
from probseq.optim.training import parameter_space_outputs


def _flat(vs):
    return torch.cat([v.reshape(-1) for v in vs])


def _unflat(vec, like):
    out, start = [], 0
    for p in like:
        out.append(vec[start:start + p.numel()].reshape(p.shape))
        start += p.numel()
    return out


class _TinyRNN(nn.Module):
    """h_t = tanh(W x_t + U h_{t-1} + b); z = V h_T + c (3 classes); float64."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(2, 3, batch_first=True).double()
        self.out = nn.Linear(3, 3).double()

    def forward(self, x):
        states, _ = self.rnn(x)
        return self.out(states[:, -1]), states


def _cross_entropy(targets):
    return lambda z: nn.functional.cross_entropy(z, targets, reduction="sum") / len(targets)


def _explicit_jacobian(fn, params):
    """d fn(params) / d params as a (numel(out), numel(params)) matrix, by torch.autograd.functional."""
    flat0 = _flat([p.detach() for p in params])

    def f(vec):
        return fn(_unflat(vec, params)).reshape(-1)

    return torch.autograd.functional.jacobian(f, flat0)


def test_gauss_newton_product_equals_explicit_jt_h_j_v_with_structural_damping():
    torch.manual_seed(0)
    net = _TinyRNN()
    x = torch.randn(4, 5, 2, dtype=torch.float64)
    targets = torch.tensor([0, 2, 1, 2])
    params = list(net.parameters())
    names = [n for n, _ in net.named_parameters()]
    z, states = net(x)
    op = GaussNewtonOperator(params, CurvatureOutputs(z, _cross_entropy(targets), states))
    v = [torch.randn_like(p) for p in params]

    def outputs_of(ps):
        return torch.func.functional_call(net, dict(zip(names, ps)), (x,))

    jz = _explicit_jacobian(lambda ps: outputs_of(ps)[0], params)
    jh = _explicit_jacobian(lambda ps: outputs_of(ps)[1], params)
    hl = torch.autograd.functional.hessian(lambda zz: _cross_entropy(targets)(zz.reshape(z.shape)),
                                           z.detach().reshape(-1))
    structural = 0.3
    expected = jz.T @ hl @ jz @ _flat(v) + structural * jh.T @ jh @ _flat(v)
    got = _flat(op(v, structural))
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-11)
    # the forward-mode product used inside agrees with torch.func.jvp
    _, (jvp_z, jvp_h) = torch.func.jvp(outputs_of, (tuple(p.detach() for p in params),), (tuple(v),))
    jv = op.jvp(v)
    torch.testing.assert_close(jv[0], jvp_z)
    torch.testing.assert_close(jv[1], jvp_h)
    # G is positive semi-definite for a convex loss on the outputs
    g = jz.T @ hl @ jz
    assert float(torch.linalg.eigvalsh((g + g.T) / 2).min()) > -1e-10


def test_parameter_space_fallback_gives_the_exact_hessian():
    torch.manual_seed(1)

    class Quartic(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(3, dtype=torch.float64))

        def loss(self, batch, generator=None):
            return (batch @ self.w).pow(4).mean() + self.w.pow(2).sum()

    model = Quartic()
    batch = torch.randn(6, 3, dtype=torch.float64)
    outputs = parameter_space_outputs(model, batch)
    op = GaussNewtonOperator(list(model.parameters()), outputs)
    v = [torch.randn(3, dtype=torch.float64)]
    hessian = torch.autograd.functional.hessian(lambda w: (batch @ w).pow(4).mean() + w.pow(2).sum(),
                                                model.w.detach())
    torch.testing.assert_close(op(v)[0], hessian @ v[0])


def test_conjugate_gradient_solves_a_positive_definite_system():
    gen = torch.Generator().manual_seed(2)
    m = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=gen, dtype=torch.float64)
    result = conjugate_gradient(lambda v: [a @ v[0]], [b], [torch.zeros(6, dtype=torch.float64)],
                                max_iters=50)
    torch.testing.assert_close(result.final[0], torch.linalg.solve(a, b))
    assert result.stop == "residual" and result.iterations <= 6
    kept = [i for i, _, _ in result.iterates]
    assert kept == sorted(set(kept)) and kept[0] == 1     # iterates kept for backtracking


def test_one_update_reaches_the_minimum_of_a_convex_quadratic():
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(10, 5, generator=gen, dtype=torch.float64)
    target = torch.randn(10, generator=gen, dtype=torch.float64)
    theta = nn.Parameter(torch.randn(5, generator=gen, dtype=torch.float64))
    opt = HessianFree([theta], damping=1e-12, cg_max_iters=50, adapt_damping=False)

    def closure():
        return CurvatureOutputs(a @ theta, lambda z: 0.5 * (z - target).pow(2).sum())

    opt.step(closure)
    minimum = torch.linalg.lstsq(a, target).solution
    torch.testing.assert_close(theta.detach(), minimum, rtol=1e-8, atol=1e-8)
    assert opt.last_step["alpha"] == 1.0


def _train_tiny_rnn(seed, steps=4, structural=0.5):
    torch.manual_seed(seed)
    net = _TinyRNN()
    x = torch.randn(16, 6, 2, dtype=torch.float64)
    targets = (x[:, 0, 0] > 0).long() + (x[:, 0, 1] > 0).long()
    opt = HessianFree(net.parameters(), damping=1.0, structural_damping=structural, cg_max_iters=20)

    def closure(n=16):
        z, states = net(x[:n])
        return CurvatureOutputs(z, _cross_entropy(targets[:n]), states)

    losses = [float(opt.step(closure, lambda: closure(8))) for _ in range(steps)]
    with torch.no_grad():
        losses.append(float(closure().value()))
    return losses, [p.detach().clone() for p in net.parameters()], opt


def test_hf_training_is_repeatable_and_decreases_the_loss():
    losses, params, opt = _train_tiny_rnn(0)
    again, params_again, _ = _train_tiny_rnn(0)
    assert losses == again
    for p, q in zip(params, params_again):
        assert torch.equal(p, q)
    assert losses[-1] < losses[0] - 0.05
    assert {"rho", "damping", "cg_iterations"} <= set(opt.last_step)
    # the optimiser state (damping, CG warm start) round-trips through state_dict
    state = opt.state_dict()
    assert state["param_groups"][0]["damping"] == opt.param_groups[0]["damping"]


def test_sparse_initialisation_has_fifteen_incoming_connections_per_unit():
    w = torch.empty(40, 100)
    sparse_init_(w, 15, generator=torch.Generator().manual_seed(0))
    assert ((w != 0).sum(1) == 15).all()
    small = torch.empty(5, 4)
    sparse_init_(small, 15, generator=torch.Generator().manual_seed(0))
    assert (small != 0).all()                         # fewer inputs than 15: dense


@pytest.mark.parametrize("hidden", [20, 100])
def test_echo_state_initialisation_has_spectral_radius_one_point_two(hidden):
    w = torch.empty(hidden, hidden)
    echo_state_init_(w, 15, radius=1.2, generator=torch.Generator().manual_seed(1))
    assert abs(spectral_radius(w) - 1.2) < 1e-5
    assert ((w != 0).sum(1) <= 15).all()
