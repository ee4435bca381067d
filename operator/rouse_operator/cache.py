"""The operator's view of the children it manages, kept current by the children's watch.

A reconcile reads an Agent's children from here instead of listing three kinds from the
API server every time: each namespace is listed once (on its first reconcile), then the
watch events (kopf.on.event for the three kinds) and the reconciler's own writes keep it
current (an event older than the cached object is ignored). The resync lists every
namespace again, so a missed event cannot leave the view wrong for long.
"""

from __future__ import annotations

import threading
from typing import Any

from rouse_operator.resources.meta import CHILD_KINDS, LABEL_AGENT, ChildKind

Obj = dict[str, Any]


def _version(obj: Obj) -> int:
    raw = str((obj.get("metadata") or {}).get("resourceVersion", "0"))
    return int(raw) if raw.isdigit() else 0


def _slim(obj: Obj) -> Obj:
    """Drop managedFields: the largest part of an object, and never read here."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


class ChildCache:
    """Children by namespace → agent → kind → name; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._primed: set[str] = set()
        self._objects: dict[str, dict[str, dict[ChildKind, dict[str, Obj]]]] = {}

    def primed(self, namespace: str) -> bool:
        with self._lock:
            return namespace in self._primed

    def prime(self, namespace: str, listed: dict[ChildKind, list[Obj]]) -> None:
        """Replace the namespace's children with a fresh listing (the API's word at that time)."""
        fresh: dict[str, dict[ChildKind, dict[str, Obj]]] = {}
        for kind, objects in listed.items():
            for obj in objects:
                meta = obj.get("metadata") or {}
                agent = (meta.get("labels") or {}).get(LABEL_AGENT)
                if agent and meta.get("name"):
                    fresh.setdefault(agent, {}).setdefault(kind, {})[meta["name"]] = _slim(obj)
        with self._lock:
            self._objects[namespace] = fresh
            self._primed.add(namespace)

    def expire(self) -> None:
        """List every namespace again on its next reconcile (the resync's safety net)."""
        with self._lock:
            self._primed.clear()

    def put(self, kind: ChildKind, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        agent = (meta.get("labels") or {}).get(LABEL_AGENT)
        namespace, name = meta.get("namespace"), meta.get("name")
        if not agent or not namespace or not name:
            return
        with self._lock:
            by_kind = self._objects.setdefault(namespace, {}).setdefault(agent, {})
            current = by_kind.setdefault(kind, {}).get(name)
            if current is None or _version(obj) >= _version(current):
                by_kind[kind][name] = _slim(obj)

    def drop(self, kind: ChildKind, namespace: str, agent: str, name: str) -> None:
        with self._lock:
            self._objects.get(namespace, {}).get(agent, {}).get(kind, {}).pop(name, None)

    def agent_of(self, kind: ChildKind, namespace: str, name: str) -> str | None:
        """The Agent (by its label) whose child of this kind and name is cached, if any."""
        with self._lock:
            for agent, by_kind in self._objects.get(namespace, {}).items():
                if name in by_kind.get(kind, {}):
                    return agent
        return None

    def children(self, namespace: str, agent: str) -> dict[ChildKind, dict[str, Obj]]:
        """A copy of the agent's children by kind and name."""
        with self._lock:
            by_kind = self._objects.get(namespace, {}).get(agent, {})
            return {kind: dict(by_kind.get(kind, {})) for kind in CHILD_KINDS}
