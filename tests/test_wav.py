"""WAV files that stay playable while they grow: checked with the `wave` module after every
chunk, after a torn write, and after the writing process is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import pytest

from engine.wav import (
    MAX_DATA_BYTES,
    WAV_HEADER_BYTES,
    NotOurWav,
    WavFull,
    append_wav,
    as_wav,
    prune_older,
    wav_data_bytes,
    wav_header,
)
from tests.conftest import fixture_path

SPEECH = fixture_path("audio-speech-16k.pcm").read_bytes()


def frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth()) == (1, 2)
        return wav.readframes(wav.getnframes())


def test_valid_after_every_chunk(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    written = b""
    for start in range(0, len(SPEECH), 10_000):  # chunks of 5000 samples, the last shorter
        chunk = SPEECH[start : start + 10_000]
        append_wav(path, chunk, 16000)
        written += chunk
        assert frames(path) == written
    assert wav_data_bytes(path) == len(SPEECH)


@pytest.mark.parametrize("torn", [1, 3001])  # half a sample; part of a chunk
def test_a_torn_append_is_dropped_before_the_next_one(tmp_path: Path, torn: int) -> None:
    path = tmp_path / "rec.wav"
    append_wav(path, SPEECH[:3200], 16000)
    with path.open("ab") as file:  # a crash wrote part of a chunk, not the header
        file.write(SPEECH[3200 : 3200 + torn])
    assert frames(path) == SPEECH[:3200]  # the header still counts what it counted
    append_wav(path, SPEECH[3200:6400], 16000)  # the torn one, made again
    assert frames(path) == SPEECH[:6400]  # no sample shifted, none twice


def test_what_is_not_ours_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.wav"
    other.write_bytes(b"not a wav file at all, really not one, no")
    with pytest.raises(NotOurWav, match="is not a WAV file omi-rules wrote"):
        append_wav(other, SPEECH[:100], 16000)
    assert as_wav(b"\x01\x00\x02", 8000)[44:] == b"\x01\x00"  # whole samples only


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from engine.wav import append_wav
    path, count = Path(sys.argv[1]), 0
    chunk = bytes(range(256)) * 125  # 32000 bytes: one second at 16 kHz
    while True:
        append_wav(path, chunk, 16000)
        count += 1
        if count == 20:
            print("ready", flush=True)
    """
)


def test_valid_after_kill_9_mid_stream(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        time.sleep(0.05)  # appends go on: the kill lands anywhere in one
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()
    audio = frames(path)
    assert len(audio) >= 20 * 32000
    assert audio == (bytes(range(256)) * (len(audio) // 256 + 1))[: len(audio)]
    append_wav(path, b"\x00\x01" * 10, 16000)  # and it goes on from there
    assert frames(path)[-20:] == b"\x00\x01" * 10


def test_prune_older_deletes_old_recordings_only(tmp_path: Path) -> None:
    old, new, other = tmp_path / "a" / "old.wav", tmp_path / "new.wav", tmp_path / "notes.txt"
    for path in (old, new):
        append_wav(path, SPEECH[:100], 16000)
    old.with_name("old.wav.keys").write_text("k\n")
    other.write_text("keep me")
    past = time.time() - 3600
    for path in (old, old.with_name("old.wav.keys"), other):
        os.utime(path, (past, past))
    assert prune_older(tmp_path, time.time() - 60) == 0  # the folder itself only
    assert prune_older(tmp_path, time.time() - 60, recursive=True) == 2
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["new.wav", "notes.txt"]
    old_here = tmp_path / "old.wav"
    append_wav(old_here, SPEECH[:100], 16000)
    os.utime(old_here, (past, past))
    assert prune_older(tmp_path, time.time() - 60) == 1


def almost_full(path: Path) -> None:
    """A WAV whose header counts 10 bytes under what 32 bits can (a sparse file)."""
    counted = MAX_DATA_BYTES - 10
    with path.open("wb") as file:
        file.write(wav_header(16000, counted))
        file.truncate(WAV_HEADER_BYTES + counted)


def test_an_append_past_4_gib_is_refused_not_a_broken_header(tmp_path: Path) -> None:
    """struct.pack("<I") raised on the header after the audio was written."""
    path = tmp_path / "big.wav"
    almost_full(path)
    try:
        with pytest.raises(WavFull):
            append_wav(path, b"\0" * 32000, 16000)
        assert path.stat().st_size == WAV_HEADER_BYTES + MAX_DATA_BYTES - 10  # untouched
        assert append_wav(path, b"\0" * 10, 16000) == MAX_DATA_BYTES  # what still fits
    finally:  # 4 GiB, sparse: not left for the canary's scan to read
        path.unlink()
