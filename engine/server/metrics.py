"""The server's Prometheus metrics, served at `GET /metrics` (admin token).

Each app has its own CollectorRegistry, so tests and several apps in one process never
share a count. Counting is a prometheus-client increment where the thing happens (no SQL,
no lock of ours); the outbox depth is the one value read from the store, at scrape time.

    omi_rules_events_total{trigger, status}          processed | error | duplicate |
                                                     rejected | unrecorded (answered 503)
    omi_rules_rejections_total{trigger, code}        refused webhooks by HTTP status
    omi_rules_rule_fires_total{rule}                 rules that matched a recorded event
    omi_rules_actions_total{connector, outcome}      delivery attempts: delivered | retry | dead
    omi_rules_outbox_actions{status}                 actions pending, in flight, dead now
    omi_rules_webhook_request_seconds{trigger}       webhook request latency (histogram)
    omi_rules_matching_seconds{trigger}              pipeline.process time (histogram)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

from engine.server.statuses import ActionStatus

CONTENT_TYPE = CONTENT_TYPE_LATEST
# the outbox states a scrape reports (delivered, inline and error rows only grow)
OUTBOX_STATES = (ActionStatus.PENDING, ActionStatus.IN_FLIGHT, ActionStatus.DEAD)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15)
MATCHING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1)


class Metrics:
    """The metric objects of one app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.events = Counter(
            "omi_rules_events",
            "Webhook deliveries by trigger and what became of them",
            ["trigger", "status"],
            registry=registry,
        )
        self.rejections = Counter(
            "omi_rules_rejections",
            "Refused webhooks by trigger and HTTP status",
            ["trigger", "code"],
            registry=registry,
        )
        self.rule_fires = Counter(
            "omi_rules_rule_fires",
            "Rules that matched a recorded event",
            ["rule"],
            registry=registry,
        )
        self.actions = Counter(
            "omi_rules_actions",
            "Delivery attempts by connector and outcome (delivered, retry, dead)",
            ["connector", "outcome"],
            registry=registry,
        )
        self.outbox = Gauge(
            "omi_rules_outbox_actions",
            "Actions in the outbox now, by status",
            ["status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "omi_rules_webhook_request_seconds",
            "Time to answer a webhook, by trigger",
            ["trigger"],
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.matching_seconds = Histogram(
            "omi_rules_matching_seconds",
            "Time to match one event against the rules and plan its actions",
            ["trigger"],
            buckets=MATCHING_BUCKETS,
            registry=registry,
        )

        # the children of the per-webhook metrics, by label values: `labels()` takes a lock
        # and builds its key each time, and these are counted on every webhook
        self._children: dict[tuple[object, ...], Any] = {}

    def _child(self, metric: MetricWrapperBase, *values: str) -> Any:
        key = (metric, *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def count_event(self, trigger: str, status: str) -> None:
        self._child(self.events, trigger, status).inc()

    def observe_request(self, trigger: str, seconds: float) -> None:
        self._child(self.request_seconds, trigger).observe(seconds)

    def observe_matching(self, trigger: str, seconds: float) -> None:
        self._child(self.matching_seconds, trigger).observe(seconds)

    def set_outbox(self, counts: Mapping[str, int]) -> None:
        """The outbox gauge from counts by status (a state with no row reads 0)."""
        for status in OUTBOX_STATES:
            self.outbox.labels(status=status).set(counts.get(status, 0))

    def render(self) -> bytes:
        """The text exposition format (CONTENT_TYPE)."""
        return generate_latest(self.registry)
