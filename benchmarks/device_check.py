"""Run the model contract on whatever accelerator is present; print one JSON line.

For every registered model (the frame models by their ``contract_example``, the dialogue and
speech models by a tiny configuration), on the accelerator (CUDA, else MPS; ``--device`` to choose):
every estimator's ``log_prob``, the training loss and its backward, validation, one-step
prediction, sampling (with a prefix, and by the length model), exactly as
:func:`probseq.testing.device_audit.exercise_model` does in the tests; then the same ``log_prob``
on the CPU, to check that the accelerator's values agree (``max_abs_diff`` for exact models and
for estimators run with the same draws is only floating-point noise; stochastic estimators draw
from device-specific generators, so their differences are sampling noise, reported, not judged).

With no accelerator it says so (``"device": null``) and exits 0, so it can run anywhere.

Usage::

    python benchmarks/device_check.py [--device cuda:0]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from probseq.data.spec import DataSpec
from probseq.device import available_devices, generator_for, resolve_device
from probseq.models.registry import build_model, model_class, model_names
from probseq.testing.device_audit import exercise_model
from probseq.testing.enumerate import random_batch


def _examples():
    """``(name, model factory, batch factory)`` for every registered model."""
    from probseq.text import EOT_ID

    out = []
    for name in model_names():
        cls = model_class(name)
        example = cls.contract_example
        if example is not None and not getattr(cls, "conditional", False):
            out.append((name, lambda name=name, ex=example: build_model(name, ex["spec"], dict(ex.get("hyper", {}))),
                        lambda model, ex=example: random_batch(ex["spec"], [5, 2, 7])))
        elif name in ("hred", "vhred"):
            cfg = {"embedding": 3, "encoder_hidden": 4, "context_hidden": 4, "decoder_hidden": 4,
                   "vocab": ["<pad>", "<unk>", "<eot>", "a"], **({"latent": 2} if name == "vhred" else {})}
            dialogues = [[torch.tensor([3, 3, EOT_ID]), torch.tensor([1, EOT_ID])], [torch.tensor([3, EOT_ID])]]
            out.append((name, lambda name=name, cfg=cfg: build_model(name, DataSpec("categorical", 4), cfg),
                        lambda model, d=dialogues: model.collate(d)))
        elif name == "ctc":
            audio = [torch.randn(1200, generator=torch.Generator().manual_seed(i)).numpy() for i in range(2)]
            out.append((name, lambda: build_model("ctc", DataSpec("categorical", 3),
                                                  {"conv_channels": 4, "hidden": 4, "layers": 1, "n_mels": 8}),
                        lambda model, a=audio: model.collate([(a[0], torch.tensor([0, 2])),
                                                              (a[1], torch.tensor([1]))])))
    return out


def check(device: torch.device) -> dict:
    report: dict = {"device": str(device), "torch": torch.__version__, "models": {}}
    if device.type == "cuda":
        report["device_name"] = torch.cuda.get_device_name(device)
    failures = 0
    started = time.perf_counter()
    for name, make_model, make_batch in _examples():
        torch.manual_seed(0)
        model = make_model()
        cpu_batch = make_batch(model)
        estimator = model.estimators[0]
        with torch.no_grad():
            cpu_values = model.eval().log_prob(cpu_batch, estimator=estimator, samples=3,
                                                generator=generator_for(model, 0)).values
        model.to(device)
        batch = cpu_batch.to(device)
        results = exercise_model(model, batch)
        with torch.no_grad():
            values = model.eval().log_prob(batch, estimator=estimator, samples=3,
                                            generator=generator_for(model, 0)).values
        diff = float((values.double().cpu() - cpu_values.double()).abs().max())
        bad = {k: v for k, v in results.items() if v != "ok"}
        failures += len(bad)
        report["models"][name] = {"ok": not bad, "failures": bad, "estimator": estimator,
                                  "max_abs_diff_vs_cpu": diff}
    report["failures"] = failures
    report["wall_s"] = round(time.perf_counter() - started, 1)
    return report


def main(args) -> int:
    if args.device:
        device = resolve_device(args.device)
    else:
        present = [d for d in available_devices() if d != "cpu"]
        device = resolve_device(present[0]) if present else None
    if device is None:
        print(json.dumps({"device": None, "reason": "no CUDA or MPS device on this machine", "failures": 0}))
        return 0
    report = check(device)
    print(json.dumps(report))
    return 1 if report["failures"] else 0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", help="cuda, cuda:N, mps or cpu (default: the first accelerator present)")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(main(parse_args()))
