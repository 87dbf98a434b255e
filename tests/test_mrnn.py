"""The multiplicative RNN: the factored layer against the explicit per-character transition matrices,
gradients in float64, and use as a cell of other backbones.

Normalisation (all sequences of all lengths sum to one, with every length model) is checked with
the other baselines in ``tests/test_lengths.py``; the generic model contract in
``tests/test_model_contract.py``.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.mrnn import MultiplicativeRNN, MultiplicativeRNNLayer
from probseq.models.registry import build_model
from probseq.testing.enumerate import random_batch

pytestmark = pytest.mark.usefixtures("one_thread")


def test_layer_equals_an_rnn_with_one_transition_matrix_per_character():
    """Eq. 5.5-5.6 with one-hot inputs: h_t = tanh(W^{(v_t)} h_{t-1} + W_hv v_t + b), where
    W^{(k)} = W_hf diag(W_fv[:, k]) W_fh is character k's own hidden-to-hidden matrix."""
    torch.manual_seed(0)
    K, H, F, B, T = 4, 5, 3, 2, 6
    layer = MultiplicativeRNNLayer(K, H, F).double()
    symbols = torch.randint(K, (B, T))
    inputs = torch.nn.functional.one_hot(symbols, K).double()
    h0 = torch.randn(B, H, dtype=torch.float64)
    outputs, last = layer(inputs, h0)

    w_fv, w_fh = layer.input_to_factors.weight, layer.hidden_to_factors.weight
    w_hf, w_hv, b = layer.factors_to_hidden.weight, layer.input_to_hidden.weight, layer.input_to_hidden.bias
    per_char = [w_hf @ torch.diag(w_fv[:, k]) @ w_fh for k in range(K)]
    for i in range(B):
        h = h0[i]
        for t in range(T):
            k = int(symbols[i, t])
            h = torch.tanh(per_char[k] @ h + w_hv[:, k] + b)
            torch.testing.assert_close(outputs[i, t], h)
        torch.testing.assert_close(last[i], h)


def test_gradients_match_finite_differences_in_float64():
    torch.manual_seed(1)
    net = MultiplicativeRNN(3, 4, num_layers=2, factors=5).double()
    names = [n for n, _ in net.named_parameters()]
    inputs = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)

    def run(x, h, *params):
        out, last = functional_call(net, dict(zip(names, params)), (x, h))
        return out.sum(-1), last

    params = tuple(p.detach().clone().requires_grad_(True) for p in net.parameters())
    assert torch.autograd.gradcheck(run, (inputs, h0, *params))


class _Scorer(torch.nn.Module):
    """``forward`` = the model's log-likelihoods, so :func:`functional_call` can swap its parameters."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, batch):
        return self.model.log_prob(batch).values


def test_model_gradient_in_float64():
    torch.manual_seed(2)
    spec = DataSpec("categorical", 3)
    # the likelihood's exact gradient: derivative clipping (a training-time safeguard) off
    scorer = _Scorer(build_model("mrnn", spec, {"hidden": 3, "factors": 2, "length": "end-symbol",
                                                "derivative_clip": 0.0}).double())
    batch = random_batch(spec, [4, 2])
    names = [n for n, _ in scorer.named_parameters()]

    def log_prob(*params):
        return functional_call(scorer, dict(zip(names, params)), (batch,))

    params = tuple(p.detach().clone().requires_grad_(True) for p in scorer.parameters())
    assert torch.autograd.gradcheck(log_prob, params)


def test_factors_default_to_hidden_and_count_parameters():
    model = build_model("mrnn", DataSpec("categorical", 5), {"hidden": 7})
    layer = model.rnn.layers[0]
    assert layer.factors == 7
    I, H, F = layer.input_size, 7, 7
    assert sum(p.numel() for p in layer.parameters()) == F * (I + 2 * H) + H * (I + 1)


def test_mrnn_is_a_cell_for_other_backbones():
    model = build_model("rnn-nade", DataSpec("binary", 4), {"cell": "mrnn", "hidden": 5, "nade_hidden": 3})
    assert isinstance(model.rnn, MultiplicativeRNN)
    assert torch.isfinite(model.log_prob(random_batch(DataSpec("binary", 4), [3, 5])).values).all()


def test_unknown_cell_is_a_user_error_naming_mrnn():
    with pytest.raises(UserError, match="mrnn"):
        build_model("rnn-nade", DataSpec("binary", 4), {"cell": "nope"})


def test_derivative_clipping_changes_nothing_while_derivatives_are_small():
    """A healthy layer's derivatives stay inside the bound: the same gradients with and without.
    The loss is a per-frame mean of a readout of PyTorch's default scale (±1/sqrt(H)), as the
    trainer's losses are."""
    torch.manual_seed(3)
    B, T, H = 4, 30, 64
    inputs = torch.nn.functional.one_hot(torch.randint(5, (B, T)), 5).float()
    readout = torch.empty(H, 5).uniform_(-H ** -0.5, H ** -0.5)
    grads = []
    for clip in (0.0, 1.0):
        torch.manual_seed(4)
        layer = MultiplicativeRNNLayer(5, H, H, derivative_clip=clip)
        out, _ = layer(inputs, torch.zeros(B, H))
        (torch.log_softmax(out @ readout, -1)[..., 0].sum() / (B * T)).backward()
        grads.append([p.grad.clone() for p in layer.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)


def test_derivative_clipping_bounds_the_backward_pass_of_an_expansive_layer():
    """The failure mode behind issue 19's divergence: a chaotic recurrence (random W_fh of gain 3)
    whose backward pass over 600 steps overflows float32 (inf, then NaN). With the clip every
    derivative w.r.t. h_t stays within c / (B T), and the gradients are finite."""
    def gradients(clip):
        torch.manual_seed(5)
        B, T, H = 2, 600, 32
        inputs = torch.nn.functional.one_hot(torch.randint(3, (B, T)), 3).float()
        layer = MultiplicativeRNNLayer(3, H, H, derivative_clip=clip)
        with torch.no_grad():
            layer.input_to_factors.weight.fill_(1.0)
            layer.hidden_to_factors.weight.copy_(3 * torch.randn(H, H) / H ** 0.5)
            layer.factors_to_hidden.weight.copy_(torch.randn(H, H) / H ** 0.5)
            layer.input_to_hidden.weight.zero_()
            layer.input_to_hidden.bias.zero_()
        h0 = torch.randn(B, H).requires_grad_(True)
        out, _ = layer(inputs, h0)
        out[:, -1].sum().backward()
        return h0.grad, layer.hidden_to_factors.weight.grad, 1.0 / (B * T)

    unclipped, _, _ = gradients(0.0)
    assert not torch.isfinite(unclipped).all()
    grad_h0, grad_w, bound = gradients(1.0)
    assert torch.isfinite(grad_w).all() and torch.isfinite(grad_h0).all()
    assert grad_h0.abs().max() < 1e3 * bound     # one Jacobian away from a clamped message


def test_the_default_recipe_survives_a_step_that_used_to_give_nan(tmp_path):
    """A large learning rate reproduces the overflow in two steps (Adam, 0.3): without derivative
    clipping the run stops with 'the loss is nan'; with the default it trains on."""
    from probseq.data.registry import load_dataset
    from probseq.train.fit import fit, training_options
    from probseq.data.sets.text import __file__ as _  # noqa: F401  (the text dataset is registered)

    data = load_dataset("text", data_file=str(_KJV))
    for clip, fails in ((0.0, True), (1.0, False)):
        torch.manual_seed(0)
        model = build_model("mrnn", data.spec, {"hidden": 64, "derivative_clip": clip})
        opts = training_options(model, {"lr": 0.3, "batch_size": 8, "eval_every": 10 ** 6})
        run = tmp_path / f"clip{clip}"
        if fails:
            with pytest.raises(UserError, match="nan"):
                fit(model, data, run, steps=20, options=opts, progress=False)
        else:
            fit(model, data, run, steps=20, options=opts, progress=False)
            assert all(torch.isfinite(p).all() for p in model.parameters())


_KJV = __import__("pathlib").Path(__file__).resolve().parents[1] / "probseq/data/embedded/kjv_genesis_1-11.txt"
