"""One-time form tokens of the setup page (engine.server.form_tokens)."""

from __future__ import annotations

from engine.server.form_tokens import FormTokens


def test_a_token_works_once_for_its_uid_until_it_expires() -> None:
    tokens = FormTokens(seconds=60)
    token = tokens.issue("u1", now=100.0)
    assert not tokens.consume("u2", token, now=101.0)  # another uid: refused, and spent
    assert not tokens.consume("u1", token, now=101.0)
    token = tokens.issue("u1", now=100.0)
    assert tokens.consume("u1", token, now=159.0)
    assert not tokens.consume("u1", token, now=159.0)
    late = tokens.issue("u1", now=100.0)
    assert not tokens.consume("u1", late, now=160.0)
    assert not tokens.consume("u1", "", now=100.0)


def test_at_most_limit_tokens_are_kept_the_oldest_dropped() -> None:
    tokens = FormTokens(limit=3)
    issued = [tokens.issue("u1", now=0.0) for _ in range(5)]
    assert len(tokens) == 3
    assert not tokens.consume("u1", issued[0], now=1.0)
    assert tokens.consume("u1", issued[4], now=1.0)
