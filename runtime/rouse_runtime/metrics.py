"""The runtime's Prometheus metrics, named exactly as the design contract says.

The figures live in small plain objects (a number behind a lock, a histogram's
bucket counts) and reach prometheus_client only when /metrics is scraped, as a
custom collector (prometheus_client's own pattern for values kept elsewhere):
importing prometheus_client pulls in its exposition (http.server, wsgiref,
urllib), about a tenth of a cold start that the first event does not need, and
an observation here costs less than a prometheus_client child's. `_created`
series are not emitted: they double the series count and the policies read only
the counters.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

OUTCOMES = ("ok", "error", "budget_exceeded", "duplicate", "suspended", "cancelled")
LIMITS = ("steps", "tool_calls", "tokens", "timeout")
DURATION_BUCKETS = (0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
BASE_LABELS = ("agent", "skill")


class Value:
    """A counter's or a gauge's number; safe to change from a plain `def` skill's thread."""

    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self._lock = threading.Lock()

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount

    def dec(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value -= amount

    def set(self, value: float) -> None:
        self.value = float(value)


class Durations:
    """A histogram: observations counted in buckets by upper bound (`le`, +Inf last), and their sum."""

    __slots__ = ("_lock", "bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)  # the first bucket with value <= le
        with self._lock:
            self.counts[index] += 1
            self.sum += value

    def cumulative(self) -> tuple[list[int], float]:
        """Counts per bucket, each including the ones below (Prometheus' form), and the sum."""
        with self._lock:
            counts, total = list(self.counts), self.sum
        running = 0
        for index, count in enumerate(counts):
            running += count
            counts[index] = running
        return counts, total


class Metrics:
    """Counters and gauges for one skill (`agent`, `skill` bound)."""

    def __init__(self, agent: str, skill: str) -> None:
        self._labels = [agent, skill]
        self.invocations = {outcome: Value() for outcome in OUTCOMES}
        self.duration = Durations(DURATION_BUCKETS)
        self.cold_starts = Value()
        self.startup = Value()
        self.inflight = Value()
        self.tool_calls = Value()
        self.steps = Value()
        self.budget_exceeded = {limit: Value() for limit in LIMITS}
        self.stop_marks_read = Value()  # unix time the last read of the stop marks began
        self._tokens: dict[tuple[str, str], Value] = {}  # (model, kind)
        self._cost: dict[str, Value] = {}  # model
        self._tool_seconds: dict[tuple[str, str, str], Durations] = {}  # (server, tool, outcome)
        self._registry: CollectorRegistry | None = None

    def tokens(self, model: str, input_tokens: int, output_tokens: int, cost_usd: float) -> None:
        """Count one LLM call's usage."""
        self._tokens.setdefault((model, "input"), Value()).inc(input_tokens)
        self._tokens.setdefault((model, "output"), Value()).inc(output_tokens)
        self._cost.setdefault(model, Value()).inc(cost_usd)

    def tool_call(self, server: str, tool: str, outcome: str, seconds: float) -> None:
        """Time one MCP tool call (outcome ok, error or unavailable)."""
        key = (server, tool, outcome)
        durations = self._tool_seconds.get(key)
        if durations is None:
            durations = self._tool_seconds.setdefault(key, Durations(DURATION_BUCKETS))
        durations.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        """The metric families as prometheus_client exposes them (a registry calls this)."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        from prometheus_client.utils import floatToGoString

        base, labels = list(BASE_LABELS), self._labels

        def counter(name: str, doc: str, value: Value) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=base)
            family.add_metric(labels, value.value)
            return family

        def gauge(name: str, doc: str, value: Value) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=base)
            family.add_metric(labels, value.value)
            return family

        invocations = CounterMetricFamily(
            "rouse_invocations", "Invocations by outcome.", labels=[*base, "outcome"]
        )
        for outcome, value in self.invocations.items():
            invocations.add_metric([*labels, outcome], value.value)
        yield invocations
        duration = HistogramMetricFamily(
            "rouse_invocation_duration_seconds", "Wall-clock time of an invocation.", labels=base
        )
        counts, total = self.duration.cumulative()
        bounds = [*map(floatToGoString, self.duration.bounds), "+Inf"]
        duration.add_metric(labels, list(zip(bounds, counts, strict=True)), total)
        yield duration
        yield counter(
            "rouse_cold_starts",
            "Invocations that were the first of their process.",
            self.cold_starts,
        )
        yield gauge(
            "rouse_startup_seconds",
            "Seconds from process start to ready (handler imported, app started, before listening).",
            self.startup,
        )
        yield gauge("rouse_inflight", "Invocations running now.", self.inflight)
        tokens = CounterMetricFamily(
            "rouse_tokens", "LLM tokens used, by model and kind.", labels=[*base, "model", "kind"]
        )
        for (model, kind), value in list(self._tokens.items()):
            tokens.add_metric([*labels, model, kind], value.value)
        yield tokens
        cost = CounterMetricFamily(
            "rouse_cost_usd", "LLM cost in USD by model.", labels=[*base, "model"]
        )
        for model, value in list(self._cost.items()):
            cost.add_metric([*labels, model], value.value)
        yield cost
        yield counter("rouse_tool_calls", "Tool calls made by skills.", self.tool_calls)
        tool_seconds = HistogramMetricFamily(
            "rouse_tool_call_duration_seconds",
            "Wall-clock time of an MCP tool call, by server, tool and outcome.",
            labels=[*base, "server", "tool", "outcome"],
        )
        for (server, tool, outcome), durations in list(self._tool_seconds.items()):
            counts, total = durations.cumulative()
            buckets = list(zip(bounds, counts, strict=True))
            tool_seconds.add_metric([*labels, server, tool, outcome], buckets, total)
        yield tool_seconds
        yield counter("rouse_steps", "Steps taken by skills.", self.steps)
        exceeded = CounterMetricFamily(
            "rouse_budget_exceeded",
            "Invocations stopped by a per-invocation budget, by limit.",
            labels=[*base, "limit"],
        )
        for limit, value in self.budget_exceeded.items():
            exceeded.add_metric([*labels, limit], value.value)
        yield exceeded
        yield gauge(
            "rouse_stop_marks_read_timestamp_seconds",
            "Unix time the last read of the agent's stop marks (kill switch, cancelled runs)"
            " began; 0 before the first. Events are checked against that view.",
            self.stop_marks_read,
        )

    def render(self) -> tuple[bytes, str]:
        """The text exposition (with the process, platform and GC collectors) and its content type."""
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            GC_COLLECTOR,
            PLATFORM_COLLECTOR,
            PROCESS_COLLECTOR,
            CollectorRegistry,
            generate_latest,
        )

        if self._registry is None:
            registry = CollectorRegistry()
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, self):
                registry.register(collector)
            self._registry = registry
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
