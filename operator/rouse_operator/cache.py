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


def slim(obj: Obj) -> Obj:
    """Drop managedFields: the largest part of an object in memory (many small dicts),
    and never read by the operator. A shallow copy: the rest is shared, not duplicated."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


class ChildCache:
    """Children by namespace → agent → kind → name; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._primed: set[str] = set()
        self._objects: dict[str, dict[str, dict[ChildKind, dict[str, Obj]]]] = {}
        # (namespace, kind, name) -> agent: `agent_of` in one lookup, not a scan of every
        # Agent in the namespace (which made creating N Agents' children O(N^2)).
        self._owners: dict[tuple[str, ChildKind, str], str] = {}

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
                    fresh.setdefault(agent, {}).setdefault(kind, {})[meta["name"]] = slim(obj)
        with self._lock:
            for by_kind in self._objects.get(namespace, {}).values():
                for kind, by_name in by_kind.items():
                    for name in by_name:
                        self._owners.pop((namespace, kind, name), None)
            self._objects[namespace] = fresh
            for agent, by_kind in fresh.items():
                for kind, by_name in by_kind.items():
                    for name in by_name:
                        self._owners[(namespace, kind, name)] = agent
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
                by_kind[kind][name] = slim(obj)
                self._owners[(namespace, kind, name)] = agent

    def drop(self, kind: ChildKind, namespace: str, agent: str, name: str) -> None:
        """Forget a deleted child, and the agent's and namespace's entries once they are empty
        (children of a deleted Agent go one by one through the garbage collector)."""
        with self._lock:
            by_agent = self._objects.get(namespace, {})
            by_kind = by_agent.get(agent, {})
            dropped = by_kind.get(kind, {}).pop(name, None) is not None
            if dropped and self._owners.get((namespace, kind, name)) == agent:
                del self._owners[(namespace, kind, name)]
            if not by_kind.get(kind, True):
                del by_kind[kind]
            if agent in by_agent and not by_kind:
                del by_agent[agent]
            if namespace in self._objects and not by_agent:
                del self._objects[namespace]

    def forget_agent(self, namespace: str, agent: str) -> None:
        """The Agent is deleted: drop its children's entries (the garbage collector removes
        the objects; a late event for one of them is dropped or pruned by `drop`)."""
        with self._lock:
            by_agent = self._objects.get(namespace, {})
            for kind, by_name in by_agent.pop(agent, {}).items():
                for name in by_name:
                    if self._owners.get((namespace, kind, name)) == agent:
                        del self._owners[(namespace, kind, name)]
            if namespace in self._objects and not by_agent:
                del self._objects[namespace]

    def agents(self) -> int:
        """How many Agents have cached children (the resync and deletions keep it bounded)."""
        with self._lock:
            return sum(len(by_agent) for by_agent in self._objects.values())

    def agent_of(self, kind: ChildKind, namespace: str, name: str) -> str | None:
        """The Agent (by its label) whose child of this kind and name is cached, if any."""
        with self._lock:
            return self._owners.get((namespace, kind, name))

    def children(self, namespace: str, agent: str) -> dict[ChildKind, dict[str, Obj]]:
        """A copy of the agent's children by kind and name."""
        with self._lock:
            by_kind = self._objects.get(namespace, {}).get(agent, {})
            return {kind: dict(by_kind.get(kind, {})) for kind in CHILD_KINDS}
