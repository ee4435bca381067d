"""Counting that survives scale to zero, proved with real Prometheus and real short-lived runtimes.

Each runtime process serves a few LLM-spending invocations and exits before
Prometheus scrapes it twice (its lifetime is shorter than the scrape interval),
so per-pod counters give `increase()` nothing to see. The ledger, exported by
the long-lived parking service, still gives the policies exact figures.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from rouse_runtime.policies.budget import Usage
from rouse_runtime.policies.warm_pool import SkillWindow
from rouse_runtime.policy_inputs import agent_usage, skill_window
from rouse_runtime.prometheus import PrometheusClient, PrometheusNoDataError
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.parking import start_parking
from rouse_testing.prometheus import PrometheusServer, prometheus_server
from rouse_testing.runtime import start_runtime
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.integration

SCRAPE_INTERVAL = 10.0  # longer than a runtime process lives here (printed)
PROCESSES = 6
EVENTS_EACH = 3
PRICES = {"m": {"input": 1.5, "output": 2.0}}  # USD per 1M tokens
SKILL = """
async def spend(event, ctx):
    await ctx.llm.chat([{"role": "user", "content": "hi"}])
    return None
"""


@pytest.fixture
def prometheus() -> Iterator[PrometheusServer]:
    with prometheus_server(scrape_interval=SCRAPE_INTERVAL) as server:
        yield server


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = start_openai_server(prompt_tokens=7, completion_tokens=3)
    yield server
    server.stop()


def event(n: int) -> dict[str, object]:
    return {
        "headers": {
            "ce-specversion": "1.0",
            "ce-id": f"{uuid.uuid4()}-{n}",
            "ce-source": "/test",
            "ce-type": "com.example.work",
            "content-type": "application/json",
        },
        "content": b"{}",
    }


async def policy_figures(url: str) -> tuple[SkillWindow, Usage, Usage]:
    """The agent's figures in its namespace, and a same-named agent's in another (never ran)."""
    async with PrometheusClient(url) as client:
        window = await skill_window(client, "team-a", "shorty", "work", 600)
        usage = await agent_usage(client, "team-a", "shorty", datetime.now(UTC))
        other = await agent_usage(client, "team-b", "shorty", datetime.now(UTC))
        return window, usage, other


async def instant(url: str, promql: str) -> float:
    async with PrometheusClient(url) as client:
        samples = await client.query(promql)
        return samples[0].value if samples else 0.0


def test_short_lived_runtimes_are_counted_exactly(
    tmp_path: Path, prometheus: PrometheusServer, llm: FakeLLM
) -> None:
    (tmp_path / "skills").mkdir()
    (tmp_path / "skills" / "spender.py").write_text(SKILL)
    state_url = f"sqlite:///{tmp_path}/state.db"
    parking = start_parking(tmp_path, state_url)
    targets = [f"127.0.0.1:{parking.port}"]
    prometheus.set_targets(targets)
    prometheus.wait_scraped(targets[0])
    env = {
        "ROUSE_HANDLER": "spender:spend",
        "ROUSE_AGENT": "shorty",
        "ROUSE_SKILL": "work",
        "ROUSE_NAMESPACE": "team-a",
        "ROUSE_STATE_URL": state_url,
        "ROUSE_LLM_BASE_URL": llm.url,
        "ROUSE_LLM_MODEL": "m",
        "ROUSE_LLM_PRICES": json.dumps(PRICES),
    }
    lifetimes = []
    try:
        for _ in range(PROCESSES):
            started = time.monotonic()
            runtime = start_runtime(env, tmp_path / "skills")
            # Prometheus is told about every pod as it starts, as Kubernetes SD would.
            targets.append(runtime.url.removeprefix("http://"))
            prometheus.set_targets(targets)
            try:
                for n in range(EVENTS_EACH):
                    answer = httpx.post(runtime.url, timeout=10, **event(n))  # type: ignore[arg-type]
                    assert answer.status_code == 202, answer.text
            finally:
                runtime.stop()
            lifetimes.append(time.monotonic() - started)
        print(f"\nruntime lifetimes (s): {[round(t, 1) for t in lifetimes]}")

        invocations = PROCESSES * EVENTS_EACH
        exact = (
            SkillWindow(invocations=invocations, cold_starts=PROCESSES),
            Usage(tokens=invocations * 10, cost_usd=invocations * 16_500 / 1e9),
            # Nothing recorded for team-b's agent: 0, and said to be no data, not a spent 0.
            Usage(tokens=0, cost_usd=0, recorded=False),
        )
        seen: list[object] = []

        def exact_in_prometheus() -> bool:
            seen.append(asyncio.run(policy_figures(prometheus.url)))
            return seen[-1] == exact

        wait_until(
            exact_in_prometheus,
            timeout=4 * SCRAPE_INTERVAL,
            interval=0.5,
            what=f"ledger figures {exact} in Prometheus (last seen: {seen[-1:]})",
        )
        # What per-pod counters give: increase() needs two samples of a series, and none
        # of these pods lived long enough to be scraped twice.
        pod_total = asyncio.run(
            instant(prometheus.url, 'sum(increase(rouse_invocations_total{agent="shorty"}[10m]))')
        )
        print(f"\nledger: {invocations} invocations exact; per-pod increase(): {pod_total:g}")
        assert pod_total < invocations
    finally:
        parking.stop()


async def test_a_missing_exporter_is_a_gap_not_a_zero(prometheus: PrometheusServer) -> None:
    async with PrometheusClient(prometheus.url) as client:
        with pytest.raises(PrometheusNoDataError):
            await skill_window(client, "", "nobody", "work", 600)
        with pytest.raises(PrometheusNoDataError):
            await agent_usage(client, "", "nobody", datetime.now(UTC))
