from __future__ import annotations

from engine.server.capture import dedupe_key
from engine.server.dedupe import DedupeKey, Deduper
from tests.helpers import event


def test_expired_keys_drop_off_the_front_as_new_ones_are_claimed() -> None:
    deduper = Deduper(window=10.0)
    for n in range(1000):
        assert deduper.claim(DedupeKey((f"k{n}",)), f"e{n}", now=float(n)) is None
    assert len(deduper._seen) == 11  # only the keys of the last ten seconds are kept
    assert deduper.claim(DedupeKey(("k995",)), "again", now=1000.0) == "e995"
    assert deduper.claim(DedupeKey(("k5",)), "again", now=1000.0) is None


def test_a_flood_of_new_keys_is_capped() -> None:
    deduper = Deduper(window=1e9, max_keys=100)
    for n in range(1000):
        deduper.claim(DedupeKey((f"k{n}",)), f"e{n}", now=float(n))
    assert len(deduper._seen) == 100
    assert deduper.claim(DedupeKey(("k999",)), "again", now=1000.0) == "e999"


def test_key_parts_are_digests_so_no_sender_text_can_reach_another_users_part() -> None:
    forged = event("memory", {"id": "x\nmemory:victim:m42"}, uid="mallory")
    victim = event("memory", {"id": "m42"}, uid="victim")
    colon = event("memory", {"id": "b:c"}, uid="a")
    other = event("memory", {"id": "c"}, uid="a:b")
    forged_parts = set(dedupe_key(forged, None).parts)
    assert forged_parts.isdisjoint(dedupe_key(victim, None).parts)
    assert dedupe_key(colon, None) != dedupe_key(other, None)
    assert len(dedupe_key(victim, "idem", delivery_id="d1", signatures=["ab", "cd"]).parts) == 5


def test_a_dedupe_key_round_trips_through_its_column() -> None:
    key = dedupe_key(event("memory", {"id": "m1"}), "idem", delivery_id="d1")
    assert key is not None
    assert DedupeKey.from_column(key.to_column()) == key
    assert dedupe_key(event("transcript", []), None) is None  # nothing to dedupe by


def test_a_repeat_sharing_any_one_part_is_caught_and_a_release_forgets_every_part() -> None:
    deduper = Deduper(window=10.0)
    first = DedupeKey(("idem:a", "memory:m"))
    assert deduper.claim(first, "e1", now=0.0) is None
    assert deduper.claim(DedupeKey(("delivery:b", "memory:m")), "e2", now=1.0) == "e1"
    deduper.release(first)
    assert deduper.claim(DedupeKey(("memory:m",)), "e3", now=2.0) is None
