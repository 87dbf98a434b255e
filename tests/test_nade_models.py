"""The ``nade`` and ``rnn-nade`` sequence models: exact likelihoods by enumeration, padding
invariance, sampling (chi-square at alpha = 1e-3, fixed seeds), priming with a JSB chorale,
checkpoint round trip."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from probseq import Batch, DataSpec, build_model
from probseq.errors import UserError
from probseq.testing.nade_oracle import all_binary_vectors, chi_square_pvalue, vector_index

ALPHA = 1e-3

CONFIGS = [
    ("nade", {"nade_hidden": 3}),
    ("nade", {"nade_hidden": 3, "orderings": 3, "ordering": "random"}),
    ("rnn-nade", {"hidden": 4, "nade_hidden": 3, "cell": "gru"}),
    ("rnn-nade", {"hidden": 4, "nade_hidden": 3, "cell": "rnn", "ordering": "reversed"}),
    ("rnn-nade", {"hidden": 4, "nade_hidden": 3, "cell": "lstm", "orderings": 3}),
]


def make(name, hyper, D=3, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, DataSpec("binary", D), {"init_scale": 1.0, **hyper}).double()
    with torch.no_grad():                       # non-trivial biases (zero by default)
        for p in model.parameters():
            if p.dim() == 1:
                p.normal_()
    return model.eval()


def all_sequences(D: int, T: int) -> Tensor:
    """All ``2^(D T)`` binary sequences of length ``T``: ``(2^(DT), T, D)``."""
    X = all_binary_vectors(D)
    idx = torch.stack(torch.meshgrid(*[torch.arange(2 ** D)] * T, indexing="ij"), -1).reshape(-1, T)
    return X[idx]



@pytest.mark.parametrize("name,hyper", CONFIGS)
def test_sequences_of_each_length_sum_to_one(name, hyper):
    """length=none: for each T, sum over all x_{1:T} of p(x_{1:T} | T) is 1."""
    model = make(name, hyper)
    for T in (1, 2, 3):
        seqs = all_sequences(3, T)
        lp = model.log_prob(Batch(seqs, torch.full((seqs.shape[0],), T))).values
        assert lp.exp().sum().item() == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("name,hyper", CONFIGS[::2])
def test_all_lengths_sum_to_one_with_explicit_length(name, hyper):
    model = make(name, {**hyper, "length": "explicit", "max_length": 2})
    with torch.no_grad():
        model.length_model.logits.normal_()
    total = 0.0
    for T in (1, 2):
        seqs = all_sequences(3, T)
        total += model.log_prob(Batch(seqs, torch.full((seqs.shape[0],), T))).values.exp().sum().item()
    assert total == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("name,hyper", CONFIGS)
def test_padding_garbage_and_batching_do_not_change_results(name, hyper):
    model = make(name, {**hyper, "length": "halting"})
    gen = torch.Generator().manual_seed(1)
    values = torch.bernoulli(torch.full((4, 5, 3), 0.5, dtype=torch.float64), generator=gen)
    lengths = torch.tensor([5, 2, 3, 1])
    clean = values.clone()
    for i, n in enumerate(lengths):
        clean[i, n:] = 0
        values[i, n:] = 7.0                      # garbage that is not even binary
    lp_garbage = model.log_prob(Batch(values, lengths)).values
    lp_clean = model.log_prob(Batch(clean, lengths)).values
    torch.testing.assert_close(lp_garbage, lp_clean)
    one_by_one = torch.cat([model.log_prob(Batch(clean[i:i + 1, :n], lengths[i:i + 1])).values
                            for i, n in enumerate(lengths)])
    torch.testing.assert_close(lp_clean, one_by_one)
    assert model.log_prob(Batch(clean, lengths)).kind == "exact"


@pytest.mark.parametrize("name,hyper", [CONFIGS[0], CONFIGS[2], CONFIGS[4]])
def test_sampled_sequences_match_exact_probabilities(name, hyper):
    """20,000 sequences of length 2 over 2 units (16 cells) against enumerated probabilities."""
    model = make(name, hyper, D=2, seed=3)
    seqs = all_sequences(2, 2)
    probs = model.log_prob(Batch(seqs, torch.full((16,), 2))).values.exp().detach()
    s = model.sample(20000, length=2, generator=torch.Generator().manual_seed(4)).values
    cell = vector_index(s.reshape(20000, 4))     # (x1, x2) flattened = the enumeration order
    assert chi_square_pvalue(torch.bincount(cell, minlength=16), probs) > ALPHA


def test_sampling_state_after_prefix_equals_teacher_forcing():
    """The sampler's state after a prefix gives the same NADE biases as the likelihood pass."""
    model = make("rnn-nade", {"hidden": 5, "nade_hidden": 4, "cell": "lstm"}, D=6)
    prefix = torch.bernoulli(torch.full((2, 4, 6), 0.3, dtype=torch.float64),
                             generator=torch.Generator().manual_seed(5))
    _, params, _ = model.readouts(Batch(prefix, torch.tensor([4, 4])))
    state = model.initial_state(2)
    for t, frame in enumerate(prefix.unbind(1)):
        torch.testing.assert_close(model.readout(state.output)[:, :model.frame.param_dim], params[:, t])
        state = model.advance(state, frame)
    torch.testing.assert_close(model.readout(state.output)[:, :model.frame.param_dim], params[:, 4])


def test_prime_with_jsb_chorale_continues_it():
    """Python-API version of ``probseq sample RUN --prime chorale.mid``: output starts with the prime."""
    from probseq.data.sets.polyphonic import load_polyphonic

    chorale = load_polyphonic("jsb").split("test")[0]           # (T, 88), the embedded copy
    prime = chorale[:8]
    torch.manual_seed(6)
    model = build_model("rnn-nade", DataSpec("binary", 88), {"hidden": 16, "nade_hidden": 12})
    out = model.sample(3, length=20, prefix=prime.unsqueeze(0),
                       generator=torch.Generator().manual_seed(7))
    assert out.values.shape == (3, 20, 88)
    assert torch.equal(out.lengths, torch.full((3,), 20))
    assert torch.equal(out.values[:, :8], prime.expand(3, 8, 88))
    cont = out.values[:, 8:]
    assert ((cont == 0) | (cont == 1)).all()
    assert torch.isfinite(model.log_prob(out).values).all()
    # the continuation is random (three draws are not all the same), and reproducible
    assert not torch.equal(cont[0], cont[1]) or not torch.equal(cont[1], cont[2])
    again = model.sample(3, length=20, prefix=prime.unsqueeze(0),
                         generator=torch.Generator().manual_seed(7))
    assert torch.equal(again.values, out.values)


@pytest.mark.parametrize("name,hyper", CONFIGS)
def test_state_dict_round_trip(name, hyper):
    """A checkpoint is {name, spec, config, state_dict}: rebuilding from it gives the same model."""
    model = make(name, {**hyper, "ordering": "random", "seed": 3, "length": "halting"})
    seqs = all_sequences(3, 2)[:10]
    batch = Batch(seqs, torch.full((10,), 2))
    clone = build_model(name, DataSpec("binary", 3), dict(model.config)).double()
    clone.load_state_dict(model.state_dict())
    clone.eval()
    torch.testing.assert_close(clone.log_prob(batch).values, model.log_prob(batch).values)


def test_order_agnostic_loss_and_exact_validation():
    model = make("rnn-nade", {"hidden": 4, "nade_hidden": 3, "order_agnostic": True, "orderings": 2})
    seqs = all_sequences(3, 2)[:16]
    batch = Batch(seqs, torch.full((16,), 2))
    exact = -model.log_prob(batch).values.sum().item() / batch.n_frames
    assert model.validation_loss(batch) == pytest.approx(exact, rel=1e-12)
    model.train()
    gen = torch.Generator().manual_seed(8)
    losses = [model.loss(batch, generator=gen).item() for _ in range(3)]
    assert len(set(losses)) == 3                      # a fresh random ordering each call
    model.loss(batch, generator=gen).backward()
    assert model.frame.nade.weight.grad is not None


def test_dropout_only_in_training_mode():
    model = make("rnn-nade", {"hidden": 6, "nade_hidden": 3, "input_dropout": 0.5, "output_dropout": 0.5})
    seqs = all_sequences(3, 2)[:8]
    batch = Batch(seqs, torch.full((8,), 2))
    model.eval()
    a, b = model.log_prob(batch).values, model.log_prob(batch).values
    torch.testing.assert_close(a, b)
    model.train()
    torch.manual_seed(0)
    c = model.log_prob(batch).values
    assert not torch.allclose(a, c)


def test_predict_next_is_monte_carlo_marginal():
    """E[x_t | past] against the enumerated marginals (1,000 MC draws: 4 sigma is < 0.064)."""
    model = make("rnn-nade", {"hidden": 4, "nade_hidden": 3}, D=3)
    model.frame.mean_samples = 1000
    prefix = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    pred = model.predict_next(Batch(prefix, torch.tensor([2])))
    assert pred.shape == (1, 2, 3)
    _, params, _ = model.readouts(Batch(prefix, torch.tensor([2])))
    X = all_binary_vectors(3)
    for t in range(2):
        probs = model.frame.log_prob(params[0, t].expand(8, -1), X).exp()
        exact = (probs.unsqueeze(-1) * X).sum(0)
        assert (pred[0, t] - exact).abs().max().item() < 0.064


def test_user_errors():
    with pytest.raises(UserError, match="cannot fit real data"):
        build_model("rnn-nade", DataSpec("real", 4))
    with pytest.raises(UserError, match="unknown cell"):
        build_model("rnn-nade", DataSpec("binary", 4), {"cell": "transformer"})
    with pytest.raises(UserError, match="unknown ordering"):
        build_model("nade", DataSpec("binary", 4), {"ordering": "zigzag"})
    with pytest.raises(UserError, match="does not model length"):
        build_model("nade", DataSpec("binary", 4)).sample(2)
    with pytest.raises(UserError, match="input_dropout"):
        build_model("rnn-nade", DataSpec("binary", 4), {"input_dropout": "1.5"})


def test_prepare_sets_visible_biases_to_marginal_logits():
    from probseq.data.registry import Dataset

    data = [torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])]
    ds = Dataset("toy", DataSpec("binary", 2), {"train": data, "valid": data, "test": data})
    for name in ("nade", "rnn-nade"):
        model = build_model(name, DataSpec("binary", 2), {"nade_hidden": 2})
        model.prepare(ds)
        bias = model.frame_params[:2] if name == "nade" else model.readout.bias[:2]
        expected = torch.logit(torch.tensor([0.75, 0.25]))
        torch.testing.assert_close(bias.detach(), expected)


def test_static_nade_fits_fixed_size_vectors():
    """Length-1 sequences = plain NADE: a few Adam steps beat the factorial fit on correlated bits."""
    torch.manual_seed(9)
    z = (torch.rand(512, 1) < 0.5).float()
    data = z.expand(512, 6).clone()                       # all six bits equal: entropy log 2
    model = build_model("nade", DataSpec("binary", 6), {"nade_hidden": 8, "init_scale": 0.3})
    batch = Batch(data.unsqueeze(1), torch.ones(512, dtype=torch.long))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        loss = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    nll = -model.log_prob(batch).values.mean().item()
    # a factorial model cannot go below 6 log 2 = 4.16 nats; the true entropy is log 2 = 0.69
    assert nll < 1.0
