"""The audio webhook end to end, over real HTTP: four seconds of speech in one-second
chunks, then two of silence, make one WAV recording of the summed length, fire a
`speech_ratio` rule for the speech chunks only, and forward the utterance once to a
loopback speech-recognition endpoint; each bad chunk gets a 4xx with its reason."""

from __future__ import annotations

import asyncio
import io
import json
import wave
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.server.receipt import Incoming
from tests.conftest import fixture_path
from tests.server_helpers import (
    ADMIN,
    LiveServer,
    ServerProcess,
    free_port,
    server_settings,
    write_rules,
)
from tests.servers import TargetServer
from tests.test_session_failures import Broken, query, started
from tests.test_session_failures import query as query_rows
from tests.wait import wait_until

SPEECH = fixture_path("audio-speech-16k.pcm").read_bytes()
SILENCE = fixture_path("audio-silence-16k.pcm").read_bytes()
SECOND = 32000  # bytes: one second at 16 kHz
OCTETS = {"Content-Type": "application/octet-stream"}

RULES = """
- id: record-all
  trigger: audio
  do:
    - record: {}
- id: speechy
  trigger: audio
  when:
    - path: $.speech_ratio
      gt: 0.5
  do:
    - log: {path: speechy.jsonl, message: "{{ audio.session_duration_s }}"}
- id: transcribe
  trigger: audio_speech_end
  do:
    - http:
        url: "TARGET/inference"
        body_audio: utterance
        multipart: {field: file, filename: "{{ uid }}.wav"}
"""


def seconds_of(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + SECOND] for i in range(0, len(pcm), SECOND)]


def frames_of(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes()


def test_speech_then_silence(tmp_path: Path, target: TargetServer) -> None:
    settings = server_settings(tmp_path)
    write_rules(Path(settings.rules), RULES.replace("TARGET", target.url))
    chunks = [SPEECH[n * SECOND : (n + 1) * SECOND] for n in range(4)]
    chunks += [SILENCE[:SECOND], SILENCE[SECOND : 2 * SECOND]]
    with LiveServer(settings) as server:
        url = f"{server.url}/webhook/audio?uid=u1&sample_rate=16000&session_id=s1"
        for chunk in chunks:
            assert httpx.post(url, content=chunk, headers=OCTETS).status_code == 200

        (forwarded,) = target.wait_for(1)
        recording = Path(settings.data_dir) / "recordings" / "u1" / "s1.wav"
        wait_until(
            lambda: recording.exists() and frames_of(recording) == 6 * 16000,
            what=lambda: str(httpx.get(f"{server.url}/api/actions", headers=ADMIN).json()[:3]),
        )
        with wave.open(str(recording), "rb") as wav:
            assert wav.readframes(wav.getnframes()) == b"".join(chunks)

        speechy = Path(settings.data_dir) / "speechy.jsonl"
        wait_until(lambda: speechy.exists() and len(speechy.read_text().splitlines()) == 4)
        said = [json.loads(line)["message"] for line in speechy.read_text().splitlines()]
        assert said == ["1.0", "2.0", "3.0", "4.0"]  # the speech chunks only

        assert forwarded.path == "/inference"
        assert b'filename="u1.wav"' in forwarded.body
        start = forwarded.body.index(b"RIFF")
        end = forwarded.body.rindex(b"\r\n--")
        with wave.open(io.BytesIO(forwarded.body[start:end]), "rb") as wav:
            # from where the speech began (2.5 s) to where the silence ended it (7.29 s)
            assert wav.getnframes() == 76640

        events = httpx.get(f"{server.url}/api/events", params={"limit": 50}, headers=ADMIN).json()
        triggers = [e["trigger"] for e in events]
        assert triggers.count("audio") == 6
        assert triggers.count("audio_speech_start") == 1
        assert triggers.count("audio_speech_end") == 1
    assert len(target.received) == 1


@pytest.mark.parametrize(
    ("query", "body", "status", "reason"),
    [
        ("uid=u&sample_rate=16000", b"", 400, "empty body: no audio"),
        ("uid=u&sample_rate=16000", b"\x00" * 3, 400, "odd byte count (3)"),
        ("uid=u&sample_rate=500", b"\x00" * 4, 400, "sample_rate 500 outside 1000..192000"),
        ("uid=u&sample_rate=fast", b"\x00" * 4, 400, "sample_rate 'fast' is not a number"),
        ("uid=u", b"\x00" * 4, 400, "missing sample_rate"),
        ("uid=u&sample_rate=16000", b"\x00" * 64002, 413, "body over 64000 bytes"),
        # within the byte limit, but 30 s long at 1 kHz
        ("uid=u&sample_rate=1000", b"\x00" * 60000, 413, "over 20 s (audio.max_chunk)"),
    ],
)
def test_bad_chunks_are_refused_with_a_reason(
    tmp_path: Path, query: str, body: bytes, status: int, reason: str
) -> None:
    settings = server_settings(tmp_path, body_limits={"audio": 64000}, audio={"max_chunk": 20})
    with LiveServer(settings) as server:
        answer = httpx.post(f"{server.url}/webhook/audio?{query}", content=body, headers=OCTETS)
        assert answer.status_code == status
        assert reason in answer.json()["error"]
        rejections = httpx.get(f"{server.url}/api/rejections", headers=ADMIN).json()
        assert len(rejections) == 1


def test_a_stream_that_goes_quiet_mid_speech_ends_its_utterance(tmp_path: Path) -> None:
    """Omi never sends the last partial buffer: speech that was still going when the stream
    stopped ends once the stream has been idle for audio.stream_idle."""
    settings = server_settings(tmp_path, audio={"stream_idle": 0.2})
    write_rules(
        Path(settings.rules),
        """
        - id: ended
          trigger: audio_speech_end
          do:
            - log:
                path: ended.jsonl
                message: "{{ speech.ended_by }} {{ speech.utterance.bytes }}"
        """,
    )
    with LiveServer(settings) as server:
        url = f"{server.url}/webhook/audio?uid=u1&sample_rate=16000"
        for n in (1, 2):
            chunk = SPEECH[n * SECOND : (n + 1) * SECOND]
            assert httpx.post(url, content=chunk, headers=OCTETS).status_code == 200
        ended = Path(settings.data_dir) / "ended.jsonl"
        wait_until(lambda: ended.exists() and ended.read_text().strip())
        (line,) = ended.read_text().splitlines()
        # from where the speech began (0.24 s into the first chunk) to the second's end
        assert json.loads(line)["message"] == f"idle {2 * SECOND - 7680}"
        assert len(server.receiver.audio_streams) == 0


def test_recording_survives_kill_9_and_is_completed_after_restart(tmp_path: Path) -> None:
    """The server is killed while it records: the WAV is playable as it was left, holding
    whole chunks in order; after a restart the rest arrive, each chunk once."""
    write_rules(tmp_path / "rules", "- {id: keep, trigger: audio, do: [{record: {}}]}")
    chunks = [SPEECH[n * SECOND : (n + 1) * SECOND] for n in range(4)] * 5  # 20 s
    recording = tmp_path / "data" / "recordings" / "u1" / "s1.wav"
    server = ServerProcess(tmp_path, free_port()).start()
    try:
        url = f"{server.url}/webhook/audio?uid=u1&sample_rate=16000&session_id=s1"
        with httpx.Client() as client:
            for chunk in chunks:
                assert client.post(url, content=chunk, headers=OCTETS).status_code == 200
        wait_until(lambda: recording.exists() and frames_of(recording) >= 16000)
    finally:
        server.kill()
    with wave.open(str(recording), "rb") as wav:  # playable as the kill left it
        left = wav.readframes(wav.getnframes())
    assert len(left) % SECOND == 0 and left == b"".join(chunks)[: len(left)]
    restarted = ServerProcess(tmp_path, free_port()).start()
    try:
        wait_until(lambda: frames_of(recording) == 20 * 16000)
        with wave.open(str(recording), "rb") as wav:
            assert wav.readframes(wav.getnframes()) == b"".join(chunks)
    finally:
        restarted.stop()


def test_a_chunk_answered_503_is_followed_once_when_omi_sends_it_again(tmp_path: Path) -> None:
    """The write of the third chunk fails (503) after the chunk was fed to its stream:
    the stream and its utterance file are put back, so Omi's retry is followed once (the
    stream counted 7 s for 6, and the utterance held the chunk twice); its derived events
    are not recorded either, so each speech start and end is recorded once."""
    write_rules(
        tmp_path / "rules",
        """
        - id: ends
          trigger: audio_speech_end
          do: [{log: {path: e.jsonl, message: "{{ speech.utterance.bytes }}"}}]
        """,
    )
    parts = [bytes(SECOND), *seconds_of(SPEECH[SECOND : 4 * SECOND]), bytes(SECOND), bytes(SECOND)]

    def chunk(pcm: bytes) -> Incoming:
        query = {"uid": "u", "sample_rate": "16000", "session_id": "s"}
        return Incoming("audio", pcm, query, {}, "application/octet-stream")

    async def scenario() -> tuple[list[int], list[dict[str, Any]]]:
        receiver = await started(tmp_path)
        try:
            statuses = []
            for index, pcm in enumerate(parts):
                if index in (1, 2):  # the chunk where speech starts, and one inside it
                    with Broken(receiver.settings.db, "events", "WHEN NEW.trigger = 'audio'"):
                        statuses.append((await receiver.receive(chunk(pcm))).status)
                statuses.append((await receiver.receive(chunk(pcm))).status)  # Omi's retry
            sql = "SELECT trigger, body, params FROM events ORDER BY received_at"
            return statuses, await query(receiver, sql)
        finally:
            await receiver.stop()

    statuses, rows = asyncio.run(scenario())
    assert statuses == [200, 503, 200, 503, 200, 200, 200, 200]
    triggers = [row["trigger"] for row in rows]
    assert triggers.count("audio_speech_start") == 1 == triggers.count("audio_speech_end")
    audio = [json.loads(row["params"]) for row in rows if row["trigger"] == "audio"]
    assert [a["session_duration_s"] for a in audio] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert [a["speaking"] for a in audio] == [False, True, True, True, True, True]
    (end,) = [json.loads(row["body"]) for row in rows if row["trigger"] == "audio_speech_end"]
    data = (tmp_path / "data" / end["utterance"]["path"]).read_bytes()[44:]
    assert data.count(parts[2]) == 1 and data.count(parts[3]) == 1
    assert len(data) == end["utterance"]["bytes"]


@pytest.mark.parametrize(
    ("rules", "kept"),
    [
        ("- {id: r, trigger: audio, do: [{log: {path: a.jsonl}}]}", False),
        (
            "- {id: r, trigger: audio_speech_end, enabled: false, do: [{log: {path: a.jsonl}}]}",
            False,
        ),
        ("- {id: r, trigger: audio_speech_end, do: [{log: {path: a.jsonl}}]}", True),
    ],
)
def test_utterance_files_are_written_only_for_a_speech_end_rule(
    tmp_path: Path, rules: str, kept: bool
) -> None:
    """No enabled rule on audio_speech_end: no utterance audio is kept on disk."""
    write_rules(tmp_path / "rules", rules)
    query = {"uid": "u", "sample_rate": "16000"}

    async def scenario() -> list[dict[str, Any]]:
        receiver = await started(tmp_path)
        try:
            for pcm in [bytes(SECOND), *seconds_of(SPEECH[SECOND : 3 * SECOND]), SILENCE]:
                incoming = Incoming("audio", pcm, query, {}, "application/octet-stream")
                assert (await receiver.receive(incoming)).status == 200
            sql = "SELECT body FROM events WHERE trigger = 'audio_speech_end'"
            return await query_rows(receiver, sql)
        finally:
            await receiver.stop()

    (end,) = asyncio.run(scenario())
    assert (json.loads(end["body"])["utterance"] is not None) is kept
    assert (tmp_path / "data" / "audio" / "utterances").exists() is kept
