"""The runtime's Prometheus metrics, named exactly as the design contract says.

Each app gets its own registry (so tests can run several apps in one process);
children for the fixed `agent`/`skill` labels are bound once, keeping the hot
path to a dict lookup per observation. `_created` series are disabled: they
double the series count and the policies read only the counters.
"""

from __future__ import annotations

import prometheus_client
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST

OUTCOMES = ("ok", "error", "budget_exceeded", "duplicate", "suspended")
LIMITS = ("steps", "tool_calls", "tokens", "timeout")
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class Metrics:
    """Counters and gauges for one skill (`agent`, `skill` bound)."""

    def __init__(self, agent: str, skill: str, registry: CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else CollectorRegistry(auto_describe=True)
        if registry is None:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                reg.register(collector)
        self.registry = reg
        base = ("agent", "skill")
        labels = {"agent": agent, "skill": skill}
        invocations = Counter(
            "rouse_invocations", "Invocations by outcome.", [*base, "outcome"], registry=reg
        )
        self.invocations = {o: invocations.labels(**labels, outcome=o) for o in OUTCOMES}
        self.duration = Histogram(
            "rouse_invocation_duration_seconds",
            "Wall-clock time of an invocation.",
            base,
            buckets=DURATION_BUCKETS,
            registry=reg,
        ).labels(**labels)
        self.cold_starts = Counter(
            "rouse_cold_starts",
            "Invocations that were the first of their process.",
            base,
            registry=reg,
        ).labels(**labels)
        self.startup = Gauge(
            "rouse_startup_seconds",
            "Seconds from process start to ready (handler imported, app started, before listening).",
            base,
            registry=reg,
        ).labels(**labels)
        self.inflight = Gauge(
            "rouse_inflight", "Invocations running now.", base, registry=reg
        ).labels(**labels)
        self._tokens = Counter(
            "rouse_tokens",
            "LLM tokens used, by model and kind.",
            [*base, "model", "kind"],
            registry=reg,
        )
        self._cost = Counter(
            "rouse_cost_usd", "LLM cost in USD by model.", [*base, "model"], registry=reg
        )
        self.tool_calls = Counter(
            "rouse_tool_calls", "Tool calls made by skills.", base, registry=reg
        ).labels(**labels)
        self.steps = Counter("rouse_steps", "Steps taken by skills.", base, registry=reg).labels(
            **labels
        )
        exceeded = Counter(
            "rouse_budget_exceeded",
            "Invocations stopped by a per-invocation budget, by limit.",
            [*base, "limit"],
            registry=reg,
        )
        self.budget_exceeded = {lim: exceeded.labels(**labels, limit=lim) for lim in LIMITS}
        self._labels = labels

    def tokens(self, model: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        """Count one LLM call's usage."""
        self._tokens.labels(**self._labels, model=model, kind="input").inc(input_tokens)
        self._tokens.labels(**self._labels, model=model, kind="output").inc(output_tokens)
        self._cost.labels(**self._labels, model=model).inc(cost_usd)

    def render(self) -> bytes:
        """The text exposition of this registry."""
        return prometheus_client.generate_latest(self.registry)
