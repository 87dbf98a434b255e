"""Checks that a model keeps its tensors on its own device, runnable on a CPU-only machine.

The bug that breaks ``model.to("cuda")`` is a tensor created without ``device=`` (a mask, an index,
a length table, noise for a sampler) that lands on the CPU while the parameters are elsewhere.
Without a GPU it can still be caught: :func:`stray_tensors_on_meta` makes the ``meta`` device the
default while a CPU model runs, so every tensor created without ``device=`` lands on ``meta`` and
the first operation that mixes it with the model's CPU tensors raises (``Tensor on device meta is not
on the expected device cpu``), or the first attempt to read its value does. A model that creates
its tensors on the device of its parameters never notices.

:func:`exercise_model` runs every entry point of the contract once (each estimator, the training
loss and its backward, validation, one-step prediction, sampling with and without a prefix and by
the length model), so that the tests (``tests/test_device.py``) and ``benchmarks/device_check.py``
(on a real accelerator) exercise the same paths.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch

from probseq.device import generator_for, model_device
from probseq.models.base import SequenceModel

__all__ = ["stray_tensors_on_meta", "exercise_model", "contract_calls"]


@contextmanager
def stray_tensors_on_meta() -> Iterator[None]:
    """While active, ``torch.zeros(3)`` and friends (no ``device=``) create ``meta`` tensors."""
    previous = torch.get_default_device()
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(previous)


def contract_calls(model, batch, *, seed: int = 0, samples: int = 3) -> list[tuple[str, Callable[[], Any]]]:
    """``(name, call)`` pairs covering the contract of ``model`` on ``batch`` (on the model's device).

    Generators are made on the model's device, as the randomness rule asks.
    """
    def gen() -> torch.Generator:
        return generator_for(model_device(model), seed)

    def loss_backward():
        model.train()
        try:
            model.zero_grad(set_to_none=True)
            model.loss(batch, generator=gen()).backward()
        finally:
            model.eval()

    calls: list[tuple[str, Callable[[], Any]]] = [
        (f"log_prob[{name}]", (lambda name=name: model.log_prob(batch, estimator=name, samples=samples,
                                                                 generator=gen())))
        for name in model.estimators
    ]
    calls.append(("loss.backward", loss_backward))
    calls.append(("validation_loss", lambda: model.validation_loss(batch)))
    if getattr(model, "conditional", False):
        return calls
    if type(model).predict_next is not SequenceModel.predict_next:
        calls.append(("predict_next", lambda: model.predict_next(batch)))
    if hasattr(model, "diagnostics"):
        calls.append(("diagnostics", lambda: model.diagnostics(batch)))
    if model.length_model.models_length:
        calls.append(("sample[length model]", lambda: model.sample(2, max_length=5, generator=gen())))
    prefix = batch.select([0]).values[:, :1]
    calls.append(("sample[prefix]", lambda: model.sample(2, length=4, prefix=prefix, generator=gen())))
    return calls


def exercise_model(model, batch, *, seed: int = 0, samples: int = 3,
                   on_meta: bool = False) -> dict[str, str]:
    """Run :func:`contract_calls`; returns ``{name: "ok" or the first line of the error}``.

    ``on_meta``: run each call under :func:`stray_tensors_on_meta` (the model must be on the CPU).
    """
    model.eval()
    results = {}
    for name, call in contract_calls(model, batch, seed=seed, samples=samples):
        try:
            if on_meta:
                with stray_tensors_on_meta():
                    call()
            else:
                call()
            results[name] = "ok"
        except Exception as exc:  # reported, not raised: the caller lists every failure at once
            results[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return results
