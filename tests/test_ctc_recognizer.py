"""The conditional model ``ctc`` (audio -> labels): its own contract tests, metrics and the CLI.

The generic model tests skip it (``conditional = True``); these are their equivalents: log_prob
shape/kind/finiteness, padding invariance (batched == one at a time), agreement with an
independent CTC implementation on the encoder's output, save/load round trip, clear refusals.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probseq.ctc import CTC
from probseq.ctc.decode import edit_distance
from probseq.data.spec import DataSpec
from probseq.errors import UserError
from probseq.models.registry import build_model, model_class
from probseq.testing import ctc_oracle

TINY = {"hidden": 8, "conv_channels": 8, "layers": 2, "n_mels": 16, "stride": 2, "dropout": 0.0}


def _examples(n=5, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        audio = (0.1 * rng.standard_normal(int(rng.integers(1500, 5000)))).astype(np.float32)
        labels = torch.tensor(rng.integers(0, 10, int(rng.integers(0 if i == 0 else 1, 4))), dtype=torch.long)
        out.append((audio, labels))
    return out


def _model(**extra):
    torch.manual_seed(0)
    model = build_model("ctc", DataSpec("categorical", 10), {**TINY, **extra})
    model.eval()
    return model


def test_declared_conditional_with_exact_likelihood():
    cls = model_class("ctc")
    assert cls.conditional is True and cls.contract_example is None
    assert cls.likelihood_kind == "exact" and "ler" in cls.extra_metrics


@pytest.mark.parametrize("collapse_repeats", [True, False])
def test_log_prob_is_exact_ctc_of_the_encoder_output(collapse_repeats):
    model = _model(collapse_repeats=collapse_repeats)
    examples = _examples()
    batch = model.collate(examples)
    assert batch.batch_size == 5 and batch.n_frames == sum(len(l) for _, l in examples)
    with torch.no_grad():
        result = model.log_prob(batch)
        log_probs, lengths = model.encode(batch.features, batch.feature_lengths)
    assert result.kind == "exact" and result.estimator == "exact" and result.values.shape == (5,)
    assert torch.isfinite(result.values).all() and (result.values <= 0).all()
    if collapse_repeats:        # against torch's kernel, an independent implementation
        reference = -F.ctc_loss(log_probs.transpose(0, 1).double(), batch.labels, lengths,
                                batch.label_lengths, reduction="none")
        torch.testing.assert_close(result.values.double(), reference, rtol=1e-4, atol=1e-3)
    # the second example's output cut to 3 frames is short enough to enumerate all 11^3 paths
    short = log_probs[1, :3].double().log_softmax(-1)
    labels = tuple(batch.labels[1, : int(batch.label_lengths[1])].tolist())
    assert float(CTC(short, collapse_repeats=collapse_repeats).log_prob(torch.tensor(labels))) == pytest.approx(
        ctc_oracle.log_prob(short, labels, collapse_repeats=collapse_repeats), abs=1e-9)


def test_padding_never_changes_a_result():
    model = _model()
    examples = _examples(seed=1)
    with torch.no_grad():
        batched = model.log_prob(model.collate(examples)).values
        single = torch.cat([model.log_prob(model.collate([e])).values for e in examples])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-4)


def test_loss_trains_and_prepare_standardises():
    model = _model()

    class _Data:
        def split(self, name):
            return _examples(8, seed=2)

    model.prepare(_Data())
    feats = np.concatenate([model.features(a) for a, _ in _examples(8, seed=2)])
    normalised = (feats - model.feature_mean.numpy()) / model.feature_std.numpy()
    assert np.abs(normalised.mean(0)).max() < 1e-3 and np.abs(normalised.std(0) - 1).max() < 1e-2
    model.train()
    batch = model.collate(_examples(seed=3))
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_save_and_load_round_trip():
    model = _model()
    model.feature_mean.fill_(0.5)
    state = model.state_dict()
    clone = build_model("ctc", DataSpec("categorical", 10), dict(model.config))
    clone.load_state_dict(state)
    clone.eval()
    batch = model.collate(_examples(seed=4))
    with torch.no_grad():
        torch.testing.assert_close(clone.log_prob(batch).values, model.log_prob(batch).values)


def test_metrics_sampling_and_refusals(tmp_path):
    model = _model()
    metrics = model.evaluate_metric("ler", _examples(seed=5), generator=torch.Generator().manual_seed(0),
                                    batch_size=2)
    assert set(metrics) >= {"ler", "ler_best_path", "ler_beam", "n_labels"}
    assert metrics["ler"] >= 0 and metrics["n_labels"] == sum(len(l) for _, l in _examples(seed=5))
    with pytest.raises(UserError, match="conditional"):
        model.sample(3)
    with pytest.raises(UserError, match="no metric"):
        model.evaluate_metric("wer", [], generator=torch.Generator(), batch_size=1)
    import wave
    with wave.open(str(tmp_path / "clip.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(8000) / 5.0) * 8000).astype("<i2").tobytes())
    text = model.sample_from_prime_file(str(tmp_path / "clip.wav"), n=3, temperature=1.0,
                                        generator=torch.Generator().manual_seed(0),
                                        meta={"alphabet": "0123456789"})
    assert "transcript (beam search" in text and "transcript (best path)" in text
    assert len(text.splitlines()) == 4 + 3
    with pytest.raises(UserError, match=".wav"):
        model.sample_from_prime_file(str(tmp_path / "clip.txt"), n=1, temperature=1.0,
                                     generator=torch.Generator(), meta={})
    with pytest.raises(UserError, match="labels must lie"):
        model.collate([(np.zeros(2000, dtype=np.float32), torch.tensor([10]))])
    with pytest.raises(UserError, match="example 1 of the data: the audio"):
        model.validate_examples([(np.zeros(20, dtype=np.float32), torch.tensor([1])),
                                 (np.array([np.nan], dtype=np.float32), torch.tensor([1]))])
    with pytest.raises(UserError, match="features"):
        build_model("ctc", DataSpec("categorical", 10), {"features": "spectrogram"})


def test_edit_distance():
    assert edit_distance([], []) == 0
    assert edit_distance([1, 2, 3], []) == 3 and edit_distance([], [4, 5]) == 2
    assert edit_distance([1, 2, 3], [1, 3]) == 1            # one deletion
    assert edit_distance([1, 2, 3], [1, 4, 3]) == 1         # one substitution
    assert edit_distance([3, 1, 2], [1, 2, 3]) == 2
    assert edit_distance([7, 8, 9, 7], [8, 9, 7, 7, 1]) == 3


def test_command_line_fit_evaluate_sample(tmp_path):
    from test_ctc_fsdd import write_fake_fsdd

    from probseq.cli import main

    folder = write_fake_fsdd(tmp_path / "rec", speakers=("ann",), takes=range(0, 11), digits=(1, 2, 3))
    run = tmp_path / "run"
    sets = [f"--set={k}={v}" for k, v in TINY.items()] + ["--set=train_passes=1", "--set=eval_every=2"]
    assert main(["fit", "ctc", "--data", "fsdd", "--data-dir", str(folder), "--steps", "2",
                 "--out", str(run), "--quiet", "--threads", "1", *sets]) == 0
    assert main(["evaluate", str(run), "--json", "--metric", "ler"]) == 0
    assert main(["evaluate", str(run), "--json"]) == 0
    assert main(["sample", str(run), "-n", "2", "--prime", str(folder / "1_ann_0.wav")]) == 0
    assert main(["sample", str(run), "-n", "2", "--out", str(tmp_path / "x.npz")]) == 2
