"""Builders for receiver tests: settings for a temporary server, rule files pointing at a
loopback target, and a real `omi-rules serve` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx

from engine.config import Settings, load_settings
from tests.wait import wait_until

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def server_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for a server in `tmp_path`: fast polling and retries, no file watching."""
    values: dict[str, Any] = {
        "rules": str(tmp_path / "rules"),
        "db": str(tmp_path / "omi.db"),
        "data_dir": str(tmp_path / "data"),
        "poll_interval": 0.05,
        "watch_rules": False,
        "retry": {"base_delay": 0.05, "max_delay": 0.5, "max_attempts": 5, "jitter": 0.0},
        "admin_token": ADMIN_TOKEN,
        "allowed_hosts": ["testserver.local"],  # Litestar's TestClient
    }
    values.update(overrides)
    (tmp_path / "rules").mkdir(exist_ok=True)
    # no config file, not even an omi-rules.yaml in the folder the tests run in
    return load_settings(os.devnull, environ={}, **values)


def write_rules(folder: Path, text: str, name: str = "rules.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def http_rule(url: str, *, rule_id: str = "to-target", trigger: str = "memory") -> str:
    return f"""
    - id: {rule_id}
      trigger: {trigger}
      do:
        - http:
            url: "{url}"
            json:
              event: "{{{{ event.id | default('') }}}}"
              uid: "{{{{ uid }}}}"
    """


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`omi-rules serve` in its own process, for crash and scale-out tests: rules from
    `tmp_path/rules`, events in `db` (a postgresql:// URL or a file; default tmp_path/omi.db)."""

    def __init__(
        self,
        tmp_path: Path,
        port: int,
        env: dict[str, str] | None = None,
        db: str | None = None,
    ) -> None:
        self.port = port
        self.tmp_path = tmp_path
        self.db = db or str(tmp_path / "omi.db")
        self.env = {
            **os.environ,
            "OMI_RULES_POLL_INTERVAL": "0.05",
            "OMI_RULES_WATCH_RULES": "false",
            "OMI_RULES_ADMIN_TOKEN": ADMIN_TOKEN,
            "OMI_RULES_RETRY_BASE_DELAY": "0.05",
            "OMI_RULES_RETRY_MAX_DELAY": "0.5",
            "OMI_RULES_RETRY_JITTER": "0",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / f"serve-{port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "engine.cli",
            "serve",
            "--rules",
            str(self.tmp_path / "rules"),
            "--db",
            self.db,
            "--port",
            str(self.port),
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                command, cwd=self.tmp_path, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(
            self._answers_health,
            timeout=30,
            interval=0.1,
            what=lambda: f"the server to start: {self.log.read_text()}",
        )
        return self

    def _answers_health(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited: {self.log.read_text()}")
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


class LiveServer:
    """The whole app served by uvicorn on a loopback port, in a thread of this process:
    real sockets and real HTTP, with the test's own Settings (and admin token)."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from engine.server.app import create_app

        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="live-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def receiver(self) -> Any:
        return self.app.state.receiver

    def start(self) -> LiveServer:
        self.thread.start()

        def started() -> bool:
            if not self.thread.is_alive():
                raise RuntimeError("live server thread ended before it started")
            return self.server.started

        wait_until(started, timeout=30, interval=0.02, what="the live server to start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def admin_client(app: Any) -> Any:
    """Litestar's TestClient for `app`, carrying the admin token (webhooks ignore it)."""
    from litestar.testing import TestClient

    client = TestClient(app=app)
    client.headers.update(ADMIN)
    return client
