"""The server: the HTTP surface (Litestar), access control, durable capture of every event
before its 200, the outbox and its delivery workers, history and retention.

Uses engine.runtime, engine.rules and the base layer."""
