"""omi-rules' engine, in layers; each imports only the layers below it.

    tools       cli, dryrun, report_text, soak,       the command line over the layers;
                bench, bench_corpus, bench_load,      the performance harness
                bench_bare
    server/     app, access, webhook_auth, omi_query,  HTTP, durable capture, the outbox
                receiver, capture, dedupe, statuses,   and its delivery workers, history,
                store, outbox, delivery, breaker,      retention, metrics
                history, retention, sealed, signing,   and per-user settings (the setup
                metrics, user_settings, setting_keys,  page's store, keys, tokens, tests)
                form_tokens, setup_probe
    runtime/    payloads, event_view, matcher,         one event: decoded, matched against
                planner, pipeline, sessions, limits,   the rules, actions planned (shared by
                destinations, user_values              dry-run and the server)
    rules/      yaml_source, rule_model, rule_decode,  rule files: loaded with file:line,
                loader, compiled, live_rules,          compiled once (JSONPath, RE2
                conditions, predicates, linear_regex,  regexes, keyword phrases, templates)
                keywords, templates, template_bounds,  into predicates; reloaded live
                filters, jsonpaths, schema, trust,
                budget, user_setup
    base        connector (the connectors' SDK), triggers (the trigger registry), outbound,
                secrets, config, errors, durations, paths, keyfiles, samples

Connectors (`connectors/`) stand beside `rules/`: they use only the base layer. The built-in
trigger definitions (`triggers/`) stand above `runtime/` (their decoders live in
runtime.payloads); the engine reaches them only through the registry's entry points.
"""
