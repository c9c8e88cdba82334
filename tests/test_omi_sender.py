"""What Omi's backend really sends, through real HTTP: a doubled '?' in the URL, big
memories, signature and token together. (engine.server.omi_query, body limits, webhook_auth)"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import httpx
import pytest

from engine.server import signing
from tests.server_helpers import ADMIN, LiveServer, server_settings, write_rules
from tests.wait import wait_until

TOKEN = "t0ken-in-the-url"
SECRET = "whsec_sender_test"


def test_audio_url_with_a_query_records_16khz_audio_of_the_right_length(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, token=TOKEN)
    write_rules(Path(settings.rules), "- {id: keep, trigger: audio, do: [{record: {}}]}")
    one_second = b"\x01\x00\xff\xff" * 8000  # 16,000 samples: one second at 16 kHz
    with LiveServer(settings) as server:
        # the webhook URL was set up as /webhook/audio?token=T; Omi appended its own '?'
        url = f"{server.url}/webhook/audio?token={TOKEN}?sample_rate=16000&uid=U1"
        answers = [
            httpx.post(
                url, content=one_second, headers={"Content-Type": "application/octet-stream"}
            )
            for _ in range(2)
        ]
        completed = httpx.get(f"{server.url}/setup/completed?token={TOKEN}?uid=U1").json()

        def recorded() -> list[Path]:
            return list((tmp_path / "data" / "recordings" / "U1").glob("*.wav"))

        (path,) = wait_until(recorded)
        wait_until(lambda: path.stat().st_size == 44 + 2 * len(one_second))
    assert [a.status_code for a in answers] == [200, 200]
    assert completed == {"is_setup_completed": True}
    with wave.open(str(path)) as wav:
        assert wav.getframerate() == 16000
        assert wav.getnframes() / wav.getframerate() == 2.0


def test_audio_without_a_sample_rate_is_a_400_with_a_reason(tmp_path: Path) -> None:
    with LiveServer(server_settings(tmp_path)) as server:
        response = httpx.post(
            f"{server.url}/webhook/audio?uid=u",
            content=b"\x00\x00" * 100,
            headers={"Content-Type": "application/octet-stream"},
        )
    assert response.status_code == 400
    assert "missing sample_rate" in response.json()["error"]


def test_a_20_mib_memory_is_accepted_by_default(tmp_path: Path) -> None:
    photo = "A" * (20 * 1024 * 1024)  # an OpenGlass photo as base64
    memory = {"id": "big", "structured": {"title": "with a photo"}, "photos": [photo]}
    with LiveServer(server_settings(tmp_path)) as server:
        response = httpx.post(f"{server.url}/webhook/memory?uid=u", json=memory, timeout=60)
        (event,) = httpx.get(server.url + "/api/events", headers=ADMIN).json()
    assert response.status_code == 200
    assert event["status"] == "processed"


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_the_limit_is_refused_and_recorded(tmp_path: Path, declared: bool) -> None:
    settings = server_settings(tmp_path, body_limits={"transcript": 64 * 1024})
    body = json.dumps([{"text": "x" * 200_000}]).encode()

    def chunks():  # no Content-Length: the size shows only while reading
        for start in range(0, len(body), 16384):
            yield body[start : start + 16384]

    with LiveServer(settings) as server:
        response = httpx.post(
            f"{server.url}/webhook/transcript?uid=u",
            content=body if declared else chunks(),
            headers={"Content-Type": "application/json"},
        )
        (rejection,) = httpx.get(server.url + "/api/rejections", headers=ADMIN).json()
        events = httpx.get(server.url + "/api/events", headers=ADMIN).json()
    assert response.status_code == 413
    assert response.json() == {"error": "body over 65536 bytes"}
    assert rejection["endpoint"] == "/webhook/transcript"
    assert rejection["size"] > 64 * 1024
    assert events == []


def test_signature_and_token_together(tmp_path: Path) -> None:
    settings = server_settings(tmp_path, signing_secret=SECRET, token=TOKEN)
    body = json.dumps({"id": "m1"}).encode()
    url = "/webhook/memory?uid=u"
    json_type = {"Content-Type": "application/json"}
    with LiveServer(settings) as server:

        def post(query: str = "", **headers: str) -> int:
            return httpx.post(
                server.url + url + query, content=body, headers={**json_type, **headers}
            ).status_code

        unsigned_with_token = post(f"&token={TOKEN}")
        unsigned_without = post()
        bad_signature_with_token = post(
            f"&token={TOKEN}", **{"X-Omi-Signature": signing.sign("whsec_wrong", "u", body)}
        )
        good_signature = post(**{"X-Omi-Signature": signing.sign(SECRET, "u", body)})
    assert unsigned_with_token == 200
    assert unsigned_without == 401
    assert bad_signature_with_token == 401
    assert good_signature == 200
