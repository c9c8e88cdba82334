"""Rule files, from YAML to compiled rules: loaded with every node's file:line, decoded into
msgspec Structs, compiled once (JSONPath, RE2 regexes, keyword phrases, sandboxed
templates), reloaded live with the last good version of a broken file kept; and the rule
index (rule_index) that finds which rules an event may fire without visiting the rest.

Uses only the base layer (engine.connector, engine.secrets, engine.errors, ...)."""
