"""Chunk features: levels against a reference computed here, clipping, and the voice
activity detector on the shipped speech and silence samples, at rates it takes and not."""

from __future__ import annotations

import math
import struct
import tracemalloc

import numpy as np
import pytest

from engine.runtime.audio_features import SILENT_DBFS, dbfs, measure, voiced_frames
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


def whole_chunk_voiced(samples: np.ndarray, rate: int) -> bytes:
    """The verdicts with the whole chunk resampled at once (the way before blocks)."""
    import webrtcvad

    if rate not in (8000, 16000, 32000, 48000):
        count = int(len(samples) * 16000 / rate)
        if rate > 16000:
            bounds = (np.arange(count + 1, dtype=np.float64) * (rate / 16000)).astype(np.int64)
            sums = np.concatenate(([0], np.cumsum(samples, dtype=np.int64)))
            values = (sums[bounds[1:]] - sums[bounds[:-1]]) / np.diff(bounds)
        else:
            positions = np.arange(count, dtype=np.float64) * (rate / 16000)
            values = np.interp(positions, np.arange(len(samples)), samples.astype(np.float64))
        samples, rate = np.round(values).astype("<i2"), 16000
    data, step, vad = samples.tobytes(), rate * 3 // 100 * 2, webrtcvad.Vad(2)
    return bytes(
        vad.is_speech(data[i : i + step], rate) for i in range(0, len(data) - step + 1, step)
    )


@pytest.mark.parametrize("rate", [1000, 8000, 11025, 44100, 96000])
def test_blocks_judge_exactly_as_the_whole_chunk(rate: int) -> None:
    """Resampling and judging 30 s at a time gives the verdicts of doing it all at once,
    across block boundaries too (70 s of speech and silence)."""
    pcm = resampled((SPEECH + SILENCE) * 14, 16000, rate)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert voiced_frames(samples, rate) == whole_chunk_voiced(samples, rate)


def test_a_low_rate_chunk_takes_bounded_memory() -> None:
    """12 MiB at 1 kHz is 6,291 s of audio, 16 times as many samples once resampled: the
    blocks keep the peak of what measuring allocates under 32 MiB (it was 2.5 GB)."""
    pcm = np.random.default_rng(1).integers(-3000, 3000, 6 * 2**20, dtype=np.int16).tobytes()
    tracemalloc.start()
    try:
        features = measure(pcm, 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(features.voiced) == int(6 * 2**20 / 1000 / 0.03)
    assert peak < 32 * 2**20
