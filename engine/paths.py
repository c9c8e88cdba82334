"""Files the connectors write stay inside the data folder, whatever a template rendered.

A path in a rule is relative to the data folder (`actions.jsonl` is `data/actions.jsonl`),
or absolute inside it. `..`, symbolic links and absolute paths that lead elsewhere are
refused before anything is written; `uid`, `session_id` and payload text reach these paths
through templates, so they are hostile.

Rendering checks the path as text (`..` and absolute paths elsewhere), which costs no system
call per action; the check that follows symbolic links runs where it matters, just before
the write (`inside_data`), so a link made at any time before then cannot lead a write out.
"""

from __future__ import annotations

import functools
import hashlib
import os
import string
from pathlib import Path

UTTERANCES = os.path.join("audio", "utterances")  # utterance WAVs, under the data folder
NAME_PART_BYTES = 64  # a uid or session id as a file name part, at most (ASCII: bytes)
_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


def file_name_part(text: str) -> str:
    """`text` (a uid or session id: payload text) as one part of a file name: ASCII letters,
    digits, `-` and `_` only, at most NAME_PART_BYTES bytes, never `.` or `..`. Text that
    had to change (other characters, too long, empty) keeps what it can plus `~` and a
    64-bit hash of the original: `~` is never in a name kept as it is, so a changed id can
    not name the same file as another id sent as is (`talk.1` is not part 1 of `talk`,
    `alice@x.com` not the uid `alice_x_com~...`)."""
    if text and len(text) <= NAME_PART_BYTES and all(c in _NAME_CHARS for c in text):
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    kept = "".join(c if c in _NAME_CHARS else "_" for c in text[: NAME_PART_BYTES - 17])
    return f"{kept}~{digest}"


class OutsideDataFolder(ValueError):
    """A rendered path leads outside the data folder."""


def data_file(data_dir: str, path: str) -> str:
    """A path a rule gave (relative to `data_dir`, or absolute), checked to stay inside
    `data_dir`; returned as it will be written (relative ones joined to `data_dir`)."""
    if not path or "\x00" in path:
        raise OutsideDataFolder(f"path {path!r} is not a file name")
    joined = os.path.normpath(path if os.path.isabs(path) else os.path.join(data_dir, path))
    absolute = os.path.abspath(joined)
    if not any(absolute.startswith(root + os.sep) for root in _roots(os.path.abspath(data_dir))):
        raise OutsideDataFolder(f"path {path!r} leads outside the data folder {data_dir}")
    return joined


@functools.lru_cache(maxsize=16)
def _roots(data_dir: str) -> tuple[str, ...]:
    """The (absolute) data folder as written and as resolved (an absolute path in a rule
    may name either); the resolved one is remembered: links are followed again at each
    write."""
    return tuple(dict.fromkeys((data_dir, os.path.realpath(data_dir))))


def inside_data(data_dir: str, path: str, *, shown: str | None = None) -> str:
    """`path` as written (what `data_file` returned), checked again just before writing:
    a symbolic link made since rendering must not lead it out."""
    root = Path(data_dir).resolve()
    resolved = Path(path).resolve()
    if resolved == root or root not in resolved.parents:
        name = shown if shown is not None else path
        raise OutsideDataFolder(f"path {name!r} leads outside the data folder {data_dir}")
    return path


def utterance_file(data_dir: str, path: str) -> str:
    """`path` (payload text naming an utterance WAV) checked, as text, to name a file
    under the data folder's `audio/utterances/`, and returned as `data_file` does."""
    joined = data_file(data_dir, path)
    root = os.path.abspath(os.path.join(data_dir, UTTERANCES))
    if not os.path.abspath(joined).startswith(root + os.sep):
        raise OutsideDataFolder(f"path {path!r} is not an utterance file (under {UTTERANCES}/)")
    return joined
