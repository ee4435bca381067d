"""A scheduled skill: a PingSource into the agent's broker and a Trigger from it to the skill.

A PingSource, like every event source, ignores what its sink answers: sunk straight into the
skill's Service, the skill's reply would be dropped. Through the broker the tick is delivered
by a Trigger, so the reply re-enters the broker like any other skill's (as in `rouse dev`),
and the tick gets the skill's retries and dead-letter sink; while the budget is spent that
Trigger points at the parking sink like the skill's other Triggers. The Trigger filters on
the PingSource's exact type and source: only this schedule's ticks wake the skill.
"""

from __future__ import annotations

import json
from typing import Any

from rouse_runtime import agentspec

from rouse_operator.resources import trigger
from rouse_operator.resources.meta import BROKER, PINGSOURCE, Manifest, child
from rouse_operator.settings import Settings


def build(agent: Manifest, skill: dict[str, Any]) -> Manifest:
    """The PingSource named <agent>-<skill>-cron; its sink is the agent's broker."""
    schedule = skill["schedule"]
    broker = agent["spec"].get("broker", "default")
    spec = {
        "schedule": schedule["cron"],
        "timezone": "UTC",
        "contentType": "application/json",
        "data": json.dumps(schedule.get("data") or {}, sort_keys=True, separators=(",", ":")),
        "sink": {"ref": {"apiVersion": BROKER.api_version, "kind": BROKER.kind, "name": broker}},
    }
    name = agentspec.pingsource_name(agent["metadata"]["name"], skill["name"])
    return child(PINGSOURCE, name, agent, skill["name"], spec)


def build_trigger(
    agent: Manifest, skill: dict[str, Any], settings: Settings, parked: bool
) -> Manifest:
    """The Trigger that delivers the PingSource's ticks to the skill, named as the PingSource."""
    meta = agent["metadata"]
    name = agentspec.pingsource_name(meta["name"], skill["name"])
    ticks = {
        "type": agentspec.PING_TYPE,
        "source": agentspec.ping_source(meta["namespace"], meta["name"], skill["name"]),
    }
    return trigger.to_skill(agent, skill, name, ticks, settings, parked)
