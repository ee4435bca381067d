"""The runtime's metrics expose what prometheus_client's own metric classes would.

Metrics keeps plain values and hands them to prometheus_client only on a scrape
(so a cold start does not import it); each family must read exactly like the
Counter, Gauge or Histogram it replaces, label order and bucket bounds included.
"""

from __future__ import annotations

import subprocess
import sys
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from rouse_runtime.metrics import DURATION_BUCKETS, Metrics

OBSERVED = (0.001, 0.005, 0.0051, 0.3, 1.0, 7.5, 1800.0, 4000.0)


def samples(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def own_text(metrics: Metrics) -> str:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return body.decode()


def test_histogram_reads_like_prometheus_client() -> None:
    metrics = Metrics("shop", "triage")
    reference = CollectorRegistry()
    histogram = Histogram(
        "rouse_invocation_duration_seconds",
        "Wall-clock time of an invocation.",
        ["agent", "skill"],
        buckets=DURATION_BUCKETS,
        registry=reference,
    ).labels(agent="shop", skill="triage")
    for value in OBSERVED:
        metrics.duration.observe(value)
        histogram.observe(value)
    expected = [
        line
        for line in samples(generate_latest(reference).decode(), "rouse_invocation_duration")
        if "_created" not in line
    ]
    assert samples(own_text(metrics), "rouse_invocation_duration") == expected


def test_counters_and_gauges_read_like_prometheus_client() -> None:
    metrics = Metrics("shop", "triage")
    reference = CollectorRegistry()
    invocations = Counter(
        "rouse_invocations", "Invocations by outcome.", ["agent", "skill", "outcome"],
        registry=reference,
    )  # fmt: skip
    inflight = Gauge(
        "rouse_inflight", "Invocations running now.", ["agent", "skill"], registry=reference
    )
    tokens = Counter(
        "rouse_tokens", "LLM tokens used, by model and kind.", ["agent", "skill", "model", "kind"],
        registry=reference,
    )  # fmt: skip
    for outcome in ("ok", "ok", "error"):
        metrics.invocations[outcome].inc()
        invocations.labels(agent="shop", skill="triage", outcome=outcome).inc()
    metrics.inflight.inc()
    metrics.inflight.inc()
    metrics.inflight.dec()
    inflight.labels(agent="shop", skill="triage").set(1)
    metrics.tokens("gpt-test", 1200, 300, 0.25)
    tokens.labels(agent="shop", skill="triage", model="gpt-test", kind="input").inc(1200)
    tokens.labels(agent="shop", skill="triage", model="gpt-test", kind="output").inc(300)
    ours, theirs = own_text(metrics), generate_latest(reference).decode()
    for line in samples(theirs, "rouse_"):
        if "_created" not in line:
            assert line in ours, line
    # Every outcome is present from the start, at zero, as with bound children.
    assert 'rouse_invocations_total{agent="shop",outcome="suspended",skill="triage"} 0.0' in ours


def test_counts_from_threads_are_not_lost() -> None:
    metrics = Metrics("a", "s")

    def work() -> None:
        for _ in range(20_000):
            metrics.steps.inc()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 'rouse_steps_total{agent="a",skill="s"} 80000.0' in own_text(metrics)


def test_the_skill_server_does_not_import_prometheus_client_before_a_scrape() -> None:
    code = (
        "import sys, rouse_runtime.__main__, rouse_runtime.server;"
        "print('prometheus_client' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=True
    )
    assert result.stdout.decode().strip() == "False"
