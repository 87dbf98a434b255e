"""Speech features with numpy/scipy: wav reading, log-mel filterbank energies, MFCCs.

For a signal :math:`x` at rate :math:`f_s`, frame :math:`t` is :math:`x[tH : tH + N_w]` (hop
:math:`H`, window length :math:`N_w`; the signal is zero-padded to at least one full frame),
pre-emphasised (:math:`x_n - a x_{n-1}`), multiplied by a Hann window and zero-padded to
:math:`N_{fft}`, the next power of two. Then

.. math:: P_t(k) = |\\mathrm{DFT}(x_t)(k)|^2, \\qquad
          \\mathrm{logmel}_t(m) = \\log\\big(\\varepsilon + \\textstyle\\sum_k W_{mk} P_t(k)\\big),

with triangular filters :math:`W` equally spaced on the HTK mel scale
:math:`\\mathrm{mel}(f) = 2595 \\log_{10}(1 + f/700)` between ``fmin`` and ``fmax``, and
:math:`\\mathrm{MFCC}_t = \\mathrm{DCT\\text{-}II}_{ortho}(\\mathrm{logmel}_t)[:n]`
(Davis & Mermelstein 1980; Young et al., The HTK Book, §5.4).

Shapes: ``(n_samples,)`` float signal in; ``(T, n_mels)`` or ``(T, n_mfcc)`` float32 out, with
:math:`T = 1 + \\lfloor (\\max(n, N_w) - N_w) / H \\rfloor`. Cost :math:`O(T N_{fft} \\log N_{fft})`.
"""

from __future__ import annotations

import wave
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from scipy.fft import dct, rfft
from scipy.signal import get_window, resample_poly

from probseq.errors import UserError

__all__ = ["read_wav", "resample", "frame_count", "mel_filterbank", "power_spectrum", "log_mel", "mfcc",
           "hz_to_mel", "mel_to_hz"]


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """A PCM wav file as float32 samples in ``[-1, 1)`` (channels averaged) and its sample rate."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise UserError(f"no such file: {path}") from None
    except (wave.Error, EOFError) as err:
        raise UserError(f"{path} is not a PCM wav file ({err})") from None
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        samples = (np.frombuffer(raw, dtype="<i4").astype(np.float64) / 2.0 ** 31).astype(np.float32)
    else:
        raise UserError(f"{path}: {8 * width}-bit wav samples are not supported (8, 16 or 32-bit PCM are)")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(1)
    if samples.size == 0:
        raise UserError(f"{path} holds no audio samples")
    return samples, rate


def resample(signal: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling from ``rate`` to ``target`` Hz (anti-aliased; scipy ``resample_poly``)."""
    if rate == target:
        return signal
    g = np.gcd(int(rate), int(target))
    return resample_poly(signal, target // g, rate // g).astype(np.float32)


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def mel_filterbank(n_mels: int, n_fft: int, sample_rate: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """``(n_mels, n_fft // 2 + 1)`` triangular filters; filter ``m`` rises from centre ``m - 1`` to
    1 at centre ``m`` and falls to 0 at centre ``m + 1`` (centres equally spaced in mel)."""
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise UserError(f"mel band edges must satisfy 0 <= fmin < fmax <= {sample_rate / 2}, got {fmin}, {fmax}")
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    bins = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    weights.setflags(write=False)
    return weights


def frame_count(n_samples: int, window: int, hop: int) -> int:
    return 1 + (max(n_samples, window) - window) // hop


def power_spectrum(signal: np.ndarray, sample_rate: int, *, frame_ms: float = 25.0, hop_ms: float = 10.0,
                   preemphasis: float = 0.97) -> np.ndarray:
    """``(T, n_fft // 2 + 1)`` power spectra of Hann-windowed, pre-emphasised frames."""
    x = np.asarray(signal, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise UserError("cannot compute features of an empty signal")
    if not np.isfinite(x).all():
        raise UserError("the audio signal contains NaN or infinite samples")
    window = int(round(sample_rate * frame_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    n_fft = 1 << (window - 1).bit_length()
    if preemphasis:
        x = np.concatenate([x[:1], x[1:] - preemphasis * x[:-1]])
    steps = frame_count(x.size, window, hop)
    x = np.pad(x, (0, max(0, window + (steps - 1) * hop - x.size)))
    frames = np.lib.stride_tricks.sliding_window_view(x, window)[::hop][:steps]
    spectrum = rfft(frames * get_window("hann", window, fftbins=True), n=n_fft, axis=1)
    return spectrum.real ** 2 + spectrum.imag ** 2


def log_mel(signal: np.ndarray, sample_rate: int, *, n_mels: int = 40, frame_ms: float = 25.0,
            hop_ms: float = 10.0, fmin: float = 20.0, fmax: float | None = None,
            preemphasis: float = 0.97, floor: float = 1e-10) -> np.ndarray:
    """``(T, n_mels)`` float32 log mel-filterbank energies (see the module docstring)."""
    power = power_spectrum(signal, sample_rate, frame_ms=frame_ms, hop_ms=hop_ms, preemphasis=preemphasis)
    n_fft = 2 * (power.shape[1] - 1)
    bank = mel_filterbank(n_mels, n_fft, int(sample_rate), float(fmin), None if fmax is None else float(fmax))
    # the projection runs in torch: numpy's threaded BLAS can stall for milliseconds on tiny
    # products when the machine is oversubscribed, and torch follows torch.set_num_threads
    energies = torch.from_numpy(power.astype(np.float32)) @ torch.from_numpy(bank.astype(np.float32)).T
    return np.log(floor + energies.numpy()).astype(np.float32)


def mfcc(signal: np.ndarray, sample_rate: int, *, n_mfcc: int = 13, n_mels: int = 40, **kwargs) -> np.ndarray:
    """``(T, n_mfcc)`` float32 cepstral coefficients: orthonormal DCT-II of :func:`log_mel`."""
    if not 1 <= n_mfcc <= n_mels:
        raise UserError(f"n_mfcc must lie in [1, n_mels = {n_mels}], got {n_mfcc}")
    return dct(log_mel(signal, sample_rate, n_mels=n_mels, **kwargs).astype(np.float64),
               type=2, norm="ortho", axis=1)[:, :n_mfcc].astype(np.float32)
