"""Generic tests run over every registered model (STYLE.md, convention 7).

Each model class declares a tiny ``contract_example``; a registered model without one fails here.
Conditional models (``conditional = True``: CTC given audio, dialogue models) have their own
equivalents of these tests next to their code.

Every test runs on each device type present on the machine (``probseq.device.available_devices()``
at collection time: the CPU always, CUDA and MPS where there), so no parametrisation can only skip.
Batches move to the model's device and generators live there (``probseq.device.generator_for``), as
the randomness rule asks.

Batched equals per-sequence: for a model whose default estimator is stochastic, batched and single
runs draw different noise, so the model must be listed in :data:`COMMON_RANDOM_NUMBERS` with a
per-sequence quantity that is deterministic given noise drawn for each sequence alone; an unlisted
stochastic model fails instead of skipping.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch

from probseq.data.batch import Batch
from probseq.device import available_devices, generator_for, model_device
from probseq.frames.base import LIKELIHOOD_KINDS
from probseq.models.registry import build_model, model_class, model_names
from probseq.testing.enumerate import random_batch

#: every registered model that the generic tests cover: conditional models (``conditional = True``)
#: have their own equivalents next to their code (see ``test_conditional_models_have_their_own_tests``)
NAMES = [name for name in model_names() if not getattr(model_class(name), "conditional", False)]
CONDITIONAL_TESTS = {"ctc": "test_ctc_recognizer.py", "hred": "test_vhred.py",
                     "vhred": "test_vhred.py", "rnn-regression": "test_optim_training.py"}
LENGTHS = [5, 2, 7]


@pytest.fixture(params=available_devices())
def device(request) -> torch.device:
    return torch.device(request.param)


def _build(name: str, seed: int = 0, device: torch.device | str = "cpu"):
    cls = model_class(name)
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


def test_conditional_models_have_their_own_tests():
    """A conditional model is left out of the generic tests only if a test module of its own builds it."""
    tests = Path(__file__).resolve().parent
    conditional = {name for name in model_names() if getattr(model_class(name), "conditional", False)}
    assert conditional == set(CONDITIONAL_TESTS), "list the test module of each conditional model"
    for name, module in CONDITIONAL_TESTS.items():
        assert f'"{name}"' in (tests / module).read_text(), f"{module} never builds {name!r}"


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


def _trbm_filtered(model, batch: Batch, rows: list[int]) -> torch.Tensor:
    """TRBM: the default ``is`` estimator samples hidden trajectories, one stream for all rows.

    The deterministic quantity is ``log Q(v)`` of the mean-field filter (``filtered``; per-step
    ``log Z`` exact on this tiny model): it runs the same delay taps, masks and per-step partitions.
    The sampled estimator, batched over unequal lengths, is checked against the exact marginal of
    each sequence in ``tests/test_trbm.py``.
    """
    return model.log_prob(batch.to(model_device(model)), estimator="filtered").values


def _vrnn_terms_with_noise_per_sequence(model, batch: Batch, rows: list[int]) -> torch.Tensor:
    """VRNN: the ELBO and the importance log weight, ``(B, 2)``, with the latent noise of sequence
    ``rows[b]`` drawn from a generator seeded for that sequence alone (common random numbers).

    The noise is drawn on the CPU at a fixed length and cut to the batch's length, so a sequence
    sees the same noise whether it is scored alone or padded inside a batch.
    """
    parameter = next(model.parameters())
    noise = torch.cat([torch.randn((1, 16, model.latent_size), generator=torch.Generator().manual_seed(100 + row),
                                   dtype=parameter.dtype) for row in rows])
    batch = batch.to(parameter.device)
    terms = model.elbo_terms(batch, noise=noise[:, :batch.max_length].to(parameter.device))
    return torch.stack([terms.elbo, terms.log_weight], 1)


#: models whose default estimator is stochastic: a per-sequence quantity that is deterministic
#: given noise drawn for each sequence alone, ``f(model, batch, rows) -> (B, ...)``
COMMON_RANDOM_NUMBERS = {"trbm": _trbm_filtered, "vrnn": _vrnn_terms_with_noise_per_sequence}


@pytest.mark.parametrize("name", NAMES)
def test_batched_equals_per_sequence(name, device):
    model, spec = _build(name, device=device)
    batch = random_batch(spec, LENGTHS)
    first, second = _log_prob(model, batch, 1).values, _log_prob(model, batch, 2).values

    def score(sub: Batch, rows: list[int]) -> torch.Tensor:
        return _log_prob(model, sub).values

    if not torch.equal(first, second):
        assert name in COMMON_RANDOM_NUMBERS, (
            f"{name}'s default estimator is stochastic (batched and single runs draw different noise): "
            "list a deterministic per-sequence quantity for it in COMMON_RANDOM_NUMBERS")
        score = functools.partial(COMMON_RANDOM_NUMBERS[name], model)
    batched = score(batch, list(range(len(LENGTHS))))
    singles = torch.cat([score(batch.select([i]), [i]) for i in range(len(LENGTHS))])
    assert torch.isfinite(batched).all()
    torch.testing.assert_close(batched, singles, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", sorted(COMMON_RANDOM_NUMBERS))
def test_common_random_numbers_list_only_stochastic_models(name):
    """An entry for a model whose default estimator became deterministic is stale: the plain test covers it."""
    model, spec = _build(name)
    batch = random_batch(spec, LENGTHS)
    assert not torch.equal(_log_prob(model, batch, 1).values, _log_prob(model, batch, 2).values)


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
