"""record: PCM16 chunks appended to one WAV file, checked with the `wave` module."""

from __future__ import annotations

import asyncio
import os
import time
import wave
from pathlib import Path

import pytest

from connectors.record import connector as record
from engine.connector import SendEnv
from engine.errors import DeliveryError
from engine.paths import file_name_part
from tests.conftest import fixture_path
from tests.connectors.helpers import render, send

SPEECH = fixture_path("audio-speech-16k.pcm").read_bytes()


def audio_env(tmp_path: Path, event_id: str, pcm: bytes, rate: int = 16000) -> dict[str, object]:
    return {
        "data_dir": str(tmp_path / "data"),
        "event_id": event_id,
        "uid": "user123",
        "session_id": "session/42",
        "received_at": 1714550400.0,
        "event": {"uid": "user123", "sample_rate": rate, "bytes": len(pcm)},
    }


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Sends write under ./data (SendEnv's default data folder): here, tmp_path/data."""
    monkeypatch.chdir(tmp_path)


def test_two_sends_make_one_wav_with_both_chunks(tmp_path: Path) -> None:
    half = SPEECH[: len(SPEECH) // 4 * 2]  # the first half of the samples: whole PCM16 frames
    chunks = {"evt-1": SPEECH, "evt-2": half}
    requests = [render(record, {}, **audio_env(tmp_path, key, pcm)) for key, pcm in chunks.items()]
    path = tmp_path / "data" / "recordings" / "user123" / f"{file_name_part('session/42')}.wav"
    assert {r.path for r in requests} == {str(path)}

    for request in requests:
        delivered = send(record, request, event_body=chunks.__getitem__)
    assert delivered.response == f"{path}: {132970 + 66484} bytes of audio"

    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getframerate() == 16000
        assert wav.getnframes() == (132970 + 66484) // 2
        assert wav.readframes(wav.getnframes()) == SPEECH + half


def test_rotate_names_a_file_per_time_slice(tmp_path: Path) -> None:
    path = tmp_path / "data" / "rec" / "kitchen.wav"
    request = render(record, {"path": str(path), "rotate": "1h"}, **audio_env(tmp_path, "e", b""))
    assert request.path == str(tmp_path / "data" / "rec" / "kitchen-20240501T080000Z.wav")
    send(record, request, event_body=lambda _: SPEECH[:3200])
    with wave.open(request.path, "rb") as wav:
        assert wav.getnframes() == 1600


def test_a_different_sample_rate_is_refused_for_an_existing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "data" / "one.wav")
    send(
        record,
        render(record, {"path": path}, **audio_env(tmp_path, "a", SPEECH)),
        event_body=lambda _: SPEECH,
    )
    request = render(record, {"path": path}, **audio_env(tmp_path, "b", SPEECH, rate=8000))
    with pytest.raises(DeliveryError) as caught:
        send(record, request, event_body=lambda _: SPEECH)
    assert caught.value.message == f"{path} holds 16000 Hz audio, got 8000 Hz"
    assert caught.value.retryable is False
    with wave.open(path, "rb") as wav:
        assert wav.getnframes() == len(SPEECH) // 2  # untouched


def test_a_file_that_is_not_a_wav_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "data" / "notes.wav"
    path.parent.mkdir()
    path.write_text("these are my notes, not audio, and longer than a header is")
    request = render(record, {"path": str(path)}, **audio_env(tmp_path, "a", SPEECH))
    with pytest.raises(DeliveryError) as caught:
        send(record, request, event_body=lambda _: SPEECH)
    assert caught.value.message == f"{path} is not a WAV file omi-rules wrote"
    assert path.read_text().startswith("these are my notes")


def test_audio_that_is_gone_is_a_permanent_error(tmp_path: Path) -> None:
    request = render(record, {}, **audio_env(tmp_path, "evt-gone", SPEECH))
    with pytest.raises(DeliveryError) as caught:
        send(record, request, event_body={}.__getitem__)
    assert caught.value.message == "no audio for event evt-gone: 'evt-gone'"
    assert caught.value.retryable is False


def test_without_an_audio_store_nothing_is_written(tmp_path: Path) -> None:
    request = render(record, {}, **audio_env(tmp_path, "evt-1", SPEECH))
    with pytest.raises(DeliveryError, match="no audio store to read from"):
        send(record, request)
    assert not Path(request.path).exists()


def test_an_odd_trailing_byte_is_dropped_to_keep_samples_aligned(tmp_path: Path) -> None:
    path = str(tmp_path / "data" / "odd.wav")
    for key, pcm in [("a", SPEECH[:101]), ("b", SPEECH[:100])]:
        request = render(record, {"path": path}, **audio_env(tmp_path, key, pcm))
        send(record, request, event_body=lambda _, pcm=pcm: pcm)
    with wave.open(path, "rb") as wav:
        assert wav.readframes(wav.getnframes()) == SPEECH[:100] + SPEECH[:100]


def test_concurrent_sends_to_one_file_keep_every_chunk(tmp_path: Path) -> None:
    chunk = SPEECH[:32000]
    requests = [render(record, {}, **audio_env(tmp_path, f"e{n}", chunk)) for n in range(8)]

    async def send_all() -> None:
        env = SendEnv(client=None, secret=str, event_body=lambda _: chunk)  # type: ignore[arg-type]
        await asyncio.gather(*(record.send(request, env) for request in requests))

    asyncio.run(send_all())
    with wave.open(requests[0].path, "rb") as wav:
        assert wav.getnframes() == 8 * len(chunk) // 2
        assert wav.readframes(wav.getnframes()) == chunk * 8


def test_a_retried_action_does_not_append_its_audio_twice(tmp_path: Path) -> None:
    request = render(record, {}, **audio_env(tmp_path, "evt-1", SPEECH))
    for _ in range(2):  # the same action sent again after a crash
        send(record, request, event_body={"evt-1": SPEECH}.__getitem__, idempotency_key="evt-1:r:0")
    send(record, request, event_body={"evt-1": SPEECH}.__getitem__, idempotency_key="evt-1:r:1")
    with wave.open(request.path) as recording:
        assert recording.getnframes() == 2 * len(SPEECH) // 2


def test_a_short_file_is_never_overwritten_with_a_wav(tmp_path: Path) -> None:
    path = tmp_path / "data" / "tiny.wav"
    path.parent.mkdir()
    path.write_bytes(b"keep me")
    request = render(record, {"path": "tiny.wav"}, **audio_env(tmp_path, "a", SPEECH))
    with pytest.raises(DeliveryError, match="not a WAV file"):
        send(record, request, event_body=lambda _: SPEECH)
    assert path.read_bytes() == b"keep me"


def test_a_uid_cannot_lead_a_templated_path_out_of_the_data_folder(tmp_path: Path) -> None:
    env = {**audio_env(tmp_path, "a", SPEECH), "uid": "../../../../escape/x"}
    with pytest.raises(ValueError, match="outside the data folder"):
        render(record, {"path": "recordings/../../../../escape/x.wav"}, **env)
    default = render(record, {}, **env)  # the default path makes the uid a file name
    folder = Path(default.path).parent
    assert folder.parent == tmp_path / "data" / "recordings"
    assert folder.name.startswith("____________escape_x~")


def old_wav(path: Path, days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF")
    past = time.time() - days * 86400
    os.utime(path, (past, past))
    return path


@pytest.mark.parametrize("uid", ["..", ".", "...", ""])
def test_a_dot_uid_names_its_own_folder_and_keep_sweeps_only_it(tmp_path: Path, uid: str) -> None:
    """A uid of `..` made the recording folder data/ itself, and `keep` then deleted old
    WAVs anywhere under data/ (other rules' recordings, utterances, other users)."""
    data = tmp_path / "data"
    others = [
        old_wav(data / "archive" / "keep-forever.wav", 2),
        old_wav(data / "audio" / "utterances" / "u2" / "x.wav", 2),
        old_wav(data / "recordings" / "alice" / "2024-01-01.wav", 2),
        old_wav(data / "s.wav", 2),
    ]
    env = {**audio_env(tmp_path, "e", SPEECH), "uid": uid, "session_id": "s"}
    request = render(record, {"keep": "1d"}, **env)
    folder = Path(request.path).parent
    assert folder.parent == data / "recordings" and folder.name not in ("", ".", "..")
    send(record, request, event_body=lambda _: SPEECH)
    assert all(path.exists() for path in others)


def test_keep_sweeps_the_files_folder_not_its_subfolders(tmp_path: Path) -> None:
    data = tmp_path / "data"
    kept = old_wav(data / "rec" / "archive" / "forever.wav", 3)
    swept = old_wav(data / "rec" / "old.wav", 3)
    env = {**audio_env(tmp_path, "e", SPEECH), "session_id": ""}
    request = render(record, {"path": "rec/kitchen.wav", "keep": "1d"}, **env)
    send(record, request, event_body=lambda _: SPEECH)
    assert kept.exists() and not swept.exists()


def test_a_long_or_unicode_session_id_still_records(tmp_path: Path) -> None:
    """300 characters (or 100 four-byte letters) made a file name over 255 bytes: every
    chunk failed with ENAMETOOLONG."""
    for n, session in enumerate(["s" * 300, "\U00010400" * 100]):
        env = {**audio_env(tmp_path, f"e{n}", SPEECH), "session_id": session}
        request = render(record, {}, **env)
        name = Path(request.path).name
        assert len(name.encode()) <= 80 and name.isascii()
        send(record, request, event_body=lambda _: SPEECH)
        assert Path(request.path).stat().st_size == 44 + len(SPEECH)


def test_a_session_named_like_a_rotation_part_has_its_own_file(tmp_path: Path) -> None:
    a = render(
        record, {"max_bytes": 1000}, **{**audio_env(tmp_path, "a", SPEECH), "session_id": "talk"}
    )
    b = render(record, {}, **{**audio_env(tmp_path, "b", SPEECH), "session_id": "talk.1"})
    for _ in range(2):  # the second rotates into talk.1.wav
        send(record, a, event_body=lambda _: SPEECH[:800])
    send(record, b, event_body=lambda _: SPEECH[:800])
    assert Path(b.path) != Path(a.path).with_name("talk.1.wav")
    with wave.open(str(Path(a.path).with_name("talk.1.wav"))) as wav:
        assert wav.getnframes() == 400  # the second chunk of "talk" only


def test_max_duration_rotates_to_numbered_parts(tmp_path: Path) -> None:
    chunk = SPEECH[:32000]  # one second
    path = tmp_path / "data" / "long.wav"
    options = {"path": "long.wav", "max_duration": "2s"}
    for n in range(5):
        request = render(record, options, **audio_env(tmp_path, f"e{n}", chunk))
        assert request.max_bytes == 64000
        send(record, request, event_body=lambda _: chunk)
    parts = [path, path.with_name("long.1.wav"), path.with_name("long.2.wav")]
    counts = []
    for part in parts:
        with wave.open(str(part), "rb") as wav:
            counts.append(wav.getnframes())
    assert counts == [32000, 32000, 16000]
    assert not path.with_name("long.3.wav").exists()


def test_max_bytes_rotates_and_the_smaller_limit_wins(tmp_path: Path) -> None:
    options = {"path": "b.wav", "max_bytes": 40000, "max_duration": "1h"}
    request = render(record, options, **audio_env(tmp_path, "e", SPEECH[:32000]))
    assert request.max_bytes == 40000
    for _ in range(2):
        send(record, request, event_body=lambda _: SPEECH[:32000])
    assert [p.name for p in sorted((tmp_path / "data").glob("b*.wav"))] == ["b.1.wav", "b.wav"]


def test_keep_deletes_old_recordings_in_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "recordings" / "user123"
    folder.mkdir(parents=True)
    old = folder / "2020-01-01.wav"
    old.write_bytes(b"old")
    past = time.time() - 40 * 86400
    os.utime(old, (past, past))
    request = render(record, {"keep": "30d"}, **audio_env(tmp_path, "e", SPEECH))
    assert request.keep == 30 * 86400
    send(record, request, event_body=lambda _: SPEECH)
    assert not old.exists()
    assert Path(request.path).exists()


def test_speech_only_skips_chunks_outside_an_utterance(tmp_path: Path) -> None:
    env = audio_env(tmp_path, "e", SPEECH)
    quiet = {**env, "event": {**env["event"], "speaking": False, "speech_ratio": 0.3}}
    skipped = render(record, {"speech_only": True}, **quiet)
    assert send(record, skipped).response == "not recorded: no speech (speech_only)"
    assert not Path(skipped.path).exists()
    spoken = {**env, "event": {**env["event"], "speaking": True}}
    kept = render(record, {"speech_only": True}, **spoken)
    send(record, kept, event_body=lambda _: SPEECH)
    with wave.open(kept.path, "rb") as wav:
        assert wav.getnframes() == len(SPEECH) // 2
    # where no stream was followed (a dry-run), the chunk's own speech decides
    alone = {**env, "event": {**env["event"], "speech_ratio": 0.0}}
    assert render(record, {"speech_only": True}, **alone).skip


def test_rotate_names_a_file_per_session_and_slice(tmp_path: Path) -> None:
    """With a session id, rotate was ignored: one file for the whole session."""
    hour = 3600.0

    def path_at(session: str, at: float) -> str:
        env = {**audio_env(tmp_path, "e", SPEECH), "session_id": session, "received_at": at}
        return render(record, {"rotate": "1h"}, **env).path

    first, later = path_at("s", 1714550400.0), path_at("s", 1714550400.0 + 5 * hour)
    assert first != later
    assert Path(first).name == "s-20240501T080000Z.wav"
    assert Path(path_at("", 1714550400.0)).name == "20240501T080000Z.wav"


def test_a_recording_rotates_before_its_header_would_overflow(tmp_path: Path) -> None:
    """Without max_bytes a file grew past 4 GiB and its 32-bit header broke: 4 GiB is an
    implicit limit, so the next chunk goes to name.1.wav."""
    from engine.wav import MAX_DATA_BYTES, wav_header

    path = tmp_path / "data" / "big.wav"
    path.parent.mkdir(parents=True)
    with path.open("wb") as file:
        file.write(wav_header(16000, MAX_DATA_BYTES - 10))
        file.truncate(44 + MAX_DATA_BYTES - 10)
    try:
        request = render(record, {"path": "big.wav"}, **audio_env(tmp_path, "e", SPEECH))
        assert request.max_bytes == 0
        send(record, request, event_body=lambda _: SPEECH[:32000])
        with wave.open(str(path.with_name("big.1.wav")), "rb") as wav:
            assert wav.getnframes() == 16000
        assert path.stat().st_size == 44 + MAX_DATA_BYTES - 10
    finally:  # 4 GiB, sparse: not left for the canary's scan to read
        path.unlink()


def test_a_resent_chunk_at_a_rotation_boundary_is_recorded_once(tmp_path: Path) -> None:
    """The chunk filled its part (key kept) but its delivery was not marked sent; the
    resend found the part full and went to the next one: recorded twice."""
    from connectors.record import record_chunk

    request = render(record, {"max_bytes": 1600}, **audio_env(tmp_path, "e1", SPEECH))
    pcm, data_dir = SPEECH[:1600], str(tmp_path / "data")
    record_chunk(request, pcm, "idem-1", data_dir)
    assert record_chunk(request, pcm, "idem-1", data_dir).endswith("already recorded")
    assert not Path(request.path).with_name(Path(request.path).stem + ".1.wav").exists()
    record_chunk(request, pcm, "idem-2", data_dir)  # another chunk rotates as before
    with wave.open(str(Path(request.path).with_name(Path(request.path).stem + ".1.wav"))) as wav:
        assert wav.getnframes() == 800
