"""One event at a time: a webhook body decoded into the document rules see, matched against
the compiled rules (with live transcript sessions and time budgets), and each fired rule's
actions rendered into exact requests. Dry-run and the server share this path.

Uses engine.rules and the base layer; knows nothing of HTTP or storage."""
