"""Kubernetes-style status conditions, built and stamped one way for every writer
of an Agent's status (the reconciler's Ready conditions, the policy timers' ones)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Obj = dict[str, Any]


MAX_MESSAGE = 32768  # the CRD's (and metav1.Condition's) bound; a longer one fails the write
# What a condition says of a child's failure: one line that `kubectl describe` and the
# Agent's `-o wide` Message column show whole. The rest is in status.skills[].message.
SHORT_MESSAGE = 256


def condition(kind: str, status: str, reason: str, message: str) -> Obj:
    """A condition without its times (see `stamp`); an over-long message is cut, not refused."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {"type": kind, "status": status, "reason": reason, "message": message}


def summarize(messages: Sequence[str]) -> str:
    """The first message on one line, cut to SHORT_MESSAGE, and how many others there are.

    A message of several lines (a traceback) keeps its first and last: the error is last.
    """
    lines = [line.strip() for line in (messages[0] if messages else "").splitlines()]
    lines = [line for line in lines if line]
    first = f"{lines[0]} ... {lines[-1]}" if len(lines) > 1 else "".join(lines)
    if len(first) > SHORT_MESSAGE:
        first = first[: SHORT_MESSAGE - 3].rstrip() + "..."
    more = len(messages) - 1
    return f"{first} (and {more} more)" if more > 0 else first


def stamp(conditions: Sequence[Obj], previous: Sequence[Obj], generation: int, now: str) -> None:
    """observedGeneration and lastTransitionTime (kept while the status does not change)."""
    before = {c.get("type"): c for c in previous}
    for cond in conditions:
        old = before.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"]
        cond["lastTransitionTime"] = old.get("lastTransitionTime", now) if same and old else now
        cond["observedGeneration"] = generation
