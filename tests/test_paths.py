"""engine.paths: ids from payloads as file name parts, and paths kept inside the data
folder."""

from __future__ import annotations

import pytest

from engine.paths import NAME_PART_BYTES, file_name_part


@pytest.mark.parametrize(
    "sent", ["alice@example.com", "", "..", "talk.1", "s" * 300, "\U00010400" * 20]
)
def test_a_changed_id_never_names_the_file_of_an_id_sent_as_it_is(sent: str) -> None:
    """A changed id kept `kept-<hash>`, itself a name sent as it is: posting as the uid
    `alice_example_com-ff8d9819fc` wrote into alice@example.com's recordings."""
    name = file_name_part(sent)
    assert name != sent and "~" in name
    assert file_name_part(name) != name  # that name, sent as an id, changes (and so differs)
    assert name.isascii() and len(name.encode()) <= NAME_PART_BYTES
    assert name not in (".", "..") and "/" not in name


def test_a_safe_id_is_kept_and_two_ids_give_two_names() -> None:
    assert file_name_part("user_123-abc") == "user_123-abc"
    assert file_name_part("unknown") == "unknown"
    assert file_name_part("") != file_name_part("unknown")
    assert file_name_part("a/b") != file_name_part("a_b")
