"""Capability attributes that do not lie: what a model class declares for its family and what an
instance answers for itself are kept apart (:mod:`probseq.models.capabilities`), and no instance
overwrites a class attribute."""

from __future__ import annotations

import pytest

from probseq.data.spec import DataSpec
from probseq.models.registry import build_model, model_class, model_names
from probseq.models.rtrbm import RTRBM
from probseq.models.trbm import TRBM

CAPABILITIES = ("likelihood_kind", "training_defaults", "estimators", "data_kinds", "hyperparameters")


@pytest.mark.parametrize("name", [n for n in model_names() if model_class(n).contract_example is not None])
def test_no_instance_overwrites_a_capability(name):
    cls = model_class(name)
    example = cls.contract_example
    model = build_model(cls.name, example["spec"], dict(example["hyper"]))
    overwritten = [name for name in CAPABILITIES if name in vars(model)]
    assert not overwritten, f"{cls.name} stores {overwritten} on the instance, hiding the class's answer"


def test_the_class_answers_for_the_family_and_the_instance_for_itself():
    tiny = TRBM(DataSpec("binary", 4), hidden=3)              # small enough to enumerate
    big = TRBM(DataSpec("binary", 20), hidden=30)
    assert TRBM.likelihood_kind == "estimate" == big.likelihood_kind
    assert tiny.likelihood_kind == "bound"
    thesis = RTRBM(DataSpec("binary", 4), hidden=3, preset="thesis")
    assert RTRBM.training_defaults == {"lr": 1e-3}
    assert thesis.training_defaults["optimizer"] == "sgd" and thesis.likelihood_kind == "exact"
    with pytest.raises(AttributeError, match="cannot be set"):
        tiny.likelihood_kind = "exact"
