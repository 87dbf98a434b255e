"""Generic tests run over every registered model (STYLE.md, convention 7).

Each model class declares a tiny ``contract_example``; a registered model without one fails here.
Conditional models (``conditional = True``: CTC given audio, dialogue models) have their own
equivalents of these tests next to their code.

Every test runs on each device type: the CPU always, CUDA and MPS where present (collected and
skipped with the reason elsewhere). Batches move to the model's device and generators live there
(``probseq.device.generator_for``), as the randomness rule asks.
"""

from __future__ import annotations

import math

import pytest
import torch

from probseq.data.batch import Batch
from probseq.device import available_devices, generator_for, model_device
from probseq.frames.base import LIKELIHOOD_KINDS
from probseq.models.registry import build_model, model_class, model_names
from probseq.testing.enumerate import random_batch

NAMES = model_names()
LENGTHS = [5, 2, 7]
DEVICES = [pytest.param(kind, marks=pytest.mark.skipif(kind not in available_devices(),
                                                       reason=f"no {kind} device on this machine"))
           for kind in ("cpu", "cuda", "mps")]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


def _build(name: str, seed: int = 0, device: torch.device | str = "cpu"):
    cls = model_class(name)
    if getattr(cls, "conditional", False):
        pytest.skip(f"{name} is a conditional model; its contract tests live with it")
    if cls.contract_example is None:
        pytest.fail(f"model {name!r} has no contract_example for the generic tests")
    torch.manual_seed(seed)
    example = cls.contract_example
    model = build_model(name, example["spec"], dict(example.get("hyper", {})))
    model.to(device).eval()
    return model, example["spec"]


def _log_prob(model, batch, seed=7):
    return model.log_prob(batch.to(model_device(model)), generator=generator_for(model, seed))


def _garbage(batch: Batch) -> Batch:
    """The same batch with large values / NaN written into every padding position."""
    values = batch.values.clone()
    pad = ~batch.mask
    if values.is_floating_point():
        values[pad] = float("nan")
    else:
        values[pad] = 10 ** 6
    return Batch(values, batch.lengths)


def test_registry_is_populated():
    for expected in ("independent", "rnn", "gru", "lstm"):
        assert expected in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_log_prob_shape_kind_and_finiteness(name, device):
    model, spec = _build(name, device=device)
    batch = random_batch(spec, LENGTHS)
    result = _log_prob(model, batch)
    assert result.values.shape == (len(LENGTHS),)
    assert result.kind in LIKELIHOOD_KINDS and result.kind == model.likelihood_kind
    assert isinstance(result.estimator, str) and result.estimator
    assert torch.isfinite(result.values).all()
    if result.stderr is not None:
        assert result.stderr.shape == (len(LENGTHS),) and (result.stderr >= 0).all()
    if spec.kind in ("binary", "categorical") and result.kind == "exact":
        assert (result.values <= 1e-5).all(), "a probability of a discrete sequence exceeds one"


@pytest.mark.parametrize("name", NAMES)
def test_padding_never_changes_the_result(name, device):
    model, spec = _build(name, device=device)
    batch = random_batch(spec, LENGTHS)
    clean = _log_prob(model, batch).values
    dirty = _log_prob(model, _garbage(batch)).values
    torch.testing.assert_close(dirty, clean, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_per_sequence(name, device):
    model, spec = _build(name, device=device)
    batch = random_batch(spec, LENGTHS)
    first, second = _log_prob(model, batch, 1).values, _log_prob(model, batch, 2).values
    if not torch.equal(first, second):
        pytest.skip(f"{name}'s default estimator is stochastic; batched and single runs draw different noise")
    singles = torch.cat([_log_prob(model, batch.select([i])).values for i in range(len(LENGTHS))])
    torch.testing.assert_close(first, singles, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_sample_then_score_is_finite(name, device):
    model, spec = _build(name, device=device)
    g = generator_for(model, 3)
    length = None if model.length_model.models_length else 6
    samples = model.sample(3, length=length, max_length=12, generator=g)
    assert samples.batch_size == 3 and samples.max_length <= 12
    assert samples.values.shape[2:] == random_batch(spec, [1]).values.shape[2:]
    assert torch.isfinite(_log_prob(model, samples).values).all()


@pytest.mark.parametrize("name", NAMES)
def test_sampling_is_reproducible_and_continues_a_prefix(name, device):
    model, spec = _build(name, device=device)
    prefix = random_batch(spec, [3]).values.to(device)
    a = model.sample(2, length=6, prefix=prefix, generator=generator_for(model, 5))
    b = model.sample(2, length=6, prefix=prefix, generator=generator_for(model, 5))
    assert torch.equal(a.values, b.values) and torch.equal(a.lengths, b.lengths)
    assert (a.lengths == 6).all()
    assert torch.equal(a.values[:, :3], prefix.expand(2, *prefix.shape[1:]))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, device, tmp_path):
    model, spec = _build(name, seed=0, device=device)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    other, _ = _build(name, seed=99, device=device)
    other.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    batch = random_batch(spec, LENGTHS)
    torch.testing.assert_close(_log_prob(other, batch).values, _log_prob(model, batch).values)


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_finite_and_trains_parameters(name, device):
    model, spec = _build(name, device=device)
    model.train()
    batch = random_batch(spec, LENGTHS).to(device)
    loss = model.loss(batch, generator=generator_for(model, 0))
    assert loss.dim() == 0 and math.isfinite(float(loss.detach()))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
