"""The PingSource of a scheduled skill: a JSON event into the skill on each cron tick."""

from __future__ import annotations

import json
from typing import Any

from rouse_runtime import agentspec

from rouse_operator.resources.meta import PINGSOURCE, Manifest, child
from rouse_operator.resources.trigger import subscriber
from rouse_operator.settings import Settings


def build(agent: Manifest, skill: dict[str, Any], settings: Settings, parked: bool) -> Manifest:
    """The PingSource named <agent>-<skill>-cron; its sink is the skill (or parking)."""
    schedule = skill["schedule"]
    spec = {
        "schedule": schedule["cron"],
        "timezone": "UTC",
        "contentType": "application/json",
        "data": json.dumps(schedule.get("data") or {}, sort_keys=True, separators=(",", ":")),
        "sink": subscriber(agent, skill, settings, parked),
    }
    name = agentspec.pingsource_name(agent["metadata"]["name"], skill["name"])
    return child(PINGSOURCE, name, agent, skill["name"], spec)
