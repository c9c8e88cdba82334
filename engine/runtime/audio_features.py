"""What one chunk of PCM16 audio sounds like: level, clipping and voice activity.

Computed once per chunk, in the rules thread, and bounded by the chunk (the body limit caps
its bytes, `audio.max_chunk` its seconds); a block of BLOCK_S seconds at a time, so the
memory it takes does not grow with the chunk. Voice activity comes from WebRTC's detector
(webrtcvad-wheels): it takes 10-30 ms frames at 8, 16, 32 or 48 kHz, so audio at any other
rate is resampled to 16 kHz first (block means going down, linear interpolation going up:
enough to tell speech from silence, not meant for listening).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import webrtcvad

FRAME_MS = 30  # the detector's longest frame: fewest calls, steadiest verdicts
VAD_RATES = (8000, 16000, 32000, 48000)
FULL_SCALE = 32768.0
SILENT_DBFS = -120.0  # the level reported for digital silence (log of 0 has none)
DEFAULT_VAD_MODE = 2  # 0 (lenient) .. 3 (strict) about what counts as speech
VAD_TARGET = 16000  # the rate audio at any other rate is resampled to
BLOCK_S = 30  # seconds of audio resampled and judged at a time (bounds the memory)
LEVEL_BLOCK = 1 << 20  # samples measured at a time


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


def _resample_range(samples: np.ndarray, rate: int, first: int, stop: int) -> np.ndarray:
    """Output samples `first`..`stop` (exclusive) of `samples` resampled to VAD_TARGET Hz:
    each the same as resampling the whole, from only the input it needs."""
    ratio = rate / VAD_TARGET
    if rate > VAD_TARGET:  # each output sample: the mean of the input samples it covers
        bounds = (np.arange(first, stop + 1, dtype=np.float64) * ratio).astype(np.int64)
        low = int(bounds[0])
        part = samples[low : int(bounds[-1])]
        sums = np.concatenate(([0], np.cumsum(part, dtype=np.int64)))
        resampled = (sums[bounds[1:] - low] - sums[bounds[:-1] - low]) / np.diff(bounds)
    else:  # upsampling: between neighbours
        positions = np.arange(first, stop, dtype=np.float64) * ratio
        low = int(positions[0])
        high = min(len(samples), int(positions[-1]) + 2)
        resampled = np.interp(positions, np.arange(low, high), samples[low:high].astype(np.float64))
    return np.round(resampled).astype("<i2")


def _detector_blocks(samples: np.ndarray, rate: int) -> Iterator[tuple[np.ndarray, int]]:
    """The samples at a rate the detector takes (as they are, or resampled to 16 kHz), in
    blocks of whole frames: at most BLOCK_S seconds of audio in memory at once, whatever
    the chunk's length or rate."""
    vad_rate = rate if rate in VAD_RATES else VAD_TARGET
    frame = vad_rate * FRAME_MS // 1000
    block = frame * (BLOCK_S * 1000 // FRAME_MS)
    if rate in VAD_RATES:
        for first in range(0, len(samples), block):
            yield samples[first : first + block], vad_rate
        return
    count = int(len(samples) * VAD_TARGET / rate)
    for first in range(0, count, block):
        yield _resample_range(samples, rate, first, min(count, first + block)), vad_rate


def voiced_frames(samples: np.ndarray, rate: int, mode: int = DEFAULT_VAD_MODE) -> bytes:
    """One byte per FRAME_MS frame of `samples` (int16): 1 where the detector hears speech."""
    vad = webrtcvad.Vad(mode)
    voiced = bytearray()
    for pcm, vad_rate in _detector_blocks(samples, rate):
        data = pcm.astype("<i2", copy=False).tobytes()
        step = vad_rate * FRAME_MS // 1000 * 2
        voiced.extend(
            vad.is_speech(data[start : start + step], vad_rate)
            for start in range(0, len(data) - step + 1, step)
        )
    return bytes(voiced)


def _levels(samples: np.ndarray) -> tuple[int, float, int]:
    """Peak, RMS and clipped-sample count of `samples`, a block at a time."""
    peak, energy, clipped = 0, 0.0, 0
    for first in range(0, len(samples), LEVEL_BLOCK):
        block = samples[first : first + LEVEL_BLOCK]
        wide = block.astype(np.int64)
        peak = max(peak, int(np.abs(wide).max()))
        energy += float(np.dot(wide, wide))
        clipped += int(np.count_nonzero((block == 32767) | (block == -32768)))
    return peak, math.sqrt(energy / len(samples)), clipped


def measure(pcm: bytes, rate: int, mode: int = DEFAULT_VAD_MODE) -> ChunkFeatures:
    """The features of PCM16 little-endian mono `pcm` at `rate` Hz (an even byte count)."""
    samples = np.frombuffer(pcm, dtype="<i2")
    if not len(samples):
        return ChunkFeatures(0, 0.0, SILENT_DBFS, SILENT_DBFS, 0.0, 0.0, b"", 0, 0.0)
    peak, rms, clipped = _levels(samples)
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
