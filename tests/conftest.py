from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import TargetServer

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
FIXTURES = Path(os.environ.get("OMI_RULES_FIXTURES", ROOT.parent / "shared" / "fixtures"))


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():
        raise FileNotFoundError(f"{path} (set OMI_RULES_FIXTURES to the shared fixtures folder)")
    return path


@pytest.fixture
def target() -> Iterator[TargetServer]:
    """A real HTTP server on loopback that records requests and answers as scripted."""
    server = TargetServer().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the secrets they set themselves."""
    for key in list(os.environ):
        if key.startswith("OMI_RULES_"):
            monkeypatch.delenv(key)
