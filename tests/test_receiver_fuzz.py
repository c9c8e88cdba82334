"""No input makes the receiver answer 5xx: arbitrary bodies, JSON shapes and queries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from engine.server.app import create_app
from tests.conftest import RULES_DIR
from tests.server_helpers import admin_client, server_settings

ENDPOINTS = ["memory", "transcript", "audio", "day-summary"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "segments",
                    "summary",
                    "summary_json",
                    "structured",
                    "text",
                    "transcript_segments",
                    "speakerId",
                    "is_user",
                    "start",
                    "x",
                ]
            ),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = Path(tmp_path_factory.mktemp("fuzz"))
    with admin_client(create_app(server_settings(tmp, rules=str(RULES_DIR)))) as test_client:
        yield test_client


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    body=st.binary(max_size=300),
    rate=st.one_of(st.none(), st.text(max_size=6)),
)
def test_random_bytes_never_5xx(
    client: TestClient, endpoint: str, body: bytes, rate: str | None
) -> None:
    params = {"uid": "fuzz"}
    if rate is not None:
        params["sample_rate"] = rate
    kind = "application/octet-stream" if endpoint == "audio" else "application/json"
    response = client.post(
        f"/webhook/{endpoint}", params=params, content=body, headers={"Content-Type": kind}
    )
    assert response.status_code in (200, 400, 413, 415)
    if response.status_code != 200:
        assert response.json()["error"]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(endpoint=st.sampled_from(["memory", "transcript", "day-summary"]), value=json_values)
def test_random_json_never_5xx(client: TestClient, endpoint: str, value: object) -> None:
    response = client.post(
        f"/webhook/{endpoint}?uid=fuzz",
        content=json.dumps(value),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400)
    assert client.get("/health").status_code == 200
