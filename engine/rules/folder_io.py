"""Safe writes to the rules folder: names that stay inside it, atomic replaces, etags."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from engine.errors import BadRuleName

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def etag_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_file_name(file: str, rule_id: str = "") -> str:
    """`file` when it may name a rule file of the folder, else BadRuleName."""
    if (
        not SAFE_NAME.match(file)
        or ".." in file
        or not file.endswith((".yaml", ".yml"))
        or file.endswith((".test.yaml", ".test.yml"))
        or file.startswith(".")
    ):
        raise BadRuleName(
            f"bad rule file name {file!r}: use letters, digits, '.', '_' and '-', "
            "ending in .yaml (not .test.yaml)",
            file=file,
            rule_id=rule_id,
        )
    return file


def check_rule_id(rule_id: str, file: str = "") -> str:
    """`rule_id` when it may name a new rule (and its file `<id>.yaml`), else BadRuleName."""
    if not SAFE_NAME.match(rule_id) or ".." in rule_id or rule_id.endswith(".test"):
        raise BadRuleName(
            f"bad rule id {rule_id!r}: start with a letter or digit, then letters, digits, "
            "'.', '_' and '-'",
            file=file,
            rule_id=rule_id,
        )
    return rule_id


def atomic_write(path: Path, text: str, *, overwrite: bool = True) -> None:
    """Write `text` to a temporary file beside `path`, fsync it, then move it into place
    (os.replace; with overwrite=False a hard link that fails when `path` exists)."""
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if overwrite:
            os.replace(temp, path)
        else:
            os.link(temp, path)
            os.unlink(temp)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename itself is done
    finally:
        os.close(fd)
