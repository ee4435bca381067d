"""What only the operator can judge about a valid Agent: are its schedules real cron?

The CRD bounds a cron string's length but cannot parse it; a bad one must not reach
the PingSource (Knative's webhook would refuse it and the reconcile would fail every
time), so it becomes a condition instead. Pure.
"""

from __future__ import annotations

from typing import Any

from croniter import croniter

from rouse_operator.status import READY, TRIGGERS_READY, Problem

MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


def cron_error(expression: str) -> str | None:
    """Why `expression` is not a 5-field cron (as PingSource and local mode accept), or None."""
    text = expression.strip()
    if text in MACROS:
        return None
    fields = text.split()
    if len(fields) != 5:
        return (
            f"{expression!r} has {len(fields)} fields, expected 5 (minute hour day month weekday)"
        )
    if not croniter.is_valid(text):
        return f"{expression!r} is not a valid cron expression"
    return None


def schedule_problems(agent: dict[str, Any]) -> tuple[list[Problem], frozenset[str]]:
    """Problems with the skills' and warm pool's schedules, and the skills to leave unscheduled."""
    problems: list[Problem] = []
    bad: set[str] = set()
    for skill in agent["spec"]["skills"]:
        schedule = skill.get("schedule")
        if not schedule:
            continue
        error = cron_error(str(schedule.get("cron", "")))
        if error:
            bad.add(skill["name"])
            where = f"spec.skills[{skill['name']}].schedule.cron"
            problems.append(
                Problem(TRIGGERS_READY, "InvalidSchedule", f"{where}: {error}", skill["name"])
            )
    for index, window in enumerate((agent["spec"].get("warmPool") or {}).get("schedules") or []):
        error = cron_error(str(window.get("cron", "")))
        if error:
            where = f"spec.warmPool.schedules[{index}].cron"
            problems.append(Problem(READY, "InvalidSchedule", f"{where}: {error}"))
    return problems, frozenset(bad)
