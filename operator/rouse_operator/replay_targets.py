"""Where an Agent's parked events are replayed: each skill's own address, once it is back.

Pure: the Agent and its children (as the operator's cache holds them) in, the
replay request's `targets` out, or why the replay must wait. An event was
parked in place of one skill's delivery, so it goes back to that skill only, at
the address Knative resolved for the restored Trigger (`status.subscriberUri`;
a schedule's ticks come through a Trigger too, pingsource.py) with the skill's
delivery spec. Until every Trigger of the agent is Ready on its restored
subscriber (not the parking sink any more), the replay waits: events it sent
while a Trigger still parked would be parked again.
"""

from __future__ import annotations

from typing import Any

from rouse_runtime import agentspec

from rouse_operator.resources.meta import TRIGGER, ChildKind
from rouse_operator.status import readiness

Obj = dict[str, Any]


def _restored(obj: Obj | None, what: str, field: str, parking_url: str) -> tuple[str | None, str]:
    """(address, "") when `obj` is Ready on a subscriber other than the parking service."""
    ready = readiness(obj, what)
    if ready.status != "True":
        return None, f"{what} not Ready yet ({ready.reason})"
    address = str(((obj or {}).get("status") or {}).get(field) or "")
    if not address:
        return None, f"{what} has no {field} yet"
    if address.startswith(parking_url.rstrip("/") + "/"):
        return None, f"{what} still delivers to the parking service"
    return address, ""


def replay_targets(
    agent: Obj, children: dict[ChildKind, dict[str, Obj]], parking_url: str
) -> tuple[dict[str, Obj] | None, str]:
    """({skill: {"url", "delivery"}}, "") when every subscriber is restored, else (None, why)."""
    name = agent["metadata"]["name"]
    targets: dict[str, Obj] = {}
    for skill in agent["spec"]["skills"]:
        names = [
            agentspec.trigger_name(name, skill["name"], index)
            for index in range(len(skill.get("events") or []))
        ]
        ticks = agentspec.pingsource_name(name, skill["name"])  # its schedule's Trigger
        if skill.get("schedule"):
            names.append(ticks)
        address: str | None = None
        for tname in names:
            obj = children.get(TRIGGER, {}).get(tname)
            if obj is None and tname == ticks:  # no schedule Trigger (e.g. InvalidSchedule)
                continue
            found, why = _restored(obj, f"Trigger {tname}", "subscriberUri", parking_url)
            if found is None:
                return None, why
            address = address or found
        if address is not None:
            delivery = {k: v for k, v in (skill.get("delivery") or {}).items() if k != "deadLetter"}
            targets[skill["name"]] = {"url": address, "delivery": delivery}
    return targets, ""
