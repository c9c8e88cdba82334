"""The http connector sending audio (connectors.audio_body) to a loopback server: the chunk
as a raw body, the utterance's WAV as a multipart file, read at send time from where the
stored request names it."""

from __future__ import annotations

import email
import email.policy
import io
import wave
from pathlib import Path

import msgspec
import pytest

from connectors.audio_body import AudioBody, read_audio
from connectors.http import connector as http
from engine.connector import SendEnv
from engine.errors import DeliveryError
from engine.wav import append_wav
from tests.conftest import fixture_path
from tests.connectors.helpers import render, send
from tests.servers import Received, TargetServer

SPEECH = fixture_path("audio-speech-16k.pcm").read_bytes()


def wav_frames(data: bytes) -> tuple[int, bytes]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        return wav.getframerate(), wav.readframes(wav.getnframes())


def form_parts(request: Received) -> dict[str, tuple[str | None, bytes]]:
    """A multipart/form-data body: field -> (filename, content)."""
    head = f"Content-Type: {request.header('Content-Type')}\r\n\r\n".encode()
    message = email.message_from_bytes(head + request.body, policy=email.policy.HTTP)
    parts = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        parts[name] = (part.get_filename(), part.get_payload(decode=True))
    return parts


def chunk_env(tmp_path: Path, event_id: str = "evt-1") -> dict[str, object]:
    return {
        "data_dir": str(tmp_path / "data"),
        "event_id": event_id,
        "uid": "u1",
        "event": {"sample_rate": 16000, "bytes": len(SPEECH), "speech_ratio": 0.7},
    }


def speech_end_env(tmp_path: Path, path: str = "audio/utterances/u1/s-1.wav") -> dict[str, object]:
    return {
        "data_dir": str(tmp_path / "data"),
        "event_id": "evt-2",
        "uid": "u1",
        "event": {"sample_rate": 16000, "utterance": {"path": path}, "ended_by": "silence"},
    }


def test_the_chunk_as_a_wav_body(target: TargetServer, tmp_path: Path) -> None:
    request = render(
        http, {"url": f"{target.url}/asr", "body_audio": "chunk"}, **chunk_env(tmp_path)
    )
    assert request.audio is not None and request.audio.source == "event"
    send(http, request, event_body={"evt-1": SPEECH}.__getitem__)
    (received,) = target.received
    assert received.header("Content-Type") == "audio/wav"
    assert wav_frames(received.body) == (16000, SPEECH)


def test_the_chunk_as_raw_pcm_with_the_rules_content_type(
    target: TargetServer, tmp_path: Path
) -> None:
    options = {
        "url": f"{target.url}/vad",
        "body_audio": "chunk",
        "audio_format": "pcm",
        "headers": {"Content-Type": "audio/L16; rate=16000"},
    }
    send(http, render(http, options, **chunk_env(tmp_path)), event_body=lambda _: SPEECH)
    (received,) = target.received
    assert received.header("Content-Type") == "audio/L16; rate=16000"
    assert received.body == SPEECH


def test_the_utterance_as_a_multipart_file(target: TargetServer, tmp_path: Path) -> None:
    data = tmp_path / "data"
    append_wav(data / "audio" / "utterances" / "u1" / "s-1.wav", SPEECH, 16000)
    options = {
        "url": f"{target.url}/inference",
        "body_audio": "utterance",
        "multipart": {"field": "file", "filename": "u1.wav", "form": {"response_format": "json"}},
    }
    request = render(http, options, **speech_end_env(tmp_path))
    send(http, request, data_dir=str(data))
    (received,) = target.received
    assert received.header("Content-Type").startswith("multipart/form-data; boundary=")
    parts = form_parts(received)
    assert parts["response_format"] == (None, b"json")
    filename, content = parts["file"]
    assert filename == "u1.wav"
    assert wav_frames(content) == (16000, SPEECH)


def test_an_utterance_that_is_gone_fails_without_retrying(
    target: TargetServer, tmp_path: Path
) -> None:
    options = {"url": f"{target.url}/inference", "body_audio": "utterance"}
    request = render(http, options, **speech_end_env(tmp_path))
    with pytest.raises(DeliveryError) as caught:
        send(http, request, data_dir=str(tmp_path / "data"))
    assert caught.value.message.startswith("no audio to send (file ")
    assert caught.value.retryable is False
    assert target.received == []


def test_audio_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="body_audio: utterance needs an audio_speech_end event"):
        render(http, {"url": "http://h/x", "body_audio": "utterance"}, **chunk_env(tmp_path))
    with pytest.raises(ValueError, match="body_audio: chunk needs an audio event"):
        render(http, {"url": "http://h/x", "body_audio": "chunk"}, **speech_end_env(tmp_path))
    with pytest.raises(ValueError, match="outside the data folder"):
        render(
            http,
            {"url": "http://h/x", "body_audio": "utterance"},
            **speech_end_env(tmp_path, path="../../etc/passwd"),
        )
    with pytest.raises(ValueError, match="multipart sends the audio: give body_audio too"):
        render(http, {"url": "http://h/x", "multipart": {"field": "f"}})
    with pytest.raises(ValueError, match="give one of json, form, body, body_audio"):
        render(http, {"url": "http://h/x", "body": "x", "body_audio": "chunk"})
    options = msgspec.convert({"url": "http://h/x", "body_audio": "utterance"}, http.Options)
    assert http.check_trigger(options, "audio") == [
        ("body_audio", "body_audio: utterance needs trigger audio_speech_end")
    ]
    assert http.check_trigger(options, "audio_speech_end") == []
    chunk = msgspec.convert({"url": "http://h/x", "body_audio": "chunk"}, http.Options)
    assert http.advise(chunk, "memory") == [("body_audio", "body_audio: chunk needs trigger audio")]


@pytest.mark.parametrize(
    "path", ["settings.key", "admin-token", "omi-rules.db", "audio/other.wav", "audio/utterances"]
)
def test_only_an_utterance_file_is_sent(tmp_path: Path, path: str) -> None:
    """The event names the file: only one under data/audio/utterances/ is read, at render
    and again at send (any file of the data folder was: the settings key, the admin
    token, the database)."""
    data = tmp_path / "data"
    (data / "audio").mkdir(parents=True)
    if path != "audio/utterances":  # the folder itself
        (data / path).write_text("SECRET")
    with pytest.raises(ValueError, match="is not an utterance file"):
        render(
            http,
            {"url": "http://h/x", "body_audio": "utterance"},
            **speech_end_env(tmp_path, path=path),
        )
    stored = AudioBody("file", str(data / path))  # a stored request from before
    env = SendEnv(client=None, secret=lambda n: "", data_dir=str(data))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="outside the data folder"):
        read_audio(stored, env)
