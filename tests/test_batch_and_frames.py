"""Batches (the one place masks are made) and the factorial frame distributions."""

from __future__ import annotations

import math

import pytest
import torch

from probseq.data.batch import Batch
from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.frames.factorial import BernoulliFrame, CategoricalFrame, GaussianFrame
from probseq.models.registry import build_model


def test_batch_pads_masks_and_selects():
    batch = Batch.from_sequences([torch.ones(3, 2), torch.ones(1, 2) * 2])
    assert batch.values.shape == (2, 3, 2) and batch.lengths.tolist() == [3, 1]
    assert batch.mask.tolist() == [[True, True, True], [True, False, False]]
    assert batch.n_frames == 4
    sub = batch.select([1])
    assert sub.values.shape == (1, 1, 2) and float(sub.values.sum()) == 4.0
    dirty = Batch(batch.values.clone().index_put_((torch.tensor([1]), torch.tensor([2])),
                                                  torch.tensor(float("nan"))), batch.lengths)
    assert torch.isfinite(dirty.padded_with_zeros()).all()


@pytest.mark.parametrize("make,match", [
    (lambda: Batch.from_sequences([]), "zero sequences"),
    (lambda: Batch.from_sequences([torch.ones(2, 3), torch.ones(2, 4)]), "frames of shape"),
    (lambda: Batch.from_sequences([torch.ones(0, 3)]), "empty"),
    (lambda: Batch(torch.ones(2, 3, 1), torch.tensor([3, 4])), "every length"),
    (lambda: Batch(torch.ones(2, 3, 1), torch.tensor([3])), "lengths must have shape"),
])
def test_bad_batches_are_refused_clearly(make, match):
    with pytest.raises(UserError, match=match):
        make()


def test_factorial_frames_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g)
    x = torch.bernoulli(torch.full((5, 4), 0.5), generator=g)
    expected = torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1)
    torch.testing.assert_close(BernoulliFrame(4).log_prob(logits, x), expected)

    params = torch.randn(5, 8, generator=g)
    y = torch.randn(5, 4, generator=g)
    gauss = torch.distributions.Normal(params[:, :4], params[:, 4:].exp()).log_prob(y).sum(-1)
    torch.testing.assert_close(GaussianFrame(4).log_prob(params, y), gauss)

    k = torch.randint(4, (5,), generator=g)
    cat = torch.distributions.Categorical(logits=logits).log_prob(k)
    torch.testing.assert_close(CategoricalFrame(4).log_prob(logits, k), cat)


def test_temperature_sharpens_bernoulli_samples():
    frame = BernoulliFrame(1)
    params = torch.full((20000, 1), 1.0)
    cold = frame.sample(params, temperature=0.25, generator=torch.Generator().manual_seed(0)).mean()
    warm = frame.sample(params, temperature=1.0, generator=torch.Generator().manual_seed(0)).mean()
    assert float(cold) == pytest.approx(1 / (1 + math.exp(-4)), abs=0.01)
    assert float(warm) == pytest.approx(1 / (1 + math.exp(-1)), abs=0.01)


def test_frame_validation_rejects_nan_and_non_binary():
    with pytest.raises(UserError, match="NaN"):
        GaussianFrame(2).validate(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        BernoulliFrame(2).validate(torch.tensor([[1.5, 1.0]]))


def test_independent_baseline_starts_at_the_maximum_likelihood_solution():
    seqs = [torch.tensor([[1.0, 0.0], [1.0, 1.0]]), torch.tensor([[1.0, 0.0]])]
    model = build_model("independent", DataSpec("binary", 2))
    model.prepare(Dataset("toy", DataSpec("binary", 2), {"train": seqs}))
    probs = torch.sigmoid(model.frame_params)
    torch.testing.assert_close(probs, torch.tensor([3.5 / 4, 1.5 / 4]))
