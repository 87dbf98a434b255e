"""Length models: the probabilities of all sequences of all lengths sum to one (enumeration oracle).

For ``halting`` and ``end-symbol`` the support is unbounded, so the oracle
(:func:`probseq.testing.enumerate.total_probability`) adds the exact probability of not having
stopped after ``L`` frames:

.. math:: \\sum_{T \\le L} \\sum_{x_{1:T}} p(x_{1:T}, T) + \\sum_{x_{1:L}} p(x_{1:L}, T > L) = 1,

where ``log p(x_{1:L}, T > L) = log p(x_{1:L}, T = L) - log sigmoid(a_L) + log sigmoid(-a_L)`` with
``a_L`` the stop logit after ``L`` frames (read through the sampling hooks).
"""

from __future__ import annotations

import math

import pytest
import torch

from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.lengths import make_length_model
from probseq.models.registry import build_model
from probseq.testing.enumerate import all_sequences, total_probability


@pytest.mark.parametrize("name", ["independent", "rnn", "gru", "lstm", "mrnn"])
@pytest.mark.parametrize("spec,length", [(DataSpec("binary", 2), "halting"),
                                         (DataSpec("categorical", 3), "end-symbol"),
                                         (DataSpec("binary", 2), "explicit")])
def test_all_sequences_of_all_lengths_sum_to_one(name, spec, length):
    torch.manual_seed(0)
    hyper = {"length": length, "max_length": 4}
    if name != "independent":
        hyper["hidden"] = 5
    model = build_model(name, spec, hyper).double().eval()
    with torch.no_grad():  # random, not-too-small parameters so every term matters
        for p in model.parameters():
            p.normal_(0.0, 0.7)
    total = total_probability(model, spec, 4, unbounded=length != "explicit")
    assert total == pytest.approx(1.0, abs=1e-9)


def test_without_a_length_model_each_length_sums_to_one():
    torch.manual_seed(1)
    spec = DataSpec("binary", 2)
    model = build_model("gru", spec, {"hidden": 4}).double().eval()
    for length in (1, 3):
        with torch.no_grad():
            mass = sum(float(model.log_prob(b).values.exp().sum()) for b in all_sequences(spec, length))
        assert mass == pytest.approx(1.0, abs=1e-9)


def test_sampled_lengths_follow_the_model():
    """Halting with a constant stop logit: P(T = t) = (1 - q)^(t-1) q. Chi-square at alpha = 1e-3."""
    from scipy.stats import chisquare

    model = build_model("independent", DataSpec("binary", 3), {"length": "halting"}).eval()
    with torch.no_grad():
        model.length_head.fill_(-1.0)
    q = 1 / (1 + math.exp(1.0))
    samples = model.sample(4000, max_length=1000, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(samples.lengths, minlength=13)[1:13].double()
    top = 8
    expected = torch.tensor([(1 - q) ** (t - 1) * q for t in range(1, top)], dtype=torch.float64) * 4000
    observed = torch.cat([counts[: top - 1], (4000 - counts[: top - 1].sum()).reshape(1)])
    expected = torch.cat([expected, (4000 - expected.sum()).reshape(1)])
    assert chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-3  # fails 0.1% of seeds


def test_explicit_lengths_are_sampled_from_p_tau_and_bounded():
    model = build_model("gru", DataSpec("binary", 2), {"hidden": 3, "length": "explicit", "max_length": 5})
    with torch.no_grad():
        model.length_model.logits.copy_(torch.tensor([-5.0, -5.0, 5.0, -5.0, -5.0]))
    samples = model.sample(50, generator=torch.Generator().manual_seed(0))
    assert (samples.lengths == 3).float().mean() > 0.9
    capped = model.sample(20, max_length=2, generator=torch.Generator().manual_seed(0))
    assert (capped.lengths <= 2).all()


def test_end_symbol_needs_categorical_frames():
    with pytest.raises(UserError, match="categorical"):
        make_length_model("end-symbol", data_kind="binary", max_length=10)


def test_sampling_without_length_model_needs_a_length():
    model = build_model("gru", DataSpec("binary", 2), {"hidden": 3})
    with pytest.raises(UserError, match="length"):
        model.sample(2)
