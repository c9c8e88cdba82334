"""Chunk features: levels against a reference computed here, clipping, and the voice
activity detector on the shipped speech and silence samples, at rates it takes and not."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest

from engine.runtime.audio_features import SILENT_DBFS, dbfs, measure
from tests.conftest import fixture_path

SPEECH = fixture_path("audio-speech-16k.pcm").read_bytes()  # 0.5 s silence, speech, 0.5 s
SILENCE = fixture_path("audio-silence-16k.pcm").read_bytes()  # 2 s, dithered (-1, 0, 1)


def reference_dbfs(pcm: bytes) -> tuple[float, float]:
    """RMS and peak dBFS the long way, one sample at a time."""
    samples = [value for (value,) in struct.iter_unpack("<h", pcm)]
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    peak = max(abs(s) for s in samples)
    return 20 * math.log10(rms / 32768), 20 * math.log10(peak / 32768)


def resampled(pcm: bytes, rate: int, to: int) -> bytes:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    count = int(len(samples) * to / rate)
    positions = np.arange(count) * (rate / to)
    return np.round(np.interp(positions, np.arange(len(samples)), samples)).astype("<i2").tobytes()


@pytest.mark.parametrize("pcm", [SPEECH, SILENCE, SPEECH[16000:48000]])
def test_dbfs_matches_a_reference_within_half_a_db(pcm: bytes) -> None:
    features = measure(pcm, 16000)
    rms, peak = reference_dbfs(pcm)
    assert abs(features.rms_dbfs - rms) < 0.5
    assert abs(features.peak_dbfs - peak) < 0.5


def test_speech_is_speech_and_silence_is_not() -> None:
    assert measure(SPEECH[16000:-16000], 16000).speech_ratio > 0.9  # the spoken part
    assert measure(SPEECH, 16000).speech_ratio > 0.6
    assert measure(SILENCE, 16000).speech_ratio == 0.0


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 44100, 96000])
def test_speech_ratio_at_other_rates(rate: int) -> None:
    """8 kHz goes to the detector as it is; the others are resampled to 16 kHz for it."""
    speech = measure(resampled(SPEECH[16000:-16000], 16000, rate), rate)
    silence = measure(resampled(SILENCE, 16000, rate), rate)
    assert speech.speech_ratio > 0.8, rate
    assert silence.speech_ratio < 0.05, rate
    assert len(speech.voiced) == int(speech.duration_s / 0.03)


def test_clipping_duration_and_silence() -> None:
    pcm = struct.pack("<8h", 32767, -32768, 100, -100, 0, 0, 32767, 5)
    features = measure(pcm, 8000)
    assert features.clipped == 3 / 8
    assert features.peak_dbfs == 0.0
    assert features.duration_s == 8 / 8000
    assert features.voiced == b""  # shorter than one 30 ms frame: nothing judged
    zero = measure(b"\x00\x00" * 800, 8000)
    assert (zero.rms_dbfs, zero.peak_dbfs, zero.speech_ratio) == (SILENT_DBFS, SILENT_DBFS, 0.0)
    assert dbfs(32768) == 0.0
    assert round(dbfs(16384), 2) == -6.02
