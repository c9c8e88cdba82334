"""A throwaway PostgreSQL server, from Debian's `postgresql` package: the test suite's
(tests/postgres.py) and `omi-rules bench`'s scale-out section's.

`PostgresServer.start()` runs `initdb` in a fresh temporary folder and `pg_ctl start` on a
free loopback port, with durability off (fsync, full_page_writes, synchronous_commit): the
data is thrown away. `new_database(name)` makes an empty database; `stop()` stops the server
(`-m immediate`) and removes the folder. initdb refuses to run as root: as root the folder
belongs to the `postgres` system user and the commands run through `runuser -u postgres`.
`create_database` and `drop_database` work on any server, given a URL that can create
databases.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

INSTALL_HINT = (
    "PostgreSQL not installed: apt-get install postgresql (the PostgreSQL store's tests and"
    " the bench's scale-out section need it)"
)
LIB_ROOT = Path("/usr/lib/postgresql")
SYSTEM_USER = "postgres"  # Debian's package makes it
START_ATTEMPTS = 4  # a free port may be taken between the probe and the server's bind
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresUnavailable(RuntimeError):
    """No `initdb` on PATH nor under /usr/lib/postgresql/*/bin."""


def _version_key(folder: Path) -> tuple[int, ...]:
    """'/usr/lib/postgresql/15/bin' -> (15,): numbers, so 16 is newer than 9.6."""
    return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name))


def find_pg_bin(path: str | None = None, lib_root: Path | None = None) -> Path:
    """The folder holding `initdb` and `pg_ctl`: PATH first (`path` as in $PATH), then the
    newest `lib_root/*/bin`. Raises PostgresUnavailable when there is none."""
    initdb = shutil.which("initdb", path=path)
    if initdb is not None:
        for folder in (Path(initdb).parent, Path(initdb).resolve().parent):
            if os.access(folder / "pg_ctl", os.X_OK):
                return folder
    found = [
        folder
        for folder in (lib_root or LIB_ROOT).glob("*/bin")
        if os.access(folder / "initdb", os.X_OK) and os.access(folder / "pg_ctl", os.X_OK)
    ]
    if not found:
        raise PostgresUnavailable(INSTALL_HINT)
    return max(found, key=_version_key)


def database_url(server_url: str, name: str) -> str:
    """`server_url` with its database replaced by `name` (user, password, host, query kept)."""
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def create_database(server_url: str, name: str) -> str:
    """CREATE DATABASE `name` (empty: a copy of template1) through `server_url`; its URL."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"database name {name!r}: lower-case letters, digits and _ only")
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """DROP DATABASE `name`, closing what is still connected to it (PostgreSQL 13+)."""
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer:
    def __init__(self, bin_dir: Path, folder: Path, port: int, password: str) -> None:
        self.bin_dir = bin_dir
        self.folder = folder
        self.port = port
        # a password, not trust: any local user could reach a loopback port (and a
        # superuser can run programs on the server through COPY ... TO PROGRAM)
        self.password = password
        self.url = f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"

    @classmethod
    def start(cls, bin_dir: Path | None = None) -> PostgresServer:
        """initdb and start a server; PostgresUnavailable without PostgreSQL installed,
        RuntimeError (with the commands' output and the log's tail) when it does not start."""
        bin_dir = bin_dir or find_pg_bin()
        folder = Path(tempfile.mkdtemp(prefix="omi-rules-pg-"))
        try:
            password = secrets.token_hex(16)
            pwfile = folder / "pwfile"
            pwfile.write_text(password + "\n")
            pwfile.chmod(0o600)
            if os.geteuid() == 0:
                account = pwd.getpwnam(SYSTEM_USER)
                os.chown(folder, account.pw_uid, account.pw_gid)
                os.chown(pwfile, account.pw_uid, account.pw_gid)
            _run(
                bin_dir / "initdb",
                ["-D", str(folder / "data"), "-A", "scram-sha-256", "-U", "postgres"]
                + [f"--pwfile={pwfile}", "--no-sync", "-E", "UTF8"],
                folder,
            )
            pwfile.unlink()
            errors = []
            for _ in range(START_ATTEMPTS):
                port = _free_port()
                options = (
                    f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
                    " -c full_page_writes=off -c synchronous_commit=off -c max_connections=200"
                )
                try:
                    _run(
                        bin_dir / "pg_ctl",
                        ["-D", str(folder / "data"), "-o", options]
                        + ["-l", str(folder / "log"), "-w", "start"],
                        folder,
                    )
                except RuntimeError as error:
                    errors.append(str(error))
                    continue
                return cls(bin_dir, folder, port, password)
            log = folder / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError("PostgreSQL did not start:\n" + "\n".join(errors) + "\n" + tail)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def database_url(self, name: str) -> str:
        return database_url(self.url, name)

    def new_database(self, name: str) -> str:
        """CREATE DATABASE `name` (empty: a copy of template1) and return its URL."""
        return create_database(self.url, name)

    def stop(self) -> None:
        try:
            _run(
                self.bin_dir / "pg_ctl",
                ["-D", str(self.folder / "data"), "-m", "immediate", "stop"],
                self.folder,
            )
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _run(program: Path, args: list[str], folder: Path) -> None:
    """Run a PostgreSQL program (as `postgres` when we are root) in `folder`, without our
    OMI_RULES_* variables (secrets among them: the server needs none)."""
    command = [str(program), *args]
    if os.geteuid() == 0:
        command = ["runuser", "-u", SYSTEM_USER, "--", *command]
    env = {key: value for key, value in os.environ.items() if not key.startswith("OMI_RULES_")}
    env["LC_ALL"] = "C"  # initdb's locale: one every system has
    done = subprocess.run(
        command,
        cwd=folder,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
        )
