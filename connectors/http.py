"""Any HTTP request: IFTTT, Zapier and n8n hooks, smart-home hubs, your own service; with
audio (the chunk, or the utterance that just ended) for speech recognition or storage."""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, Struct, UnsetType

from connectors.audio_body import AudioBody
from connectors.http_kit import HttpDestination, HttpRequest, delivered, send_http
from engine.connector import EVENT_BODY, ConnectorBase, Delivered, RenderEnv, SendEnv
from engine.paths import utterance_file

Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
AUDIO_TRIGGERS = {"chunk": "audio", "utterance": "audio_speech_end"}


class Multipart(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Send the audio as a file in a multipart/form-data body."""

    field: str = "file"
    filename: str = ""  # default audio.wav (or audio.pcm)
    form: dict[str, str] = {}  # other fields, e.g. {response_format: json}


class HttpOptions(Struct, forbid_unknown_fields=True, omit_defaults=True):
    url: str
    method: Method = "POST"
    headers: dict[str, str] = {}
    query: dict[str, str] = {}
    json: Any | UnsetType = UNSET
    form: dict[str, str] | UnsetType = UNSET
    body: str | UnsetType = UNSET
    timeout: float = 15.0
    expect_status: int | list[int] | None = None
    # the audio as the body: the webhook's chunk (trigger audio) or the utterance that just
    # ended (trigger audio_speech_end), as a WAV file or raw PCM16
    body_audio: Literal["chunk", "utterance"] | None = None
    audio_format: Literal["wav", "pcm"] = "wav"
    multipart: Multipart | None = None


class Http(HttpDestination, ConnectorBase[HttpOptions, HttpRequest]):
    name = "http"
    summary = "Send any HTTP request (json, form, raw body, or audio)"
    Options = HttpOptions
    Request = HttpRequest
    needs = frozenset({EVENT_BODY})  # body_audio: chunk reads the stored chunk

    def validate(self, options: HttpOptions) -> list[tuple[str, str]]:
        given = [name for name in ("json", "form", "body") if getattr(options, name) is not UNSET]
        if options.body_audio is not None:
            given.append("body_audio")
        if len(given) > 1:
            return [
                (given[1], f"give one of json, form, body, body_audio (got {', '.join(given)})")
            ]
        if options.multipart is not None and options.body_audio is None:
            return [("multipart", "multipart sends the audio: give body_audio too")]
        if not 0 < options.timeout <= 300:
            return [("timeout", "timeout must be between 0 and 300 seconds")]
        return []

    def check_trigger(self, options: HttpOptions, trigger: str) -> list[tuple[str, str]]:
        # the file an utterance names comes from the event: only omi-rules' own
        # audio_speech_end event may name it (on another trigger the sender would)
        if options.body_audio == "utterance" and trigger != AUDIO_TRIGGERS["utterance"]:
            return [("body_audio", "body_audio: utterance needs trigger audio_speech_end")]
        return []

    def advise(self, options: HttpOptions, trigger: str) -> list[tuple[str, str]]:
        if options.body_audio == "chunk" and trigger != AUDIO_TRIGGERS["chunk"]:
            return [("body_audio", "body_audio: chunk needs trigger audio")]
        return []

    def render(self, options: HttpOptions, env: RenderEnv) -> HttpRequest:
        expect = options.expect_status
        headers = {str(k): str(v) for k, v in options.headers.items()}
        for name, value in headers.items():
            if any(c in value for c in "\r\n\0"):  # templated text must not add headers
                raise ValueError(f"header {name}: value {value!r} has a line break")
        return HttpRequest(
            method=options.method,
            url=options.url,
            headers=headers,
            query={str(k): str(v) for k, v in options.query.items()},
            json=options.json,
            form=options.form,
            body=options.body,
            timeout=options.timeout,
            expect_status=[expect] if isinstance(expect, int) else list(expect or []),
            audio=self._audio(options, env) if options.body_audio is not None else None,
        )

    def _audio(self, options: HttpOptions, env: RenderEnv) -> AudioBody:
        """Where the audio is, checked now (sent from there later, by the outbox)."""
        event = env.event or {}
        part = options.multipart
        multipart: dict[str, Any] = {}
        if part is not None:
            multipart = {"field": part.field, "filename": part.filename, "form": part.form}
        if options.body_audio == "chunk":
            if "sample_rate" not in event or "bytes" not in event:
                raise ValueError("body_audio: chunk needs an audio event (trigger audio)")
            return AudioBody(
                "event",
                env.event_id,
                int(event["sample_rate"]),
                options.audio_format,
                **multipart,
            )
        utterance = event.get("utterance")
        if utterance is None and "ended_by" in event:
            raise ValueError("no utterance: its audio could not be written (see the server log)")
        if not isinstance(utterance, dict) or not isinstance(utterance.get("path"), str):
            raise ValueError("body_audio: utterance needs an audio_speech_end event")
        path = utterance_file(env.data_dir, utterance["path"])
        rate = int(event.get("sample_rate") or 0)
        return AudioBody("file", path, rate, options.audio_format, **multipart)

    async def send(self, request: HttpRequest, env: SendEnv) -> Delivered:
        return delivered(await send_http(request, env, self.name))


connector = Http()
