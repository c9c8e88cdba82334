"""What one chunk of PCM16 audio sounds like: level, clipping and voice activity.

Computed once per chunk, in the rules thread, and bounded by the chunk (the body limit caps
it). Voice activity comes from WebRTC's detector (webrtcvad-wheels): it takes 10-30 ms frames
at 8, 16, 32 or 48 kHz, so audio at any other rate is resampled to 16 kHz first (block means
going down, linear interpolation going up: enough to tell speech from silence, not meant
for listening).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import webrtcvad

FRAME_MS = 30  # the detector's longest frame: fewest calls, steadiest verdicts
VAD_RATES = (8000, 16000, 32000, 48000)
FULL_SCALE = 32768.0
SILENT_DBFS = -120.0  # the level reported for digital silence (log of 0 has none)
DEFAULT_VAD_MODE = 2  # 0 (lenient) .. 3 (strict) about what counts as speech


@dataclass(frozen=True)
class ChunkFeatures:
    """One chunk, measured. `voiced` has one byte per FRAME_MS frame: 1 speech, 0 not (a
    last partial frame is not judged)."""

    samples: int
    duration_s: float
    rms_dbfs: float
    peak_dbfs: float
    clipped: float  # share of samples at full scale (-32768 or 32767)
    speech_ratio: float  # share of frames the detector calls speech
    voiced: bytes
    peak: int
    rms: float


def dbfs(level: float) -> float:
    """A level (0..32768) in dB relative to full scale, SILENT_DBFS for silence."""
    if level <= 0:
        return SILENT_DBFS
    return max(SILENT_DBFS, 20 * math.log10(level / FULL_SCALE))


def _for_detector(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """The samples at a rate the detector takes: as they are, or resampled to 16 kHz."""
    if rate in VAD_RATES or not len(samples):
        return samples, rate
    target = 16000
    count = int(len(samples) * target / rate)
    if rate > target:  # each output sample: the mean of the input samples it covers
        bounds = (np.arange(count + 1, dtype=np.float64) * (rate / target)).astype(np.int64)
        sums = np.concatenate(([0], np.cumsum(samples, dtype=np.int64)))
        resampled = (sums[bounds[1:]] - sums[bounds[:-1]]) / np.diff(bounds)
    else:  # upsampling: between neighbours
        positions = np.arange(count, dtype=np.float64) * (rate / target)
        resampled = np.interp(positions, np.arange(len(samples)), samples.astype(np.float64))
    return np.round(resampled).astype("<i2"), target


def voiced_frames(samples: np.ndarray, rate: int, mode: int = DEFAULT_VAD_MODE) -> bytes:
    """One byte per FRAME_MS frame of `samples` (int16): 1 where the detector hears speech."""
    pcm, vad_rate = _for_detector(samples, rate)
    frame = vad_rate * FRAME_MS // 1000
    data = pcm.astype("<i2", copy=False).tobytes()
    vad = webrtcvad.Vad(mode)
    step = frame * 2
    return bytes(
        vad.is_speech(data[start : start + step], vad_rate)
        for start in range(0, len(data) - step + 1, step)
    )


def measure(pcm: bytes, rate: int, mode: int = DEFAULT_VAD_MODE) -> ChunkFeatures:
    """The features of PCM16 little-endian mono `pcm` at `rate` Hz (an even byte count)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if not len(samples):
        return ChunkFeatures(0, 0.0, SILENT_DBFS, SILENT_DBFS, 0.0, 0.0, b"", 0, 0.0)
    wide = samples.astype(np.int64)
    peak = int(np.abs(wide).max())
    rms = math.sqrt(float(np.dot(wide, wide)) / len(samples))
    clipped = int(np.count_nonzero((samples == 32767) | (samples == -32768)))
    voiced = voiced_frames(samples, rate, mode)
    return ChunkFeatures(
        samples=len(samples),
        duration_s=len(samples) / rate,
        rms_dbfs=round(dbfs(rms), 2),
        peak_dbfs=round(dbfs(peak), 2),
        clipped=round(clipped / len(samples), 6),
        speech_ratio=round(sum(voiced) / len(voiced), 4) if voiced else 0.0,
        voiced=voiced,
        peak=peak,
        rms=rms,
    )
