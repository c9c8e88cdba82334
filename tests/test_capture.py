from __future__ import annotations

from engine.server.capture import Deduper, dedupe_key
from tests.helpers import event


def test_expired_keys_drop_off_the_front_as_new_ones_are_claimed() -> None:
    deduper = Deduper(window=10.0)
    for n in range(1000):
        assert deduper.claim(f"k{n}", f"e{n}", now=float(n)) is None
    assert len(deduper._seen) == 11  # only the keys of the last ten seconds are kept
    assert deduper.claim("k995", "again", now=1000.0) == "e995"
    assert deduper.claim("k5", "again", now=1000.0) is None


def test_a_flood_of_new_keys_is_capped() -> None:
    deduper = Deduper(window=1e9, max_keys=100)
    for n in range(1000):
        deduper.claim(f"k{n}", f"e{n}", now=float(n))
    assert len(deduper._seen) == 100
    assert deduper.claim("k999", "again", now=1000.0) == "e999"


def test_key_parts_are_digests_so_no_sender_text_can_reach_another_users_part() -> None:
    forged = event("memory", {"id": "x\nmemory:victim:m42"}, uid="mallory")
    victim = event("memory", {"id": "m42"}, uid="victim")
    colon = event("memory", {"id": "b:c"}, uid="a")
    other = event("memory", {"id": "c"}, uid="a:b")
    forged_parts = set(dedupe_key(forged, None).split("\n"))
    assert forged_parts.isdisjoint(dedupe_key(victim, None).split("\n"))
    assert dedupe_key(colon, None) != dedupe_key(other, None)
    assert dedupe_key(victim, "idem", delivery_id="d1", signatures=["ab", "cd"]).count("\n") == 4
