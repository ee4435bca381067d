"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "rouse_operator_reconciles_total",
    "Agent reconciles by result (ok, error, gone: the Agent no longer exists).",
    ["result"],
)
RECONCILE_SECONDS = Histogram(
    "rouse_operator_reconcile_duration_seconds",
    "Wall-clock time of one Agent reconcile.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHILD_WRITES = Counter(
    "rouse_operator_child_writes_total",
    "Children written, by kind and action (created, updated, deleted).",
    ["kind", "action"],
)
RESYNCS = Counter(
    "rouse_operator_resyncs_total",
    "Drift resync rounds completed (every known Agent reconciled once; ROUSE_RESYNC_INTERVAL).",
)
TRACKED_AGENTS = Gauge(
    "rouse_operator_tracked_agents",
    "Agents the operator keeps per-Agent state for, by store (locks, children, known): "
    "follows the Agents in the cluster; growth after Agents are deleted is a leak.",
    ["store"],
)
