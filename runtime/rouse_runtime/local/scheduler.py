"""Schedules: a PingSource per skill ``schedule``, fired from its cron by croniter.

The event is what a Knative PingSource sends (type ``dev.knative.sources.ping``,
source ``/apis/v1/namespaces/<ns>/pingsources/<name>``, the schedule's data)
and goes to the skill alone, as in a cluster the PingSource's Trigger (exact
type and source) delivers it; the skill's reply enters the broker. Cron times
are UTC unless the schedule names a ``timezone``; a 6th field is seconds
(croniter's extension, handy in tests). The clock is
injectable so tests need not wait for a minute boundary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from cloudevents.http import CloudEvent
from croniter import croniter

from rouse_runtime.agentspec import PING_TYPE as PING_TYPE
from rouse_runtime.agentspec import Agent, Skill, ping_source
from rouse_runtime.local.broker import new_event

LOCAL_NAMESPACE = "default"

Clock = Callable[[], float]
Fire = Callable[[str, CloudEvent], Any]


@dataclass(frozen=True)
class Schedule:
    """One skill's cron schedule."""

    skill: str
    cron: str
    timezone: str
    data: Any
    source: str


def schedules(agent: Agent) -> list[Schedule]:
    """Every schedule of the agent; an invalid cron raises ValueError naming the skill."""
    found = []
    agent_name = str(agent["metadata"]["name"])
    for skill in agent["spec"].get("skills") or []:
        found.extend(_schedule(agent_name, skill))
    return found


def _schedule(agent_name: str, skill: Skill) -> list[Schedule]:
    spec = skill.get("schedule")
    if not spec:
        return []
    cron = str(spec["cron"])
    if not croniter.is_valid(cron):
        raise ValueError(
            f"skill {skill['name']}: schedule.cron {cron!r} is not a valid cron expression"
        )
    return [
        Schedule(
            skill=str(skill["name"]),
            cron=cron,
            timezone=str(spec.get("timezone") or "UTC"),
            data=spec.get("data"),
            source=ping_source(LOCAL_NAMESPACE, agent_name, str(skill["name"])),
        )
    ]


def next_fire(schedule: Schedule, after: float) -> float:
    """Epoch seconds of the first cron time strictly after ``after``."""
    zone = UTC if schedule.timezone == "UTC" else ZoneInfo(schedule.timezone)
    start = datetime.fromtimestamp(after, tz=zone)
    return float(croniter(schedule.cron, start).get_next(float))


def ping_event(schedule: Schedule) -> CloudEvent:
    """The CloudEvent a PingSource would send for this schedule."""
    return new_event(PING_TYPE, schedule.source, schedule.data if schedule.data is not None else {})


async def run_schedule(schedule: Schedule, fire: Fire, *, clock: Clock = time.time) -> None:
    """Fire ``schedule`` at each cron time, forever (cancel the task to stop)."""
    last = clock()
    while True:
        due = next_fire(schedule, last)
        await _sleep_until(due, clock)
        last = due
        fire(schedule.skill, ping_event(schedule))


async def _sleep_until(due: float, clock: Clock) -> None:
    """Sleep in short steps so a clock that jumps (suspend, tests) is noticed."""
    while True:
        remaining = due - clock()
        if remaining <= 0:
            return
        await asyncio.sleep(min(remaining, 1.0))
