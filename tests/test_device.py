"""Devices: the ``--device`` resolver, and every model keeping its tensors on its parameters' device.

No GPU is needed: :func:`probseq.testing.device_audit.stray_tensors_on_meta` makes ``meta`` the
default device while a CPU model runs, so any tensor created without ``device=`` (the bug that
breaks ``model.to("cuda")``) makes the call fail here. The same contract runs on real accelerators
in ``tests/test_model_contract.py`` (parametrised over present devices) and
``benchmarks/device_check.py``.
"""

from __future__ import annotations

import pytest
import torch

from probseq.cli import main
from probseq.data.spec import DataSpec
from probseq.device import available_devices, generator_for, model_device, resolve_device
from probseq.errors import UserError
from probseq.models.registry import build_model, model_class, model_names
from probseq.testing.device_audit import exercise_model, stray_tensors_on_meta
from probseq.testing.enumerate import random_batch

pytestmark = pytest.mark.usefixtures("one_thread")

FRAME_MODELS = [n for n in model_names()
                if not getattr(model_class(n), "conditional", False) and model_class(n).contract_example]


def test_auto_and_cpu_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert "cpu" in available_devices()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the refusal needs one without")
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "CUDA:1"])
def test_absent_cuda_is_one_clear_sentence(name):
    with pytest.raises(UserError, match="CUDA is not available") as info:
        resolve_device(name)
    assert "\n" not in str(info.value)


# without CUDA, cuda:x is refused for the missing CUDA first (the test above)
@pytest.mark.parametrize("name", ["gpu", "tpu"] + (["cuda:x"] if torch.cuda.is_available() else []))
def test_unknown_device_names_are_refused(name):
    with pytest.raises(UserError):
        resolve_device(name)


def test_generator_lives_on_the_model_device():
    model = build_model("gru", DataSpec("binary", 3), {"hidden": 4})
    g = generator_for(model, 5)
    assert g.device == model_device(model) == torch.device("cpu")
    assert g.initial_seed() == 5


def test_the_audit_catches_a_tensor_made_without_device():
    """The check must be able to fail: a deliberately device-less ``torch.ones`` is caught."""
    x = torch.randn(3)
    with stray_tensors_on_meta():
        torch.testing.assert_close(x * 2, x + x)            # device-correct code still runs
        with pytest.raises((RuntimeError, NotImplementedError)):
            float((x + torch.ones(3)).sum())


@pytest.mark.parametrize("name", FRAME_MODELS)
def test_every_entry_point_keeps_to_the_model_device(name):
    cls = model_class(name)
    torch.manual_seed(0)
    model = build_model(name, cls.contract_example["spec"], dict(cls.contract_example.get("hyper", {})))
    batch = random_batch(cls.contract_example["spec"], [5, 2, 7])
    results = exercise_model(model, batch, on_meta=True)
    failures = {k: v for k, v in results.items() if v != "ok"}
    assert not failures, f"{name} creates tensors off its parameters' device: {failures}"


def _dialogue_model(name):
    from probseq.text import EOT_ID

    torch.manual_seed(0)
    cfg = {"embedding": 3, "encoder_hidden": 4, "context_hidden": 4, "decoder_hidden": 4,
           "vocab": ["<pad>", "<unk>", "<eot>", "a"], "word_dropout": 0.1}
    if name == "vhred":
        cfg["latent"] = 2
    model = build_model(name, DataSpec("categorical", 4), cfg)
    dialogues = [[torch.tensor([3, 3, EOT_ID]), torch.tensor([1, EOT_ID])], [torch.tensor([3, EOT_ID])]]
    return model, model.collate(dialogues)


@pytest.mark.parametrize("name", ["hred", "vhred"])
def test_dialogue_models_keep_to_the_model_device(name):
    model, batch = _dialogue_model(name)
    results = exercise_model(model, batch, on_meta=True)
    failures = {k: v for k, v in results.items() if v != "ok"}
    assert not failures, f"{name} creates tensors off its parameters' device: {failures}"
    with stray_tensors_on_meta():
        model.sample(2, length=2, generator=generator_for(model, 0))


def test_ctc_recognizer_keeps_to_the_model_device():
    torch.manual_seed(0)
    model = build_model("ctc", DataSpec("categorical", 3),
                        {"conv_channels": 4, "hidden": 4, "layers": 1, "n_mels": 8, "beam_width": 2})
    g = torch.Generator().manual_seed(0)
    audio = [torch.randn(1200, generator=g).numpy() for _ in range(2)]
    batch = model.collate([(audio[0], torch.tensor([0, 2])), (audio[1], torch.tensor([1]))])
    results = exercise_model(model, batch, on_meta=True)
    failures = {k: v for k, v in results.items() if v != "ok"}
    assert not failures, f"ctc creates tensors off its parameters' device: {failures}"
    with stray_tensors_on_meta():
        model.transcribe(batch)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; the refusal needs one without")
def test_fit_on_an_absent_device_exits_with_one_sentence(tmp_path, capsys):
    code = main(["fit", "gru", "--data", "jsb", "--steps", "1", "--device", "cuda", "--quiet",
                 "--out", str(tmp_path / "run")])
    assert code == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "CUDA is not available" in lines[0], err
    assert not (tmp_path / "run").exists()
