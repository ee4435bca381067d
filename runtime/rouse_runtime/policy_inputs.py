"""What the policies read from Prometheus: the ledger's exact figures, as PromQL.

The ledger's counters come from a long-lived exporter (the parking service), so
a plain difference against `offset <window>` is exact where `increase()` would
extrapolate. Every query is guarded by `rouse_ledger_day_info`, present whenever
the exporter is scraped: "no series" then means zero, and a missing exporter
(or a day it has not rolled over to yet) is a gap (`PrometheusNoDataError`),
never a zero the policies would act on.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from rouse_runtime.ledger import utc_day
from rouse_runtime.policies.budget import Usage
from rouse_runtime.policies.warm_pool import SkillWindow
from rouse_runtime.prometheus import PrometheusClient


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def selector(**labels: str) -> str:
    """`{a="x",b="y"}` with values escaped for PromQL."""
    return "{" + ",".join(f'{k}="{_quote(v)}"' for k, v in labels.items()) + "}"


def window_query(metric: str, namespace: str, agent: str, skill: str, window_seconds: float) -> str:
    """Exact growth of a ledger counter over the window (0 when the skill never ran)."""
    series = f"{metric}{selector(namespace=namespace, agent=agent, skill=skill)}"
    window = f"{int(window_seconds)}s"
    return (
        f"((sum({series}) or vector(0)) - (sum({series} offset {window}) or vector(0)))"
        " and on() max(rouse_ledger_day_info)"
    )


def today_query(
    metric: str, namespace: str, agent: str, day: str, *, aggregate: str = "sum"
) -> str:
    """An agent's figure for the UTC day (0 when it spent nothing, empty if not rolled over).

    `aggregate="count"` counts the agent's ledger lines instead: 0 tells "nothing
    recorded" from a recorded 0.
    """
    series = f"{metric}{selector(namespace=namespace, agent=agent, day=day)}"
    guard = f"max(rouse_ledger_day_info{selector(day=day)})"
    return f"({aggregate}({series}) or vector(0)) and on() {guard}"


async def skill_window(
    client: PrometheusClient,
    namespace: str,
    agent: str,
    skill: str,
    window_seconds: float,
    *,
    at: datetime | None = None,
) -> SkillWindow:
    """Invocations and cold starts of a skill over the window; PrometheusError on a gap."""
    invocations, cold_starts = await asyncio.gather(
        client.value(
            window_query("rouse_ledger_invocations_total", namespace, agent, skill, window_seconds),
            at=at,
        ),
        client.value(
            window_query("rouse_ledger_cold_starts_total", namespace, agent, skill, window_seconds),
            at=at,
        ),
    )
    return SkillWindow(invocations=invocations, cold_starts=cold_starts)


async def agent_usage(client: PrometheusClient, namespace: str, agent: str, now: datetime) -> Usage:
    """Tokens and cost of an agent since 00:00 UTC; PrometheusError on a gap."""
    day = utc_day(now)
    tokens, cost, lines, unpriced = await asyncio.gather(
        client.value(today_query("rouse_ledger_tokens_today", namespace, agent, day)),
        client.value(today_query("rouse_ledger_cost_usd_today", namespace, agent, day)),
        client.value(
            today_query("rouse_ledger_tokens_today", namespace, agent, day, aggregate="count")
        ),
        client.value(today_query("rouse_ledger_unpriced_tokens_today", namespace, agent, day)),
    )
    return Usage(tokens=tokens, cost_usd=cost, recorded=lines > 0, unpriced_tokens=unpriced)


def parked_query(namespace: str, agent: str) -> str:
    """Events the parking service holds for an agent (0 when none; empty without the exporter)."""
    series = f"rouse_parked_events{selector(namespace=namespace, agent=agent, kind='park')}"
    return f"(sum({series}) or vector(0)) and on() max(rouse_ledger_day_info)"


async def parked_events(client: PrometheusClient, namespace: str, agent: str) -> float:
    """How many events are parked for the agent; PrometheusError on a gap."""
    return await client.value(parked_query(namespace, agent))
