"""WAV files of PCM16 mono audio that stay playable while they grow.

Each append writes the samples, then the two sizes in the header: a crash between the two
leaves a file whose header counts fewer samples than it holds (still a valid WAV), never
one whose header promises more. The next append starts where the header ends: the
uncounted bytes belong to an append that did not finish, and that one is made again (the
record action retries it; see `append_wav`'s keys).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from pathlib import Path

log = logging.getLogger("omi_rules.wav")

WAV_HEADER_BYTES = 44
# the most audio one file can count: the RIFF size (36 + data) is 32 bits; whole samples
MAX_DATA_BYTES = (0xFFFFFFFF - 36) // 2 * 2
_file_lock = threading.Lock()  # appends rewrite the header: one at a time


class NotOurWav(ValueError):
    """A file to append to is not a PCM16 mono WAV omi-rules wrote, or has another rate."""


class WavFull(ValueError):
    """An append would take a WAV past MAX_DATA_BYTES (its header could not count it)."""


def wav_header(sample_rate: int, data_bytes: int) -> bytes:
    """A 44-byte RIFF header for mono 16-bit PCM."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        sample_rate * 2,
        2,
        16,
        b"data",
        data_bytes,
    )


def as_wav(pcm: bytes, sample_rate: int) -> bytes:
    """`pcm` (PCM16 LE mono) as a whole WAV file."""
    pcm = pcm[: len(pcm) - len(pcm) % 2]
    return wav_header(sample_rate, len(pcm)) + pcm


def wav_data_bytes(path: Path) -> int:
    """The bytes of audio a WAV file written here holds (0 when it does not exist)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    return max(0, size - WAV_HEADER_BYTES) // 2 * 2


def append_wav(path: Path, pcm: bytes, sample_rate: int, key: str = "") -> int:
    """Append PCM to a WAV file (created if missing); returns the data size after.

    With a `key` (the action's idempotency key), a chunk already appended under that key is
    not appended again: the keys are kept in `<file>.keys` beside the recording."""
    pcm = pcm[: len(pcm) - len(pcm) % 2]  # whole samples only, or every later one shifts
    keys = path.with_name(path.name + ".keys")
    with _file_lock:
        if key and keys.exists() and key in keys.read_text(encoding="utf-8").splitlines():
            return wav_data_bytes(path)
        size = _append(path, pcm, sample_rate)
        if key:
            with keys.open("a", encoding="utf-8") as file:
                file.write(key + "\n")
        return size


def has_key(path: Path, key: str) -> bool:
    """A chunk was appended to the WAV at `path` under the idempotency `key`."""
    keys = path.with_name(path.name + ".keys")
    with _file_lock:
        try:
            return key in keys.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return False


def _append(path: Path, pcm: bytes, sample_rate: int) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # a new file only: whatever exists already is never overwritten
        with path.open("xb") as new:
            new.write(wav_header(sample_rate, 0))
    except FileExistsError:
        pass
    with path.open("r+b") as file:
        header = file.read(WAV_HEADER_BYTES)
        if header[:4] != b"RIFF" or header[8:16] != b"WAVEfmt " or header[36:40] != b"data":
            raise NotOurWav(f"{path} is not a WAV file omi-rules wrote")
        (existing_rate,) = struct.unpack("<I", header[24:28])
        if existing_rate != sample_rate:
            raise NotOurWav(f"{path} holds {existing_rate} Hz audio, got {sample_rate} Hz")
        (counted,) = struct.unpack("<I", header[40:44])
        end = file.seek(0, os.SEEK_END)
        if end > WAV_HEADER_BYTES + counted:
            # audio of an append the header never counted (a crash mid-write): that append
            # did not finish, so it is sent again (its key was not kept); drop its start
            end = WAV_HEADER_BYTES + counted
            file.truncate(end)
            file.seek(end)
        if end - WAV_HEADER_BYTES + len(pcm) > MAX_DATA_BYTES:
            raise WavFull(f"{path} would hold over {MAX_DATA_BYTES} bytes of audio")
        file.write(pcm)
        data = file.tell() - WAV_HEADER_BYTES
        file.flush()
        file.seek(4)
        file.write(struct.pack("<I", 36 + data))
        file.seek(40)
        file.write(struct.pack("<I", data))
    return data


def truncate_wav(path: Path, data_bytes: int) -> None:
    """Cut a WAV written here back to `data_bytes` of audio (its header too); a
    `data_bytes` of 0 deletes it (an append to a file that did not exist is undone)."""
    with _file_lock:
        if data_bytes <= 0:
            path.unlink(missing_ok=True)
            return
        with path.open("r+b") as file:
            file.truncate(WAV_HEADER_BYTES + data_bytes)
            file.seek(4)
            file.write(struct.pack("<I", 36 + data_bytes))
            file.seek(40)
            file.write(struct.pack("<I", data_bytes))


def prune_older(folder: Path, cutoff: float, *, recursive: bool = False) -> int:
    """Delete the WAV files (and their `.keys`) in `folder` (and its subfolders when
    `recursive`) last written before `cutoff`; returns how many files."""
    deleted = 0
    if not folder.is_dir():
        return 0
    for path in folder.rglob("*.wav*") if recursive else folder.iterdir():
        if not path.name.endswith((".wav", ".wav.keys")):
            continue
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_mtime < cutoff:
                path.unlink()
                deleted += 1
        except OSError as exc:
            log.warning("could not delete %s: %s", path, exc)
    return deleted
