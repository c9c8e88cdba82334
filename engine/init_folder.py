"""`omi-rules init`: a working folder for an installed omi-rules (no clone needed).

    DIR/
      omi-rules.yaml    commented configuration; `serve` reads it from the folder it runs in
      secrets.env       the secrets the example rules name, commented out
      rules/            the example rules and their *.test.yaml cases
      samples/          Omi payloads to post or dry-run
      data/             events, logs and recordings

A folder that holds anything is refused unless `force`: then the files above are
overwritten and everything else in it is left alone, except an existing secrets.env, which
is never overwritten (it may hold real secrets). secrets.env is written mode 0600.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from engine.config import FOLDER_CONFIG
from engine.errors import OmiRulesError
from engine.folder_template import CONFIG_FILE, RULES_DIR
from engine.rules.loader import load_rules
from engine.samples import SAMPLES_DIR

CONFIG_NAME = FOLDER_CONFIG  # the file `serve` reads from the folder it runs in
SECRETS_NAME = "secrets.env"
RULE_FILES = "*.yaml"  # rules and their *.test.yaml cases
SAMPLE_FILES = ("*.json", "*.pcm", "README.md")


class FolderNotEmpty(OmiRulesError):
    """`omi-rules init` was pointed at a folder that already holds files, without --force."""


@dataclass
class InitResult:
    folder: Path
    written: list[Path] = field(default_factory=list)  # relative to folder
    secrets: list[str] = field(default_factory=list)  # names the example rules use


def starter_rule_files() -> list[Path]:
    """The example rule files the package carries (a copy of the repository's rules/)."""
    return sorted(RULES_DIR.glob(RULE_FILES))


def init_folder(folder: str | Path, *, force: bool = False) -> InitResult:
    """Write a working folder into `folder` (made when missing)."""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise FolderNotEmpty(f"{target} is a file, not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise FolderNotEmpty(
            f"{target} is not empty; give an empty folder, or --force to overwrite "
            f"{CONFIG_NAME}, {SECRETS_NAME}, rules/ and samples/ files in it"
        )
    result = InitResult(target)
    for path in starter_rule_files():
        result.written.append(_copy(path, target, Path("rules") / path.name))
    for pattern in SAMPLE_FILES:
        for path in sorted(SAMPLES_DIR.glob(pattern)):
            result.written.append(_copy(path, target, Path("samples") / path.name))
    result.written.append(_copy(CONFIG_FILE, target, Path(CONFIG_NAME)))
    ruleset = load_rules(target / "rules")
    result.secrets = sorted({name for rule in ruleset.rules for name in rule.secrets})
    if _write_private(target / SECRETS_NAME, secrets_template(result.secrets)):
        result.written.append(Path(SECRETS_NAME))
    (target / "data").mkdir(exist_ok=True)
    return result


def _write_private(path: Path, text: str) -> bool:
    """Write `text` to a new file readable by its owner only; False when `path` exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return True


def _copy(source: Path, folder: Path, relative: Path) -> Path:
    destination = folder / relative
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    return relative


def secrets_template(names: list[str]) -> str:
    lines = [
        "# Secrets for the rules in rules/: NAME=value, one a line (quotes and # comments as",
        "# in a .env file). A rule whose secrets are unset is skipped; uncomment what you use.",
        "# OMI_RULES_SECRET_<NAME> environment variables work too. Keep this file private.",
        "",
    ]
    lines.extend(f"# {name}=" for name in names)
    return "\n".join(lines) + "\n"


def next_steps(result: InitResult) -> str:
    """What to do after `init`, as the command prints it."""
    go = f"cd {result.folder}\n  " if result.folder.resolve() != Path.cwd().resolve() else ""
    return (
        f"omi-rules: wrote {len(result.written)} files into {result.folder}/ "
        "(rules/, samples/, omi-rules.yaml, secrets.env, data/)\n"
        "Next:\n"
        f"  {go}omi-rules test                 # the example rules' cases\n"
        "  omi-rules serve                # http://127.0.0.1:8000 ; see omi-rules.yaml\n"
        "  curl -X POST 'http://127.0.0.1:8000/webhook/memory?uid=me' \\\n"
        "       -H 'Content-Type: application/json' --data-binary @samples/memory-work.json\n"
        "  tail data/actions.jsonl        # what the log-* rules did\n"
        f"Fill in {SECRETS_NAME} to enable the other rules; edit them at /ui or in rules/."
    )
