"""Smaller defects of issue 12, each pinned by a test: a NaN validation loss stops the run and keeps
what was good; every model casts frames to its parameters' dtype in one place; temperature
applies to frames and not to stop decisions."""

from __future__ import annotations

import json
import math

import pytest
import torch

from probseq.data.batch import Batch
from probseq.data.registry import Dataset
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model
from probseq.train.checkpoint import safe_load
from probseq.train.fit import fit

SPEC = DataSpec("binary", 4)


def _toy_dataset():
    g = torch.Generator().manual_seed(0)

    def seqs(n):
        return [torch.bernoulli(torch.full((int(torch.randint(3, 7, (1,), generator=g)), 4), 0.3), generator=g)
                for _ in range(n)]

    return Dataset("toy", SPEC, {"train": seqs(16), "valid": seqs(4), "test": seqs(4)})


def test_a_nan_validation_loss_stops_the_run_and_keeps_the_best_weights(tmp_path):
    torch.manual_seed(0)
    model = build_model("gru", SPEC, {"hidden": 4})
    calls = []
    honest = type(model).validation_loss

    def flaky(self, batch):
        calls.append(1)
        return math.nan if len(calls) > 2 else honest(self, batch)

    model.validation_loss = flaky.__get__(model)
    with pytest.raises(UserError, match=r"validation loss became nan at step 6.*best weights \(step [24]\)"):
        fit(model, _toy_dataset(), tmp_path, steps=20, options={"eval_every": 2, "batch_size": 4,
                                                                 "checkpoint_every": 2}, progress=False)
    events = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "stop" and events[-1]["reason"] == "non-finite validation loss"
    saved = safe_load(tmp_path / "model.pt")["state_dict"]
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert safe_load(tmp_path / "checkpoint.pt")["progress"]["step"] == 4   # not overwritten at step 6


RBM_FAMILY = [("trbm", {"hidden": 3, "delay": 2}), ("rtrbm", {"hidden": 3}),
              ("rnn-rbm", {"hidden": 4, "rbm_hidden": 3})]


@pytest.mark.parametrize("name, hyper", RBM_FAMILY, ids=[n for n, _ in RBM_FAMILY])
def test_a_double_precision_model_scores_single_precision_frames(name, hyper):
    torch.manual_seed(0)
    model = build_model(name, SPEC, {**hyper, "sample_steps": 2, "cd_steps": 1}).double()
    x = torch.bernoulli(torch.full((2, 5, 4), 0.4))
    batch = Batch(x.float(), torch.tensor([5, 3]))
    result = model.log_prob(batch)
    assert result.values.dtype == torch.float64 and torch.isfinite(result.values).all()
    assert torch.isfinite(model.loss(batch))
    assert model.predict_next(batch).dtype == torch.float64
    assert model.frames_of(batch).dtype == torch.float64


def test_temperature_tempers_frames_but_not_stop_decisions():
    """A GRU whose halting unit always says P(stop) = 0.3: the sampled lengths are geometric with
    mean 1/0.3 at every temperature (tempering the stop logit at T = 0.2 would give a mean near 70),
    while the frames do change with the temperature. Seeded; the mean of 3000 geometric lengths has
    a standard error of 0.035, so the 0.25 tolerance fails with probability below 1e-12."""
    torch.manual_seed(0)
    model = build_model("gru", SPEC, {"hidden": 4, "length": "halting"}).eval()
    with torch.no_grad():
        model.readout.weight[-1].zero_()
        model.readout.bias[-1] = math.log(0.3 / 0.7)
    means, ones = {}, {}
    for temperature in (0.2, 1.0, 3.0):
        samples = model.sample(3000, max_length=200, temperature=temperature,
                               generator=torch.Generator().manual_seed(1))
        means[temperature] = float(samples.lengths.double().mean())
        ones[temperature] = float(samples.values[samples.mask].mean())
    for temperature, mean in means.items():
        assert abs(mean - 1 / 0.3) < 0.25, means
    assert abs(ones[0.2] - ones[3.0]) > 0.02, ones     # the frames themselves are tempered


@pytest.mark.parametrize("name, hyper", [("rtrbm", {"hidden": 3}), ("rnn-rbm", {"hidden": 4, "rbm_hidden": 3}),
                                         ("trbm", {"hidden": 3, "ais_chains": 2})],
                         ids=["rtrbm", "rnn-rbm", "trbm"])
def test_rbm_family_validates_by_the_estimated_nll(name, hyper):
    """keep=best selects by the estimated likelihood: the validation criterion of 0/1 frames is the
    RAISE NLL per frame (the pessimistic side of the sandwich, which a runaway AIS cannot fool; few
    chains, fixed seed: the same number on every call); intensities get the next-frame score."""
    torch.manual_seed(0)
    model = build_model(name, SPEC, {**hyper, "exact_max_units": 0, "valid_chains": 3, "valid_ais_steps": 7,
                                     "valid_seed": 5}).eval()
    x = torch.bernoulli(torch.full((3, 6, 4), 0.4))
    batch = Batch(x, torch.tensor([6, 4, 5]))
    score = model.validation_loss(batch)
    assert score == model.validation_loss(batch)
    est = model.log_prob(batch, estimator="raise", samples=3, ais_steps=7, generator=torch.Generator().manual_seed(5))
    assert est.estimator == ("is-3-raise-2x7" if name == "trbm" else "raise-3x7")
    assert score == pytest.approx(float(-est.values.detach().sum() / batch.n_frames), rel=1e-6)
    # and it is not the AIS number: the criterion really is the pessimistic side
    ais = model.log_prob(batch, estimator="ais", samples=3, ais_steps=7, generator=torch.Generator().manual_seed(5))
    assert score != pytest.approx(float(-ais.values.detach().sum() / batch.n_frames), rel=1e-6)
    soft = Batch(x * 0.5, batch.lengths)                   # intensities: no likelihood, the proxy decides
    assert math.isfinite(model.validation_loss(soft))
    with pytest.raises(UserError, match="valid_criterion"):
        build_model(name, SPEC, {**hyper, "valid_criterion": "test"})
