"""A CTC speech recogniser: audio -> per-frame symbol distributions -> label sequences.

.. math:: p(l \\mid a) = \\mathrm{CTC}(l;\\; y_{1:T'}), \\qquad
          y_t = \\mathrm{softmax}(W h_t + b), \\qquad
          h_{1:T'} = \\mathrm{BiGRU}(\\mathrm{Conv}_{s}(\\mathrm{Conv}_1(\\hat f_{1:T}))),

where :math:`\\hat f_t` are log-mel (or MFCC) features of the audio :math:`a`
(:mod:`probseq.ctc.features`), standardised with training-set statistics, two 1-D convolutions
(kernel 5; the second with stride ``s``, so :math:`T' = \\lceil T / s \\rceil`) and a bidirectional
GRU (Graves, Mohamed & Hinton 2013, "Speech recognition with deep recurrent neural networks").
The symbols are the blank (index 0) and the dataset's labels (label ``k`` is symbol ``k + 1``).

The model is *conditional*: it scores and samples label sequences given audio, so the likelihood
it reports is the exact :math:`\\log p(l \\mid a)` (the CTC DP, no bound), counted per label, and
the unconditional ``sample()`` is refused; ``probseq sample RUN --prime clip.wav`` transcribes a
file and draws transcripts from :math:`p(l \\mid a)`. ``probseq evaluate RUN --metric ler`` reports
the label error rate (edit distance / reference length) of best-path and beam-search decoding.

Padding never changes a result: features past each input's end are zeroed before every
convolution and the GRU runs on packed sequences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from probseq.ctc import CTC, ctc_loss
from probseq.ctc.decode import edit_distance
from probseq.ctc.features import log_mel, mfcc, read_wav, resample
from probseq.data.spec import DataSpec
from probseq.device import model_device
from probseq.errors import UserError
from probseq.models.base import LogProb, SequenceModel
from probseq.models.registry import register_model
from probseq.precision import upcast

__all__ = ["SpeechBatch", "CTCRecognizer"]

_FEATURES = ("logmel", "mfcc")
#: beam search skips symbols below this per-frame log-probability (3e-7): a speed cut, not a bound
_BEAM_SYMBOL_THRESHOLD = -15.0


@dataclass(frozen=True)
class SpeechBatch:
    """Audio features and label sequences of a minibatch.

    Attributes:
        features: ``(B, T, F)`` float32, zero past ``feature_lengths``.
        feature_lengths: ``(B,)`` int64 feature frames of each input.
        labels: ``(B, S)`` int64 symbols (label + 1; the blank is 0), padded with 0.
        label_lengths: ``(B,)`` int64.
    """

    features: Tensor
    feature_lengths: Tensor
    labels: Tensor
    label_lengths: Tensor

    @property
    def batch_size(self) -> int:
        return self.features.shape[0]

    @property
    def n_frames(self) -> int:
        """The number of labels: likelihoods are reported per label."""
        return int(self.label_lengths.sum())

    @property
    def frames_per_example(self) -> Tensor:
        return self.label_lengths

    def to(self, device: torch.device | str) -> "SpeechBatch":
        return SpeechBatch(self.features.to(device), self.feature_lengths.to(device),
                           self.labels.to(device), self.label_lengths.to(device))


def _speech_example(example: Any) -> tuple[np.ndarray, Tensor]:
    """``(audio, labels)`` of a dataset example (an object with ``.audio`` and ``.labels``, or a pair)."""
    if hasattr(example, "audio") and hasattr(example, "labels"):
        return example.audio, torch.as_tensor(example.labels)
    if isinstance(example, (tuple, list)) and len(example) == 2:
        return np.asarray(example[0], dtype=np.float32), torch.as_tensor(example[1])
    raise UserError("model 'ctc' needs examples of (audio, labels), e.g. the 'fsdd' dataset; "
                    f"got {type(example).__name__}")


@register_model
class CTCRecognizer(SequenceModel):
    """Conv + bidirectional GRU encoder trained with CTC; exact conditional likelihood.

    Hyperparameters:
        features: ``logmel`` or ``mfcc``. n_mels: mel bands. n_mfcc: cepstra (for ``mfcc``).
        sample_rate: the audio rate the features are computed at (inputs are resampled to it).
        conv_channels: channels of the two convolutions. stride: time subsampling of the second.
        hidden: GRU state size per direction. layers: stacked bidirectional GRU layers.
        dropout: between GRU layers and before the output layer.
        collapse_repeats: the usual CTC (``True``) or the thesis variant (``False``).
        beam_width: prefix beam search width for decoding.
    """

    name = "ctc"
    conditional: ClassVar[bool] = True
    contract_example = None
    likelihood_kind = "exact"
    estimators = ("exact",)
    data_kinds = ("categorical",)
    hyperparameters: ClassVar[dict[str, Any]] = {
        "features": "logmel", "n_mels": 40, "n_mfcc": 13, "sample_rate": 8000,
        "conv_channels": 128, "stride": 2, "hidden": 128, "layers": 2, "dropout": 0.1,
        "collapse_repeats": True, "beam_width": 8,
    }
    training_defaults: ClassVar[dict[str, Any]] = {"lr": 2e-3, "batch_size": 32, "clip": 5.0,
                                                   "lr_schedule": "linear", "patience": 0}
    extra_metrics: ClassVar[tuple[str, ...]] = ("ler",)

    def __init__(self, spec: DataSpec, **hyper: Any) -> None:
        super().__init__(spec, **hyper)
        c = self.config
        if c["features"] not in _FEATURES:
            raise UserError(f"features must be one of {', '.join(_FEATURES)}, got {c['features']!r}")
        for key in ("n_mels", "conv_channels", "stride", "hidden", "layers", "sample_rate", "beam_width"):
            if int(c[key]) < 1:
                raise UserError(f"hyperparameter {key} must be positive, got {c[key]}")
        n_in = int(c["n_mfcc"] if c["features"] == "mfcc" else c["n_mels"])
        channels, hidden = int(c["conv_channels"]), int(c["hidden"])
        self.n_symbols = spec.dim + 1
        self.register_buffer("feature_mean", torch.zeros(n_in))
        self.register_buffer("feature_std", torch.ones(n_in))
        self.conv1 = nn.Conv1d(n_in, channels, 5, padding=2)
        self.conv2 = nn.Conv1d(channels, channels, 5, stride=int(c["stride"]), padding=2)
        self.rnn = nn.GRU(channels, hidden, int(c["layers"]), batch_first=True, bidirectional=True,
                          dropout=float(c["dropout"]) if int(c["layers"]) > 1 else 0.0)
        self.dropout = nn.Dropout(float(c["dropout"]))
        self.output = nn.Linear(2 * hidden, self.n_symbols)

    # ------------------------------------------------------------------ features and batches
    def features(self, signal: np.ndarray) -> np.ndarray:
        """``(T, F)`` features of a signal at ``sample_rate`` (un-normalised)."""
        c = self.config
        if c["features"] == "mfcc":
            return mfcc(signal, int(c["sample_rate"]), n_mfcc=int(c["n_mfcc"]), n_mels=int(c["n_mels"]))
        return log_mel(signal, int(c["sample_rate"]), n_mels=int(c["n_mels"]))

    def _batch(self, signals: list[np.ndarray], labels: list[Tensor]) -> SpeechBatch:
        feats = [torch.from_numpy(self.features(s)) for s in signals]
        lengths = torch.tensor([f.shape[0] for f in feats], dtype=torch.long)
        features = torch.zeros(len(feats), int(lengths.max()), feats[0].shape[1])
        for i, f in enumerate(feats):
            features[i, : f.shape[0]] = f
        label_lengths = torch.tensor([len(l) for l in labels], dtype=torch.long)
        padded = torch.zeros(len(labels), max(1, int(label_lengths.max())), dtype=torch.long)
        for i, l in enumerate(labels):
            if len(l) and (int(l.min()) < 0 or int(l.max()) >= self.spec.dim):
                raise UserError(f"labels must lie in [0, {self.spec.dim - 1}], got {l.tolist()}")
            padded[i, : len(l)] = l.long() + 1
        return SpeechBatch(features, lengths, padded, label_lengths).to(model_device(self))

    def validate_examples(self, examples: list[Any], where: str = "the data") -> None:
        """Every example must be audio (a non-empty finite 1-D signal) with labels in ``[0, K)``."""
        for i, example in enumerate(examples):
            audio, labels = _speech_example(example)
            audio = np.asarray(audio)
            if audio.ndim != 1 or audio.size == 0 or not np.isfinite(audio).all():
                raise UserError(f"example {i} of {where}: the audio must be a non-empty finite 1-D signal, "
                                f"got shape {audio.shape}")
            if labels.dim() != 1 or labels.dtype.is_floating_point:
                raise UserError(f"example {i} of {where}: labels must be a 1-D integer sequence")
            if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.spec.dim):
                raise UserError(f"example {i} of {where}: labels must lie in [0, {self.spec.dim - 1}], "
                                f"got {labels.tolist()}")

    def collate(self, examples: list[Any]) -> SpeechBatch:
        if not examples:
            raise UserError("cannot build a batch from zero examples")
        pairs = [_speech_example(e) for e in examples]
        return self._batch([a for a, _ in pairs], [l for _, l in pairs])

    def prepare(self, dataset: Any) -> None:
        """Standardise features with the mean and standard deviation of (up to 400) training inputs."""
        train = dataset.split("train")
        step = max(1, len(train) // 400)
        feats = np.concatenate([self.features(_speech_example(e)[0]) for e in train[::step]])
        self.feature_mean.copy_(torch.from_numpy(feats.mean(0)))
        self.feature_std.copy_(torch.from_numpy(feats.std(0)).clamp_min(1e-3))

    # ------------------------------------------------------------------ encoder
    def encode(self, features: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Per-frame log-probabilities ``(B, T', C)`` and output lengths ``(B,)``."""
        steps = torch.arange(features.shape[1], device=features.device)
        mask = (steps.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(1)            # (B, 1, T)
        x = ((features - self.feature_mean) / self.feature_std).transpose(1, 2)     # (B, F, T)
        x = torch.where(mask, x, x.new_zeros(()))
        x = torch.where(mask, torch.relu(self.conv1(x)), x.new_zeros(()))
        x = torch.relu(self.conv2(x))
        stride = int(self.config["stride"])
        out_lengths = (lengths - 1) // stride + 1
        packed = pack_padded_sequence(x.transpose(1, 2), out_lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        h, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True, total_length=x.shape[2])
        # the normaliser in float32 even when the layers ran under bf16/fp16 autocast
        return upcast(self.output(self.dropout(h))).log_softmax(-1), out_lengths

    def _per_sequence(self, batch: SpeechBatch, zero_infinity: bool) -> Tensor:
        log_probs, out_lengths = self.encode(batch.features, batch.feature_lengths)
        return ctc_loss(log_probs.transpose(0, 1), batch.labels, out_lengths, batch.label_lengths,
                        blank=0, reduction="none", zero_infinity=zero_infinity,
                        collapse_repeats=bool(self.config["collapse_repeats"]))

    # ------------------------------------------------------------------ likelihood and training
    def log_prob(self, batch: SpeechBatch, *, estimator=None, samples=None, generator=None) -> LogProb:
        """Exact :math:`\\log p(l \\mid a)` of every example, ``(B,)``."""
        estimator = self.check_estimator(estimator)
        return LogProb(-self._per_sequence(batch, zero_infinity=False), "exact", estimator)

    def loss(self, batch: SpeechBatch, *, generator=None) -> Tensor:
        """Pooled NLL per label; an input too short for its labels contributes 0 (``zero_infinity``)."""
        return self._per_sequence(batch, zero_infinity=True).sum() / max(1, batch.n_frames)

    def distribution(self, batch: SpeechBatch) -> CTC:
        """The CTC distribution over symbol sequences for each input of ``batch``."""
        log_probs, out_lengths = self.encode(batch.features, batch.feature_lengths)
        return CTC(log_probs, out_lengths, blank=0, collapse_repeats=bool(self.config["collapse_repeats"]))

    # ------------------------------------------------------------------ metrics
    def transcribe(self, batch: SpeechBatch, *, beam_width: int | None = None) -> dict[str, list]:
        """Best-path and beam-search transcripts (label lists) and the beam's exact log-probabilities."""
        dist = self.distribution(batch)
        labels, lengths = dist.best_path()
        best = [[s - 1 for s in labels[i, : int(n)].tolist()] for i, n in enumerate(lengths)]
        width = int(beam_width or self.config["beam_width"])
        beams = dist.beam_search(width, symbol_threshold=_BEAM_SYMBOL_THRESHOLD)
        beam = [[s - 1 for s in hyps[0][0]] if hyps else [] for hyps in beams]
        scores = [hyps[0][1] if hyps else float("-inf") for hyps in beams]
        return {"best_path": best, "beam": beam, "beam_log_prob": scores}

    def evaluate_metric(self, metric: str, examples: list[Any], *, generator: torch.Generator,
                        batch_size: int) -> dict[str, Any]:
        """``ler``: label error rate (summed edit distance / summed reference length), by best-path
        and by beam-search decoding, plus the sequence error rates."""
        if metric not in self.extra_metrics:
            raise UserError(f"model 'ctc' has no metric {metric!r}; it has {', '.join(self.extra_metrics)}")
        errors = {"best_path": 0, "beam": 0}
        wrong = {"best_path": 0, "beam": 0}
        n_labels = 0
        self.eval()
        with torch.no_grad():
            for start in range(0, len(examples), batch_size):
                chunk = examples[start:start + batch_size]
                batch = self.collate(chunk)
                decoded = self.transcribe(batch)
                for i, example in enumerate(chunk):
                    reference = _speech_example(example)[1].tolist()
                    n_labels += len(reference)
                    for kind in errors:
                        d = edit_distance(decoded[kind][i], reference)
                        errors[kind] += d
                        wrong[kind] += d > 0
        n = len(examples)
        return {
            "ler": errors["beam"] / max(1, n_labels),
            "ler_best_path": errors["best_path"] / max(1, n_labels),
            "ler_beam": errors["beam"] / max(1, n_labels),
            "ser_best_path": wrong["best_path"] / max(1, n),
            "ser_beam": wrong["beam"] / max(1, n),
            "beam_width": int(self.config["beam_width"]),
            "n_labels": n_labels, "n_sequences": n,
        }

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, **kwargs) -> Any:
        raise UserError("model 'ctc' is conditional: it transcribes audio and samples transcripts "
                        "given audio; use `probseq sample RUN --prime recording.wav -n N`")

    def sample_from_prime_file(self, path: str, *, n: int, temperature: float,
                               generator: torch.Generator, meta: dict[str, Any],
                               max_length: int | None = None) -> str:
        """Transcribe a wav file (beam search and best path) and draw ``n`` transcripts from
        :math:`p(l \\mid a)` at ``temperature``, each with its exact log-probability (at temperature 1)."""
        if not str(path).lower().endswith(".wav"):
            raise UserError(f"model 'ctc' reads --prime audio from a .wav file, got {path}")
        signal, rate = read_wav(path)
        signal = resample(signal, rate, int(self.config["sample_rate"]))
        alphabet = str(meta.get("alphabet", "")) or None
        spell = (lambda ls: "".join(alphabet[s] for s in ls)) if alphabet and len(alphabet) >= self.spec.dim \
            else (lambda ls: " ".join(str(s) for s in ls))
        self.eval()
        with torch.no_grad():
            batch = self._batch([signal], [torch.zeros(0, dtype=torch.long)])
            dist = self.distribution(batch)
            decoded = self.transcribe(batch)
            labels, lengths = dist.sample((n,), temperature=temperature, generator=generator)
            scores = dist.log_prob(labels, lengths)
        lines = [f"{path}: {signal.size / float(self.config['sample_rate']):.2f} s of audio",
                 f"transcript (beam search, width {self.config['beam_width']}): "
                 f"{spell(decoded['beam'][0]) or '(empty)'}    log p = {decoded['beam_log_prob'][0]:.3f}",
                 f"transcript (best path): {spell(decoded['best_path'][0]) or '(empty)'}",
                 f"{n} sample(s) from p(labels | audio) at temperature {temperature:g}:"]
        for i in range(n):
            seq = [s - 1 for s in labels[i, 0, : int(lengths[i, 0])].tolist()]
            lines.append(f"  {spell(seq) or '(empty)':24s} log p = {float(scores[i, 0]):.3f}")
        return "\n".join(lines)
