"""Kubernetes-style status conditions, built and stamped one way for every writer
of an Agent's status (the reconciler's Ready conditions, the policy timers' ones)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

Obj = dict[str, Any]


MAX_MESSAGE = 32768  # the CRD's (and metav1.Condition's) bound; a longer one fails the write


def condition(kind: str, status: str, reason: str, message: str) -> Obj:
    """A condition without its times (see `stamp`); an over-long message is cut, not refused."""
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {"type": kind, "status": status, "reason": reason, "message": message}


def stamp(conditions: Sequence[Obj], previous: Sequence[Obj], generation: int, now: str) -> None:
    """observedGeneration and lastTransitionTime (kept while the status does not change)."""
    before = {c.get("type"): c for c in previous}
    for cond in conditions:
        old = before.get(cond["type"])
        same = old is not None and old.get("status") == cond["status"]
        cond["lastTransitionTime"] = old.get("lastTransitionTime", now) if same and old else now
        cond["observedGeneration"] = generation
