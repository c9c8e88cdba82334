"""One-time form tokens of the setup page (engine.server.form_tokens)."""

from __future__ import annotations

from engine.server.form_tokens import FormTokens


def test_a_token_works_once_for_its_uid_until_it_expires() -> None:
    tokens = FormTokens(seconds=60)
    token = tokens.issue("u1", now=100.0)
    assert not tokens.consume("u2", token, now=101.0)  # another uid: refused
    assert tokens.consume("u1", token, now=159.0)
    assert not tokens.consume("u1", token, now=159.0)  # spent
    late = tokens.issue("u1", now=100.0)
    assert not tokens.consume("u1", late, now=160.0)
    assert not tokens.consume("u1", "", now=100.0)
    forged = token.rsplit(".", 1)[0] + "." + "0" * 64
    assert not tokens.consume("u1", forged, now=101.0)
    longer = token.replace(token.split(".")[0], "9999999999999", 1)  # a later expiry
    assert not tokens.consume("u1", longer, now=101.0)
    assert not FormTokens().consume("u1", tokens.issue("u1"))  # another key (a restart)


def test_a_page_flood_evicts_no_other_users_token() -> None:
    tokens = FormTokens()
    victim = tokens.issue("victim-uid")
    for n in range(20_000):
        tokens.issue(f"flood-{n}")
    assert len(tokens) == 0  # issuing keeps nothing
    assert tokens.consume("victim-uid", victim)


def test_spent_nonces_are_kept_until_their_token_expires_at_most_limit() -> None:
    tokens = FormTokens(seconds=60, limit=3)
    for n in range(5):
        assert tokens.consume("u1", tokens.issue("u1", now=float(n)), now=float(n))
    assert len(tokens) == 3
    assert tokens.consume("u1", tokens.issue("u1", now=100.0), now=100.0)
    assert len(tokens) == 1  # the others' tokens expired
