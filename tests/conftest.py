from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.samples import SAMPLES_DIR, sample_path
from engine.server.store import Store
from tests.canary import CANARY, CANARY_NAME, CanaryWatch
from tests.postgres import PostgresServer, PostgresUnavailable, must_fail_without_postgres
from tests.servers import TargetServer

ROOT = Path(__file__).resolve().parent.parent
RULES_DIR = ROOT / "rules"
FIXTURES = SAMPLES_DIR  # the sample payloads shipped in the package


def fixture_path(name: str) -> Path:
    return sample_path(name)


@pytest.fixture
def target() -> Iterator[TargetServer]:
    """A real HTTP server on loopback that records requests and answers as scripted."""
    server = TargetServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (tests/postgres.py), started when a
    test first asks. Without PostgreSQL installed the test fails in CI and as root (CI runs
    as root and installs it), else it is skipped with the install hint, said on stderr."""
    try:
        server = PostgresServer.start()
    except PostgresUnavailable as error:
        missing = str(error)
    else:
        missing = ""
    if missing:  # outside the except: the message alone, no chained traceback
        if must_fail_without_postgres(os.environ, os.geteuid()):
            pytest.fail(missing, pytrace=False)
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            print(f"\n*** {missing} ***", file=sys.stderr)  # once: the fixture is per session
        pytest.skip(missing)
    try:
        yield server
    finally:
        server.stop()


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the session's PostgreSQL server: its URL."""
    name = f"t_{next(_database_numbers)}_{secrets.token_hex(4)}"
    return postgres_server.new_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What `Store(...)` opens, once per backend: an SQLite file, then a fresh PostgreSQL
    database (the server is started only when a postgresql case runs)."""
    if request.param == "postgresql":
        url: str = request.getfixturevalue("postgres_url")
        return url
    return str(tmp_path / "t.db")


@pytest.fixture
def new_store_target(request: pytest.FixtureRequest, store_target: str, tmp_path: Path) -> Any:
    """Each call: another empty target on store_target's backend (a test that needs
    several stores of its own, one after the other)."""
    numbers = itertools.count(1)

    def new() -> str:
        if store_target.startswith("postgresql://"):
            server: PostgresServer = request.getfixturevalue("postgres_server")
            return server.new_database(f"t_{next(_database_numbers)}_{secrets.token_hex(4)}")
        return str(tmp_path / f"t{next(numbers)}.db")

    return new


@pytest.fixture
def store(store_target: str) -> Iterator[Store]:
    """A Store on each backend (store_target), closed after the test."""
    opened = Store(store_target)
    yield opened
    opened.close()


@pytest.fixture(autouse=True)
def _no_ambient_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the secrets they set themselves, and the canary."""
    for key in list(os.environ):
        if key.startswith("OMI_RULES_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(f"OMI_RULES_SECRET_{CANARY_NAME}", CANARY)


@pytest.fixture(scope="session", autouse=True)
def _canary_never_leaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The canary secret is set for every test (and every server a test starts). At the end
    of the run it must not be in any log line, any HTTP answer a test read, or any file the
    run wrote: databases, server logs, data folders."""
    watch = CanaryWatch()
    with watch.installed():
        yield
    watch.scan_files(tmp_path_factory.getbasetemp())
    if watch.leaks:
        pytest.fail("the canary secret leaked:\n" + "\n".join(watch.leaks[:20]), pytrace=False)
