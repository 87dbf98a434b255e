"""Speech features (probseq.ctc.features) against direct computations."""

from __future__ import annotations

import wave

import numpy as np
import pytest
from scipy.fft import dct

from probseq.ctc.features import (frame_count, hz_to_mel, log_mel, mel_filterbank, mel_to_hz, mfcc,
                                  power_spectrum, read_wav, resample)
from probseq.errors import UserError


def _write_wav(path, samples_int16: np.ndarray, rate: int, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples_int16.astype("<i2").tobytes())


def test_power_spectrum_equals_a_direct_dft():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000)
    rate, window, hop = 8000, 200, 80                      # 25 ms / 10 ms at 8 kHz
    power = power_spectrum(x, rate)
    assert power.shape == (frame_count(1000, window, hop), 129)
    emphasised = np.concatenate([x[:1], x[1:] - 0.97 * x[:-1]])
    n = np.arange(window)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / window)      # periodic Hann
    k = np.arange(129)[:, None]
    basis = np.exp(-2j * np.pi * k * n[None] / 256)        # zero-padded to n_fft = 256
    for t in (0, 3, power.shape[0] - 1):
        frame = emphasised[t * hop: t * hop + window] * hann
        np.testing.assert_allclose(power[t], np.abs(basis @ frame) ** 2, rtol=1e-9, atol=1e-9)


def test_frame_count_and_short_signals():
    assert frame_count(200, 200, 80) == 1 and frame_count(280, 200, 80) == 2 and frame_count(279, 200, 80) == 1
    assert frame_count(10, 200, 80) == 1
    assert log_mel(np.ones(10, dtype=np.float32), 8000).shape == (1, 40)
    with pytest.raises(UserError, match="empty"):
        log_mel(np.zeros(0), 8000)
    with pytest.raises(UserError, match="NaN"):
        log_mel(np.array([0.0, np.nan] * 200), 8000)


def test_mel_scale_and_filterbank_partition_of_unity():
    assert float(mel_to_hz(hz_to_mel(1234.5))) == pytest.approx(1234.5)
    assert float(hz_to_mel(1000.0)) == pytest.approx(1000.0, rel=2e-3)   # the scale's anchor
    bank = mel_filterbank(40, 256, 8000, 20.0, None)
    assert bank.shape == (40, 129) and (bank >= 0).all() and bank.max() <= 1.0
    edges = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(4000.0), 42))
    freqs = np.linspace(0, 4000, 129)
    inside = (freqs >= edges[1]) & (freqs <= edges[-2])
    # neighbouring triangles cross-fade: between the first and last centre they sum to one
    np.testing.assert_allclose(bank[:, inside].sum(0), 1.0, atol=1e-12)
    assert (bank[:, freqs < edges[0]] == 0).all()


def test_a_pure_tone_peaks_in_its_own_band():
    rate, f0 = 8000, 1000.0
    t = np.arange(4000) / rate
    feats = log_mel(np.sin(2 * np.pi * f0 * t).astype(np.float32), rate)
    centres = mel_to_hz(np.linspace(hz_to_mel(20.0), hz_to_mel(4000.0), 42))[1:-1]
    assert abs(centres[int(np.median(feats.argmax(1)))] - f0) < 0.5 * np.diff(centres).max()


def test_mfcc_is_the_orthonormal_dct_of_log_mel():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3000).astype(np.float32)
    lm = log_mel(x, 8000).astype(np.float64)
    c = mfcc(x, 8000, n_mfcc=13)
    assert c.shape == (lm.shape[0], 13)
    np.testing.assert_allclose(c[:, 0], lm.sum(1) / np.sqrt(40), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(c, dct(lm, type=2, norm="ortho", axis=1)[:, :13], rtol=1e-4, atol=1e-3)
    with pytest.raises(UserError, match="n_mfcc"):
        mfcc(x, 8000, n_mfcc=41)


def test_read_wav_and_resample(tmp_path):
    rng = np.random.default_rng(2)
    left = rng.integers(-30000, 30000, 1600)
    right = rng.integers(-30000, 30000, 1600)
    stereo = np.stack([left, right], 1).reshape(-1)
    _write_wav(tmp_path / "s.wav", stereo, 16000, channels=2)
    signal, rate = read_wav(tmp_path / "s.wav")
    assert rate == 16000 and signal.dtype == np.float32 and signal.shape == (1600,)
    np.testing.assert_allclose(signal, (left + right) / 2 / 32768.0, atol=1e-6)
    tone = np.sin(2 * np.pi * 500 * np.arange(16000) / 16000).astype(np.float32)
    down = resample(tone, 16000, 8000)
    assert down.shape == (8000,)
    np.testing.assert_allclose(down[100:-100], np.sin(2 * np.pi * 500 * np.arange(8000) / 8000)[100:-100],
                               atol=1e-3)
    (tmp_path / "bad.wav").write_bytes(b"not a wav at all")
    with pytest.raises(UserError, match="not a PCM wav"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(UserError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
