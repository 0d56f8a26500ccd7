"""The server's Prometheus metrics, in a registry of its own per app.

Several apps may live in one process (tests), so nothing goes to prometheus-client's
global registry. What happens is counted as it happens (events stored, access decisions,
bridge lag, write batches); what is a state (units online, open alarms, refused messages
counted by ``server.mqtt.handlers.Rejections``) is read from its owner at each scrape.
Label values are fixed sets: a unit cannot make up new series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from protocol.messages import DENY_REASONS, Event

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
GRANTED = "granted"
DECISION_REASONS = frozenset({GRANTED, *DENY_REASONS})
OTHER = "other"  # a reason outside the known set (a newer unit, say)

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    """The counters and histograms the server feeds, and its registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[Counter, tuple[str, ...]], Counter] = {}
        r = self.registry
        self.events_ingested = Counter(
            "telecentre_events_ingested",
            "Events from units stored for the first time (resends not counted), by kind.",
            ["kind"],
            registry=r,
        )
        self.decisions = Counter(
            "telecentre_access_decisions",
            "Access decisions reported by units, by outcome and by the rule that made them.",
            ["outcome", "reason"],
            registry=r,
        )
        self.bridge_lag = Histogram(
            "telecentre_bridge_lag_seconds",
            "Arrival at the server minus the event's time, for live events of units with a"
            " synchronised clock.",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.writer_batch = Histogram(
            "telecentre_writer_batch_size",
            "Writes committed together by the store's writer thread.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.writer_commit = Histogram(
            "telecentre_writer_commit_seconds",
            "Time to run and commit one batch of the store's writer thread.",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )

    def event_stored(self, event: Event, received_at: float, *, historical: bool) -> None:
        """A unit's event was stored for the first time."""
        self._child(self.events_ingested, event.kind).inc()
        if event.kind == "access" and event.reason is not None:
            reason = event.reason if event.reason in DECISION_REASONS else OTHER
            outcome = GRANTED if event.granted else "denied"
            self._child(self.decisions, outcome, reason).inc()
        if not historical and event.clock_synced:
            self.bridge_lag.observe(max(0.0, received_at - event.ts))

    def _child(self, metric: Counter, *labels: str) -> Counter:
        """``metric.labels(*labels)``, looked up once per label set (every event asks)."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def batch_committed(self, items: int, seconds: float) -> None:
        self.writer_batch.observe(items)
        self.writer_commit.observe(seconds)

    def watch(
        self,
        *,
        rejected: Callable[[], dict[str, int]],
        units: Callable[[], dict[str, int]],
        alarms_open: Callable[[], dict[str, int]],
    ) -> None:
        """Read these at each scrape: refusals by reason, units by state, open alarms by
        kind."""
        self.registry.register(_StateCollector(rejected, units, alarms_open))

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(
        self,
        rejected: Callable[[], dict[str, int]],
        units: Callable[[], dict[str, int]],
        alarms_open: Callable[[], dict[str, int]],
    ) -> None:
        self._rejected = rejected
        self._units = units
        self._alarms_open = alarms_open

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "telecentre_messages_rejected",
            "Messages from units refused, by rejection reason (see docs/protocol.md).",
            labels=["reason"],
        )
        for reason, count in sorted(self._rejected().items()):
            refused.add_metric([reason], count)
        yield refused
        units = self._units()
        yield GaugeMetricFamily(
            "telecentre_units_online",
            "Registered units whose last status is online.",
            value=units.get("online", 0),
        )
        by_state = GaugeMetricFamily(
            "telecentre_units",
            "Registered units by state (unknown: never heard).",
            labels=["state"],
        )
        for state, count in sorted(units.items()):
            by_state.add_metric([state], count)
        yield by_state
        alarms = GaugeMetricFamily(
            "telecentre_alarms_open", "Open alarms, by kind.", labels=["kind"]
        )
        for kind, count in sorted(self._alarms_open().items()):
            alarms.add_metric([kind], count)
        yield alarms

    def describe(self) -> Iterator[Metric]:
        return iter(())  # nothing read at registration time: the store may not be ready
