"""Which skills an event reaches: Knative Trigger filter semantics, one Trigger per filter.

A Trigger's filter is a map of CloudEvent attribute -> value; an event matches
when every listed attribute exists with exactly that value (an empty filter
matches every event). Two filters of one skill that both match deliver twice,
as two Knative Triggers would.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rouse_runtime.agentspec import Agent


@dataclass(frozen=True)
class Route:
    """One Trigger: a skill and the exact-match attribute filter that feeds it."""

    skill: str
    filter: tuple[tuple[str, str], ...]


def routes(agent: Agent) -> list[Route]:
    """Every Trigger of the agent, in spec order."""
    found = []
    for skill in agent["spec"].get("skills") or []:
        for event_filter in skill.get("events") or []:
            pairs = tuple(
                sorted((str(k), str(v)) for k, v in event_filter.items() if v is not None)
            )
            found.append(Route(skill=str(skill["name"]), filter=pairs))
    return found


def matches(route: Route, attributes: Mapping[str, Any]) -> bool:
    """True when every attribute of the filter has exactly that value on the event."""
    return all(
        name in attributes and attributes[name] is not None and str(attributes[name]) == value
        for name, value in route.filter
    )


def targets(all_routes: list[Route], attributes: Mapping[str, Any]) -> list[str]:
    """Skill names to deliver to, once per matching Trigger, in spec order."""
    return [route.skill for route in all_routes if matches(route, attributes)]
