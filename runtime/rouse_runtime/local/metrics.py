"""The local broker's own Prometheus metrics (each skill process serves its own /metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# No `_created` series (they double the series count; nothing reads them). This process got
# it from importing the skill server's metrics module, which no longer uses these classes.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]


@dataclass
class LocalMetrics:
    """Counters and gauges of routing, delivery and the process pools."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        labels = ["agent", "skill"]
        self.events = Counter(
            "rouse_local_events_total",
            "Events accepted by the local broker, by outcome (routed, unroutable, rejected)",
            ["agent", "outcome"],
            registry=self.registry,
        )
        self.deliveries = Counter(
            "rouse_local_deliveries_total",
            "Deliveries to skills by final outcome (replied, accepted, dead_lettered, failed)",
            [*labels, "outcome"],
            registry=self.registry,
        )
        self.retries = Counter(
            "rouse_local_retries_total", "Delivery retries", labels, registry=self.registry
        )
        self.processes = Gauge(
            "rouse_local_processes", "Skill runtime processes alive", labels, registry=self.registry
        )
        self.inflight = Gauge(
            "rouse_local_inflight",
            "Events being handled or waiting for a process",
            labels,
            registry=self.registry,
        )
        self.cold_starts = Counter(
            "rouse_local_cold_starts_total",
            "Deliveries that waited for a skill process to start",
            labels,
            registry=self.registry,
        )
        self.start_seconds = Histogram(
            "rouse_local_process_start_seconds",
            "Spawn to /readyz of a skill process",
            labels,
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32),
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "rouse_local_dead_letters_total",
            "Events stored as dead letters",
            labels,
            registry=self.registry,
        )
        self.schedules = Counter(
            "rouse_local_schedule_fires_total",
            "Schedule (PingSource) events fired",
            labels,
            registry=self.registry,
        )
