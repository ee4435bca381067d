"""An Agent's status from its children's own conditions. Pure: objects in, status dict out.

Conditions (Kubernetes shape): SkillsReady from the Knative Services, TriggersReady
from the Triggers and PingSources (and the Broker and schedules), Ready from both.
WithinBudget and WarmPoolApplied belong to the policies and are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rouse_runtime import agentspec

from rouse_operator.conditions import condition, stamp, summarize
from rouse_operator.resources.meta import PINGSOURCE, SERVICE, TRIGGER, ChildKind
from rouse_operator.resources.service import MIN_SCALE

Obj = dict[str, Any]
OWN_CONDITIONS = ("Ready", "SkillsReady", "TriggersReady")
READY, SKILLS_READY, TRIGGERS_READY = OWN_CONDITIONS


@dataclass(frozen=True)
class Problem:
    """Something only the operator can judge (broker missing, bad cron, name conflict)."""

    condition: str  # Ready, SkillsReady or TriggersReady
    reason: str
    message: str
    skill: str = ""  # the skill it concerns, if one


@dataclass(frozen=True)
class Readiness:
    """One child's readiness as Knative reports it."""

    status: str  # True | False | Unknown
    reason: str
    message: str


def readiness(obj: Obj | None, what: str) -> Readiness:
    """The Ready condition of a Knative object, Unknown until its controller has looked at it."""
    if obj is None:
        return Readiness("Unknown", "NotFound", f"{what} does not exist yet")
    status = obj.get("status") or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed != generation:
        return Readiness(
            "Unknown", "Deploying", f"{what}: generation {generation} not observed yet"
        )
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    if ready is None:
        return Readiness("Unknown", "Deploying", f"{what} has no Ready condition yet")
    state = str(ready.get("status", "Unknown"))
    reason = str(ready.get("reason") or ("Ready" if state == "True" else "NotReady"))
    detail = str(ready.get("message") or "")
    if state == "False":
        # A Service's Ready says only "no ready Revision"; the cause (a container that exits,
        # with its message) is in ConfigurationsReady. Name the most specific one.
        cause = _cause(status.get("conditions") or [], detail)
        if cause:
            detail = f"{detail} {cause}" if detail else cause
    return Readiness(state, reason, f"{what}: {detail}" if detail else what)


def _cause(conditions: Sequence[Obj], ready_message: str) -> str:
    """Messages of the other False conditions that say more than Ready's own message."""
    messages = [
        str(c.get("message") or "")
        for c in conditions
        if c.get("type") != "Ready" and c.get("status") == "False"
    ]
    return " ".join(dict.fromkeys(m for m in messages if m and m not in ready_message))


def changed(previous: Obj, wanted: Obj) -> bool:
    """Whether writing `wanted` (the reconciler's fields) would change the Agent's status.

    The policies' conditions (WithinBudget, WarmPoolApplied) share status.conditions but
    are not ours: comparing the whole list would call every reconcile a change and write.
    """
    for key, value in wanted.items():
        if key == "conditions":
            ours = [c for c in previous.get(key) or [] if c.get("type") in OWN_CONDITIONS]
            if ours != value:
                return True
        elif previous.get(key) != value:
            return True
    return False


def new_problems(problems: Sequence[Problem], previous: Sequence[Obj]) -> list[Problem]:
    """The problems the previous status did not report yet (worth a Warning Event).

    A condition names one reason but carries every problem's message, so a problem is
    known when its condition was already False with its message in it.
    """
    reported = {
        c.get("type"): str(c.get("message") or "") for c in previous if c.get("status") == "False"
    }
    return [p for p in problems if p.message not in reported.get(p.condition, "")]


def _by_name(children: Mapping[ChildKind, Sequence[Obj]], kind: ChildKind) -> dict[str, Obj]:
    return {c["metadata"]["name"]: c for c in children.get(kind, ())}


def _combine(name: str, parts: Sequence[Readiness], problems: Sequence[Problem]) -> Obj:
    """One condition from the parts: False wins, then Unknown; problems are False."""
    own = [p for p in problems if p.condition == name]
    if own:
        return condition(name, "False", own[0].reason, "; ".join(p.message for p in own))
    # Knative's own messages can be long (a container's last words): the first, in short.
    failed = [p for p in parts if p.status == "False"]
    if failed:
        return condition(name, "False", failed[0].reason, summarize([p.message for p in failed]))
    waiting = [p for p in parts if p.status != "True"]
    if waiting:
        message = summarize([p.message for p in waiting])
        return condition(name, "Unknown", waiting[0].reason, message)
    return condition(name, "True", "Ready", f"{len(parts)} ready")


def compute(
    agent: Obj,
    children: Mapping[ChildKind, Sequence[Obj]],
    problems: Sequence[Problem] = (),
    now: str = "1970-01-01T00:00:00Z",
    floors: Mapping[str, int] | None = None,
) -> Obj:
    """The status fields the reconciler owns, for `agent` with these live `children`.

    `floors`: service name -> the warm floor its serving Revisions carry (floor.py); a
    Service without one reports its template's min-scale.
    """
    meta, spec = agent["metadata"], agent["spec"]
    previous = agent.get("status") or {}
    services, triggers, pings = (_by_name(children, k) for k in (SERVICE, TRIGGER, PINGSOURCE))
    skills: list[Obj] = []
    service_parts: list[Readiness] = []
    trigger_parts: list[Readiness] = []
    for skill in spec["skills"]:
        name = agentspec.service_name(meta["name"], skill["name"])
        ksvc = services.get(name)
        ready = readiness(ksvc, f"Service {name}")
        service_parts.append(ready)
        template = ((ksvc or {}).get("spec") or {}).get("template") or {}
        annotations = (template.get("metadata") or {}).get("annotations") or {}
        entry: Obj = {"name": skill["name"], "service": name, "ready": ready.status == "True"}
        url = ((ksvc or {}).get("status") or {}).get("url")
        if url:
            entry["url"] = url
        if floors and name in floors:
            entry["minScale"] = floors[name]
        elif str(annotations.get(MIN_SCALE, "")).isdigit():
            entry["minScale"] = int(annotations[MIN_SCALE])
        if ready.status != "True":
            entry["message"] = ready.message
        skills.append(entry)
        for index in range(len(skill.get("events") or [])):
            tname = agentspec.trigger_name(meta["name"], skill["name"], index)
            trigger_parts.append(readiness(triggers.get(tname), f"Trigger {tname}"))
        if skill.get("schedule"):
            pname = agentspec.pingsource_name(meta["name"], skill["name"])
            unscheduled = any(
                p.reason == "InvalidSchedule" and p.skill == skill["name"] for p in problems
            )
            if pname in pings or not unscheduled:
                trigger_parts.append(readiness(pings.get(pname), f"PingSource {pname}"))
            if pname in triggers or not unscheduled:  # the Trigger of its ticks, same name
                trigger_parts.append(readiness(triggers.get(pname), f"Trigger {pname}"))
    skills_ready = _combine(SKILLS_READY, service_parts, problems)
    triggers_ready = _combine(TRIGGERS_READY, trigger_parts, problems)
    parts = [skills_ready, triggers_ready]
    general = [p for p in problems if p.condition == READY]
    if general:
        ready_cond = condition(
            READY, "False", general[0].reason, "; ".join(p.message for p in general)
        )
    elif all(c["status"] == "True" for c in parts):
        ready_cond = condition(READY, "True", "Ready", "all skills and triggers are ready")
    else:
        worst = next((c for c in parts if c["status"] == "False"), None)
        worst = worst or next(c for c in parts if c["status"] != "True")
        ready_cond = condition(READY, worst["status"], worst["reason"], worst["message"])
    conditions = [ready_cond, skills_ready, triggers_ready]
    generation = int(meta.get("generation") or 0)
    stamp(conditions, previous.get("conditions") or [], generation, now)
    exhausted = bool((previous.get("budget") or {}).get("exhausted"))
    if exhausted:
        phase = "Suspended"
    elif ready_cond["status"] == "True":
        phase = "Ready"
    elif ready_cond["status"] == "False":
        phase = "Degraded"
    else:
        phase = "Pending"
    return {
        "observedGeneration": generation,
        "phase": phase,
        "skillsReady": f"{sum(s['ready'] for s in skills)}/{len(skills)}",
        "warm": sum(int(s.get("minScale", 0)) for s in skills),
        "conditions": conditions,
        "skills": skills,
    }
