"""What the policies decided, as the builders read it from the Agent's status.

The warm-pool policy writes `status.warmPool.skills[].minScale`; the budget policy
writes `status.budget.exhausted`. The reconciler turns those into the min-scale on
the skills' serving Revisions (floor.py) and the Triggers' subscriber, so it (the only
writer of children) never fights the policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Agent = dict[str, Any]


@dataclass(frozen=True)
class PolicyInputs:
    """min-scale per skill, and whether events are parked."""

    min_scale: dict[str, int] = field(default_factory=dict)
    parked: bool = False
    exhausted: bool = False


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(value, high))


def policy_inputs(agent: Agent) -> PolicyInputs:
    """Each skill's min-scale within [scaling.min, min(warmPool.max, scaling.max)]; parking."""
    spec = agent["spec"]
    status = agent.get("status") or {}
    exhausted = bool((status.get("budget") or {}).get("exhausted"))
    parked = exhausted and (spec.get("budget") or {}).get("onExhausted", "park") == "park"
    decisions = {
        str(d.get("name")): d.get("minScale")
        for d in (status.get("warmPool") or {}).get("skills") or []
        if isinstance(d, dict)
    }
    pool = spec.get("warmPool")
    min_scale: dict[str, int] = {}
    for skill in spec["skills"]:
        scaling = skill.get("scaling") or {}
        low, high = int(scaling.get("min", 0)), int(scaling.get("max", 10))
        wanted = decisions.get(skill["name"])
        if pool is None or exhausted or not isinstance(wanted, int):
            min_scale[skill["name"]] = low
        else:
            ceiling = max(low, min(int(pool.get("max", 0)), high))
            min_scale[skill["name"]] = _clamp(wanted, low, ceiling)
    return PolicyInputs(min_scale=min_scale, parked=parked, exhausted=exhausted)
