"""The Triggers of one skill: one per event filter, with the skill's delivery spec."""

from __future__ import annotations

from typing import Any

from rouse_runtime import agentspec

from rouse_operator.resources.meta import SERVICE, TRIGGER, Manifest, child
from rouse_operator.settings import Settings


def delivery(agent: Manifest, skill: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Retries and backoff from the skill; a dead-letter sink in Rouse's parking service."""
    spec = skill.get("delivery") or {}
    result: dict[str, Any] = {
        "retry": int(spec.get("retries", 3)),
        "backoffPolicy": spec.get("backoffPolicy", "exponential"),
        "backoffDelay": spec.get("backoffDelay", "PT1S"),
    }
    if spec.get("deadLetter", True):
        meta = agent["metadata"]
        url = settings.dead_letter_url(meta["namespace"], meta["name"], skill["name"])
        result["deadLetterSink"] = {"uri": url}
    return result


def subscriber(agent: Manifest, skill: dict[str, Any], settings: Settings, parked: bool) -> Any:
    """The skill's Service; the parking sink while the agent's budget is spent."""
    meta = agent["metadata"]
    if parked:
        return {"uri": settings.parking_sink_url(meta["namespace"], meta["name"], skill["name"])}
    name = agentspec.service_name(meta["name"], skill["name"])
    return {"ref": {"apiVersion": SERVICE.api_version, "kind": SERVICE.kind, "name": name}}


def build(
    agent: Manifest, skill: dict[str, Any], index: int, settings: Settings, parked: bool
) -> Manifest:
    """The Trigger for the skill's `index`-th event filter, named <agent>-<skill>-<index>."""
    name = agentspec.trigger_name(agent["metadata"]["name"], skill["name"], index)
    return to_skill(agent, skill, name, dict(skill["events"][index]), settings, parked)


def to_skill(
    agent: Manifest,
    skill: dict[str, Any],
    name: str,
    attributes: dict[str, str],
    settings: Settings,
    parked: bool,
) -> Manifest:
    """A Trigger `name` from the agent's broker to the skill, for events with `attributes`."""
    spec = {
        "broker": agent["spec"].get("broker", "default"),
        "filter": {"attributes": attributes},
        "subscriber": subscriber(agent, skill, settings, parked),
        "delivery": delivery(agent, skill, settings),
    }
    return child(TRIGGER, name, agent, skill["name"], spec)
