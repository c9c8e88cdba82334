"""`omi-rules init`: the working folder it writes, `serve` run in it with no arguments, and
the wheel carrying exactly what init writes (so `pipx install omi-rules` needs no clone)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from engine.cli import main
from engine.config import load_settings
from engine.folder_template import CONFIG_FILE
from engine.init_folder import FolderNotEmpty, init_folder
from engine.samples import SAMPLES
from tests.conftest import ROOT
from tests.server_helpers import free_port
from tests.wait import wait_until

REPO_RULES = sorted((ROOT / "rules").glob("*.yaml"))


def test_init_writes_the_repositorys_rules_samples_config_and_secrets(tmp_path: Path) -> None:
    folder = tmp_path / "omi"
    result = init_folder(folder)
    written = sorted((folder / "rules").iterdir())
    assert [path.name for path in written] == [path.name for path in REPO_RULES]
    assert any(path.name.endswith(".test.yaml") for path in written)
    for path in REPO_RULES:
        assert (folder / "rules" / path.name).read_bytes() == path.read_bytes(), path.name
    assert {path.name for path in (folder / "samples").iterdir()} == {*SAMPLES, "README.md"}
    assert (folder / "omi-rules.yaml").read_bytes() == CONFIG_FILE.read_bytes()
    assert (folder / "data").is_dir()
    # the secrets file names what the example rules need, commented out (so nothing is set)
    assert "SLACK_WEBHOOK_URL" in result.secrets and "NOTION_TOKEN" in result.secrets
    secrets = (folder / "secrets.env").read_text()
    assert "# SLACK_WEBHOOK_URL=\n" in secrets
    assert not [line for line in secrets.splitlines() if line and not line.startswith("#")]
    assert Path("secrets.env") in result.written and Path("rules/reminders.yaml") in result.written


def test_init_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FolderNotEmpty) as caught:
        init_folder(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path} is not empty; give an empty folder, or --force to overwrite "
        "omi-rules.yaml, secrets.env, rules/ and samples/ files in it"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_init_with_force_overwrites_its_files_and_leaves_the_rest(tmp_path: Path) -> None:
    init_folder(tmp_path)
    rule = tmp_path / "rules" / "work-to-slack.yaml"
    rule.write_text("changed")
    (tmp_path / "rules" / "mine.yaml").write_text("[]\n")
    init_folder(tmp_path, force=True)
    assert rule.read_bytes() == (ROOT / "rules" / "work-to-slack.yaml").read_bytes()
    assert (tmp_path / "rules" / "mine.yaml").read_text() == "[]\n"


def test_the_cli_prints_next_steps_and_fails_cleanly_on_a_full_folder(tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(main, ["init", str(tmp_path / "new")])
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"omi-rules: wrote {len(REPO_RULES) + len(SAMPLES) + 3} files")
    assert f"cd {tmp_path / 'new'}" in done.output and "omi-rules serve" in done.output
    again = runner.invoke(main, ["init", str(tmp_path / "new")])
    assert again.exit_code == 1
    assert "is not empty" in str(again.exception)


def test_serve_in_the_folder_reads_its_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.secrets == "secrets.env"
    assert (settings.rules, settings.db, settings.data_dir) == (
        "rules",
        "data/omi-rules.db",
        "data",
    )


def test_every_commented_setting_in_the_config_is_a_real_one(tmp_path: Path) -> None:
    """Uncommenting every `# name: value` line of the template still loads."""
    text = CONFIG_FILE.read_text()
    uncommented = re.sub(r"^# ([a-z_]+: )", r"\1", text, flags=re.M)
    names = set(yaml.safe_load(uncommented))
    assert {"host", "port", "allowed_hosts", "signing_secret", "retention_days"} <= names
    config = tmp_path / "config.yaml"
    config.write_text(uncommented)
    (tmp_path / "secrets.env").write_text("")
    settings = load_settings(config, environ={})
    assert settings.allowed_hosts == ["omi.example.com"] and settings.retention_days == 30


def test_init_then_serve_with_no_arguments_answers_health(tmp_path: Path) -> None:
    """The installed `omi-rules` command: init a folder, serve in it, post a sample."""
    command = str(Path(sys.executable).parent / "omi-rules")
    env = {key: value for key, value in os.environ.items() if not key.startswith("OMI_RULES_")}
    folder = tmp_path / "omi"
    subprocess.run([command, "init", str(folder)], env=env, check=True, capture_output=True)
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [command, "serve"],
            cwd=folder,
            env={**env, "OMI_RULES_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"serve exited: {log.read_text()}")
        try:
            return httpx.get(f"{url}/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(healthy, timeout=30, interval=0.1, what=lambda: log.read_text())
        sample = (folder / "samples" / "memory-work.json").read_bytes()
        headers = {"Content-Type": "application/json"}
        answer = httpx.post(
            f"{url}/webhook/memory?uid=me", content=sample, headers=headers, timeout=10
        )
        assert answer.status_code == 200
        actions = folder / "data" / "actions.jsonl"  # the log-everything example rule
        wait_until(actions.exists, timeout=15, what="data/actions.jsonl to be written")
        assert (folder / "data" / "omi-rules.db").exists()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=15)
    assert "rules from rules/, events in data/omi-rules.db" in log.read_text()


def test_the_wheel_carries_exactly_what_init_writes(tmp_path: Path) -> None:
    """Built from a copy of the sources (nothing written into the checkout), without build
    isolation (nothing downloaded)."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("engine", "connectors", "triggers", "web", "rules"):
        shutil.copytree(
            ROOT / name,
            source / name,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("omi_rules-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for path in REPO_RULES:
            packed = f"engine/folder_template/rules/{path.name}"
            assert archive.read(packed) == path.read_bytes(), packed
        assert archive.read("engine/folder_template/omi-rules.yaml") == CONFIG_FILE.read_bytes()
        entry_points = next(name for name in names if name.endswith("entry_points.txt"))
        assert "omi = connectors.omi:connector" in archive.read(entry_points).decode()
    packed_rules = {n for n in names if n.startswith("engine/folder_template/rules/")}
    assert len(packed_rules) == len(REPO_RULES)
    assert {f"engine/samples/{name}" for name in SAMPLES} <= names
    assert "engine/init_folder.py" in names
    # installed from the wheel alone (its dependencies from this venv, not the checkout),
    # `init` writes the repository's rules
    installed = tmp_path / "installed"
    pip_install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    subprocess.run([*pip_install, "--target", str(installed), str(wheel)], check=True)
    site_packages = sysconfig.get_paths()["purelib"]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": f"{installed}{os.pathsep}{site_packages}"}
    # -S: no .pth files, so the checkout's editable install is not on the path
    run_installed = [sys.executable, "-S", "-c", RUN_INSTALLED_CLI]
    folder = tmp_path / "from-wheel"
    done = subprocess.run(
        [*run_installed, "init", str(folder)],
        cwd=tmp_path,  # not the checkout: `-c` puts the current folder first on the path
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"engine from {installed}")
    for path in REPO_RULES:
        assert (folder / "rules" / path.name).read_bytes() == path.read_bytes(), path.name


# the CLI of the `engine` package found on the path, saying where that package is
RUN_INSTALLED_CLI = (
    "import sys, engine; print('engine from', engine.__file__); "
    "sys.argv[0] = 'omi-rules'; from engine.cli import run; run()"
)


def test_secrets_env_is_private_and_never_overwritten(tmp_path: Path) -> None:
    init_folder(tmp_path)
    secrets = tmp_path / "secrets.env"
    assert secrets.stat().st_mode & 0o777 == 0o600
    secrets.write_text("SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T/B/mine\n")
    again = init_folder(tmp_path, force=True)
    assert secrets.read_text() == "SLACK_WEBHOOK_URL=https://hooks.slack.com/services/T/B/mine\n"
    assert Path("secrets.env") not in again.written


def test_serve_with_a_config_elsewhere_takes_paths_from_its_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "srv"
    init_folder(folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load_settings(folder / "omi-rules.yaml", environ={})
    assert settings.secrets == str(folder / "secrets.env")
    assert (settings.rules, settings.db, settings.data_dir) == (
        str(folder / "rules"),
        str(folder / "data/omi-rules.db"),
        str(folder / "data"),
    )
    # a path from the environment stays relative to the current folder
    assert load_settings(folder / "omi-rules.yaml", environ={"OMI_RULES_RULES": "r"}).rules == "r"
