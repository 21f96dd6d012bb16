"""Prometheus metrics. Every name Tallow exports is defined here, in one registry.

Dashboards, alert rules and the deployment tests read names from ``REGISTRY``: a metric that
is not defined here does not exist.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily

# The *_created series only add noise to dashboards and storage.
disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)


class Tally:
    """A counter by one label for the per-message path: ``counts[value] += 1``, a plain dict
    add, where a ``Counter`` child takes a lock per increment (about 0.6 us, several per cent
    of a relayed message). Exported like a Counter; only the event loop's thread counts."""

    def __init__(self, name: str, documentation: str, label: str) -> None:
        self._name, self._documentation, self._label = name, documentation, label
        self.counts: dict[str, int] = {}
        REGISTRY.register(self)

    def counting(self, values: Iterable[str]) -> dict[str, int]:
        """The counts, each of ``values`` exported from 0 on (before its first message)."""
        for value in values:
            self.counts.setdefault(value, 0)
        return self.counts

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self._name, self._documentation, labels=[self._label])
        for value, count in self.counts.items():
            family.add_metric([value], count)
        yield family


build_info = Gauge(
    "tallow_build_info",
    "Version of this Tallow process (value is always 1).",
    ["version", "role", "broker"],
    registry=REGISTRY,
)
up = Gauge("tallow_up", "1 while the process runs.", registry=REGISTRY)
ready = Gauge("tallow_ready", "1 when /api/ready answers 200.", registry=REGISTRY)
draining = Gauge("tallow_draining", "1 after SIGTERM, while the replica drains.", registry=REGISTRY)

connections_open = Gauge(
    "tallow_connections_open", "Open signaling WebSocket connections.", registry=REGISTRY
)
connections_total = Counter(
    "tallow_connections", "Signaling WebSocket connections accepted.", registry=REGISTRY
)
connections_rejected = Counter(
    "tallow_connections_rejected",
    "Signaling connections refused before or at upgrade.",
    ["reason"],
    registry=REGISTRY,
)
rooms_active = Gauge(
    "tallow_rooms_active", "Rooms with at least one peer (this broker's view).", registry=REGISTRY
)
peers_active = Gauge(
    "tallow_peers_active",
    "Peers in rooms, including peers inside their resume grace period (this broker's view).",
    registry=REGISTRY,
)
messages_handled = Tally(
    "tallow_messages_handled",
    "Client messages handled, by type (ping and create included; refused ones are errors).",
    "type",
)
signaling_errors = Counter(
    "tallow_signaling_errors",
    "Error replies sent to clients, by code.",
    ["code"],
    registry=REGISTRY,
)
resumes = Counter(
    "tallow_resumes", "Connections that resumed a previous peer id.", registry=REGISTRY
)

http_requests = Counter(
    "tallow_http_requests",
    "HTTP requests by route name, method and status.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
http_duration = Histogram(
    "tallow_http_request_duration_seconds",
    "HTTP request latency by route name.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)

broker_up = Gauge(
    "tallow_broker_up", "1 when the last broker round trip succeeded.", registry=REGISTRY
)
broker_rtt = Histogram(
    "tallow_broker_rtt_seconds",
    "Broker round-trip time, measured by readiness checks.",
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
    registry=REGISTRY,
)


def exposition() -> bytes:
    """The registry in Prometheus text format."""
    return generate_latest(REGISTRY)
