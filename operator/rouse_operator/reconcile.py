"""One level-based, idempotent reconcile of an Agent: children applied, stale ones removed,
status computed from what exists. Handlers (kopf) call `Reconciler.reconcile`; all API
calls go through `kube.Kube`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rouse_runtime import agentspec

from rouse_operator import bookkeeping, checks, metrics
from rouse_operator import status as agent_status
from rouse_operator.cache import ChildCache, slim
from rouse_operator.kube import ConflictError, Kube, RejectedError
from rouse_operator.resources import children
from rouse_operator.resources.floor import floor_of, floor_patch, serving_revisions
from rouse_operator.resources.meta import (
    CHILD_KINDS,
    REVISION,
    SELECTOR,
    SERVICE,
    ChildKind,
    Manifest,
)
from rouse_operator.resources.policy import PolicyInputs, policy_inputs
from rouse_operator.settings import Settings

Obj = dict[str, Any]
HASH_ANNOTATION = "rouse.dev/spec-hash"
BROKER_TTL = 30.0  # seconds a Broker seen to exist is not looked up again


@dataclass(frozen=True)
class Change:
    """A child written: for the Agent's Kubernetes Events and the metrics."""

    action: str  # Created | Updated | Deleted
    kind: str
    name: str
    why: str = ""


@dataclass
class Outcome:
    """What a reconcile did and found."""

    agent: Obj = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    status: Obj = field(default_factory=dict)
    new_problems: list[agent_status.Problem] = field(default_factory=list)
    status_written: bool = False  # the status was applied (with `handled`, if given)


def spec_hash(manifest: Manifest) -> str:
    """Fingerprint of what Rouse applies: a change means the child must be re-applied."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def with_hash(manifest: Manifest) -> Manifest:
    """The manifest stamped with its hash (in place: the builders make a new one each time)."""
    digest = spec_hash(manifest)
    manifest["metadata"].setdefault("annotations", {})[HASH_ANNOTATION] = digest
    return manifest


def contains(current: Any, wanted: Any) -> bool:
    """Whether `current` holds everything in `wanted` (extra fields, e.g. Knative defaults, allowed).

    Lists of named items (containers, env) are matched by name; other lists by position.
    """
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(
            k in current and contains(current[k], v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        if not isinstance(current, list):
            return False
        if all(isinstance(w, dict) and "name" in w for w in wanted):
            named = {c.get("name"): c for c in current if isinstance(c, dict)}
            return all(w["name"] in named and contains(named[w["name"]], w) for w in wanted)
        return len(current) == len(wanted) and all(map(contains, current, wanted))
    return bool(current == wanted)


def same_hash(current: Obj, wanted: Manifest) -> bool:
    """Applied from this same spec (the hash annotation matches)."""
    annotations = current.get("metadata", {}).get("annotations") or {}
    return bool(
        annotations.get(HASH_ANNOTATION) == wanted["metadata"]["annotations"][HASH_ANNOTATION]
    )


def up_to_date(current: Obj, wanted: Manifest) -> bool:
    """Applied from this same spec, and nobody changed a field Rouse sets since."""
    return (
        same_hash(current, wanted)
        and contains(current.get("spec"), wanted["spec"])
        and contains(current.get("metadata"), wanted["metadata"])
    )


def why_applied(current: Obj | None, wanted: Manifest) -> str:
    """Why a child is (re)applied, for the Agent's Event."""
    if current is None:
        return "it did not exist"
    if same_hash(current, wanted):
        return "fields Rouse sets were changed by someone else; put back"
    return "its desired state changed (the Agent's spec, a policy decision or the operator)"


def controlled_by(obj: Obj, uid: str | None) -> bool:
    """Whether `uid` (the Agent) is `obj`'s controller: only then may the reconciler delete it."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return uid is not None and any(r.get("controller") and r.get("uid") == uid for r in refs)


def _kind_of(manifest: Manifest) -> ChildKind:
    return next(k for k in CHILD_KINDS if k.kind == manifest["kind"])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Reconciler:
    """Reconciles Agents; one reconcile of the same Agent at a time (a per-Agent lock)."""

    kube: Kube
    settings: Settings
    clock: Callable[[], str] = _now
    cache: ChildCache = field(default_factory=ChildCache)
    written: dict[tuple[str, str, str], str] = field(default_factory=dict)
    _locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _guard: threading.Lock = field(default_factory=threading.Lock)
    _brokers_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    # Children being applied now -> the resourceVersion of a watch event seen meanwhile (the
    # echo can arrive before the apply returns); Agents to reconcile again for a foreign write.
    _applying: dict[tuple[str, str, str], str | None] = field(default_factory=dict)
    _dirty: set[tuple[str, str]] = field(default_factory=set)
    # (namespace, agent) -> {Revision: the warm floor we last saw or set on it}: a floor is
    # read once per Revision, then patched only when the policy moves it.
    floors: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    _priming: dict[str, threading.Lock] = field(default_factory=dict)  # namespace -> lock

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    @contextmanager
    def _exclusive(self, namespace: str, name: str) -> Iterator[None]:
        """Hold the Agent's lock; if forget_agent dropped it while we waited, take the new one
        (so two reconciles of one Agent never run at once, pruning or not)."""
        while True:
            lock = self._lock(namespace, name)
            lock.acquire()
            with self._guard:
                current = self._locks.get((namespace, name)) is lock
            if current:
                break
            lock.release()
        try:
            yield
        finally:
            lock.release()

    def ours(self, kind: str, namespace: str, name: str, resource_version: str) -> bool:
        """Whether this child event is the echo of our own last write (nothing to do).

        During our apply of the child the answer waits for the apply: the event is noted,
        and a newer version than ours makes the reconcile run again (see `_apply`).
        """
        key = (kind, namespace, name)
        with self._guard:
            if key in self._applying:
                self._applying[key] = resource_version
                return True
            return self.written.get(key) == resource_version

    def forget(self, kind: str, namespace: str, name: str) -> None:
        """A child is gone: drop the record of our last write to it (no unbounded growth)."""
        self.written.pop((kind, namespace, name), None)

    def forget_agent(self, namespace: str, name: str) -> None:
        """The Agent is deleted: drop its lock and cached children (they grew with every Agent
        ever seen). A lock held by a reconcile in flight stays; that reconcile finds the Agent
        gone and calls this again when it has let go."""
        self.cache.forget_agent(namespace, name)
        key = (namespace, name)
        self.floors.pop(key, None)
        with self._guard:
            lock = self._locks.get(key)
            if lock is not None and lock.acquire(blocking=False):
                del self._locks[key]
                lock.release()

    def locks(self) -> int:
        """How many per-Agent locks are held in memory (pruned when an Agent is deleted)."""
        with self._guard:
            return len(self._locks)

    def reconcile(
        self, namespace: str, name: str, body: Obj | None = None, handled: str | None = None
    ) -> Outcome | None:
        """Bring one Agent's children and status in line; None when the Agent is gone.

        `body`: the Agent as kopf just delivered it (saves a read); fetched when not given.
        `handled`: kopf's last-handled configuration to write with the status (bookkeeping.py).
        """
        started = time.perf_counter()
        outcome: Outcome | None = None
        with self._exclusive(namespace, name):
            try:
                agent = body if body is not None else self.kube.get_agent(namespace, name)
                if agent is None or agent["metadata"].get("deletionTimestamp"):
                    # Gone, or going: the garbage collector removes the children (in foreground
                    # deletion, before the Agent); re-creating them would fight it.
                    metrics.RECONCILES.labels("gone").inc()
                else:
                    outcome = self._reconcile(agent, handled)
                    for _ in range(3):  # someone else wrote a child while we applied it
                        if not self._take_dirty(namespace, name):
                            break
                        agent = self.kube.get_agent(namespace, name)
                        if agent is None or agent["metadata"].get("deletionTimestamp"):
                            break
                        again = self._reconcile(agent, handled)
                        again.changes[:0] = outcome.changes
                        again.status_written |= outcome.status_written
                        outcome = again
            except Exception:
                metrics.RECONCILES.labels("error").inc()
                raise
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        if agent is None:  # deleted (a late child event): leave no lock behind for it
            self.forget_agent(namespace, name)
        if outcome is not None:
            metrics.RECONCILES.labels("ok").inc()
        return outcome

    def _reconcile(self, agent: Obj, handled: str | None = None) -> Outcome:
        meta, spec = agent["metadata"], agent["spec"]
        namespace, name = meta["namespace"], meta["name"]
        problems: list[agent_status.Problem] = []
        broker = spec.get("broker", "default")
        if not self._broker_exists(namespace, broker):
            problems.append(
                agent_status.Problem(
                    agent_status.TRIGGERS_READY,
                    "BrokerNotFound",
                    f"spec.broker: Broker {broker!r} does not exist in namespace {namespace}",
                )
            )
        schedule_problems, unscheduled = checks.schedule_problems(agent)
        problems += schedule_problems
        policy = policy_inputs(agent)
        wanted = [with_hash(m) for m in children.desired(agent, self.settings, policy, unscheduled)]
        if not self.cache.primed(namespace):
            self._prime(namespace)
        existing = self.cache.children(namespace, name)
        outcome = Outcome(agent=agent)
        for manifest in wanted:
            kind, child_name = _kind_of(manifest), manifest["metadata"]["name"]
            current = existing[kind].get(child_name)
            if current is not None and up_to_date(current, manifest):
                continue
            condition = (
                agent_status.SKILLS_READY if kind.kind == "Service" else agent_status.TRIGGERS_READY
            )
            holder = (
                None if current is not None else self.cache.agent_of(kind, namespace, child_name)
            )
            if holder is not None:
                # Another Agent's child (e.g. Agent "a-b" skill "c" vs Agent "a" skill "b-c"):
                # same field manager, so server-side apply would not conflict; refuse here.
                message = f"{kind.kind} {child_name} belongs to Agent {holder}; rename a skill"
                problems.append(agent_status.Problem(condition, "NameConflict", message))
                continue
            try:
                applied = self._apply(kind, manifest, name, force=current is not None)
            except (ConflictError, RejectedError) as exc:
                if isinstance(exc, ConflictError):
                    reason = "NameConflict"
                    message = f"{exc} (the name belongs to an object that is not this Agent's)"
                else:
                    reason, message = "ChildRejected", str(exc)
                problems.append(agent_status.Problem(condition, reason, message))
                continue
            existing[kind][child_name] = applied
            self.cache.put(kind, applied)
            action = "Created" if current is None else "Updated"
            outcome.changes.append(
                Change(action, kind.kind, child_name, why_applied(current, manifest))
            )
        keep = {(_kind_of(m).kind, m["metadata"]["name"]) for m in wanted}
        for kind in CHILD_KINDS:
            stale = [
                n
                for n, obj in existing[kind].items()
                if (kind.kind, n) not in keep and controlled_by(obj, meta.get("uid"))
            ]
            for child_name in stale:
                self.kube.delete(kind, namespace, child_name)
                self.cache.drop(kind, namespace, name, child_name)
                del existing[kind][child_name]
                outcome.changes.append(
                    Change("Deleted", kind.kind, child_name, "no longer in the Agent's spec")
                )
        floors = self._set_floors(agent, existing[SERVICE], policy, outcome, problems)
        for change in outcome.changes:
            metrics.CHILD_WRITES.labels(change.kind, change.action.lower()).inc()
        children_now = {k: list(v.values()) for k, v in existing.items()}
        outcome.status = agent_status.compute(
            agent, children_now, problems, self.clock(), floors=floors
        )
        previous = agent.get("status") or {}
        # kopf's bookkeeping rides along (one write, not two); every apply of this field
        # manager carries it, or server-side apply would remove it.
        kopf_state = {bookkeeping.FIELD: handled} if handled else previous.get("kopf")
        if kopf_state:
            outcome.status["kopf"] = kopf_state
        if agent_status.changed(previous, outcome.status):
            self.kube.apply_status(namespace, name, outcome.status)
            outcome.status_written = True
        outcome.new_problems = agent_status.new_problems(problems, previous.get("conditions") or [])
        return outcome

    def _set_floors(
        self,
        agent: Obj,
        services: dict[str, Obj],
        policy: PolicyInputs,
        outcome: Outcome,
        problems: list[agent_status.Problem],
    ) -> dict[str, int]:
        """Put each skill's warm floor on the Revisions serving it (floor.py: no rollout).

        Returns service name -> floor for the Services whose serving Revisions all carry it.
        """
        meta = agent["metadata"]
        namespace, key = meta["namespace"], (meta["namespace"], meta["name"])
        if agent["spec"].get("warmPool") is None and not (agent.get("status") or {}).get(
            "warmPool"
        ):
            # Never had a warm pool: Knative made its Revisions with the template's
            # scaling.min, so there is nothing to read or set (no GET per Revision at start).
            self.floors.pop(key, None)
            return {}
        known = self.floors.get(key, {})
        seen: dict[str, int] = {}
        applied: dict[str, int] = {}
        for skill in agent["spec"]["skills"]:
            service_name = agentspec.service_name(meta["name"], skill["name"])
            wanted = policy.min_scale.get(skill["name"], 0)
            revisions = serving_revisions(services.get(service_name))
            for revision in revisions:
                had: int | None = known.get(revision)
                if had is None:
                    current = self.kube.get(REVISION, namespace, revision)
                    if current is None:  # replaced meanwhile: the Service's next event says by what
                        continue
                    had = floor_of(current)
                if had != wanted:
                    try:
                        patched = self.kube.merge_patch(
                            REVISION, namespace, revision, floor_patch(wanted)
                        )
                    except RejectedError as exc:
                        problems.append(
                            agent_status.Problem(
                                agent_status.SKILLS_READY, "WarmFloorRejected", str(exc)
                            )
                        )
                        continue
                    if patched is None:
                        continue
                    outcome.changes.append(
                        Change("Updated", REVISION.kind, revision, f"warm floor {had} -> {wanted}")
                    )
                seen[revision] = wanted
            if revisions and all(r in seen for r in revisions):
                applied[service_name] = wanted
        self.floors[key] = seen
        return applied

    def _prime(self, namespace: str) -> None:
        """List the namespace's children into the cache, one thread at a time.

        After each resync's `expire`, every reconcile thread found the namespace unprimed
        and listed all its children at once: up to 16 copies of N children in memory
        (peak RSS growing with N) and 16 times the listing work.
        """
        with self._guard:
            lock = self._priming.setdefault(namespace, threading.Lock())
        with lock:
            if self.cache.primed(namespace):  # listed by another thread while this one waited
                return
            # Slimmed page by page: one page's managedFields in memory at a time, not N's.
            listed = {
                kind: [slim(obj) for page in self.kube.pages(kind, namespace, SELECTOR)
                       for obj in page]
                for kind in CHILD_KINDS
            }  # fmt: skip
            self.cache.prime(namespace, listed)

    def _broker_exists(self, namespace: str, broker: str) -> bool:
        """Whether the Broker exists; a yes is trusted for BROKER_TTL seconds (one GET, not N)."""
        key = (namespace, broker)
        now = time.monotonic()
        if self._brokers_seen.get(key, -BROKER_TTL) > now - BROKER_TTL:
            return True
        exists = self.kube.broker_exists(namespace, broker)
        if exists:
            self._brokers_seen[key] = now
        else:
            self._brokers_seen.pop(key, None)
        return exists

    def _apply(self, kind: ChildKind, manifest: Manifest, agent: str, force: bool) -> Obj:
        """Apply a child, telling its watch echo from someone else's write even when the
        event arrives before the apply returns (a missed echo costs a whole reconcile)."""
        meta = manifest["metadata"]
        key = (kind.kind, str(meta["namespace"]), str(meta["name"]))
        with self._guard:
            self._applying[key] = None
        applied: Obj | None = None
        try:
            applied = self.kube.apply(kind, manifest, force=force)
        finally:
            with self._guard:
                seen = self._applying.pop(key, None)
                version = None
                if applied is not None:
                    version = str((applied.get("metadata") or {}).get("resourceVersion"))
                    self.written[key] = version
                if seen is not None and seen != version and _newer(seen, version):
                    self._dirty.add((key[1], agent))
        return applied

    def _take_dirty(self, namespace: str, name: str) -> bool:
        with self._guard:
            if (namespace, name) in self._dirty:
                self._dirty.discard((namespace, name))
                return True
            return False


def _newer(seen: str, ours: str | None) -> bool:
    """Whether resourceVersion `seen` is later than `ours` (None: our write failed)."""
    if ours is None:
        return True
    return seen.isdigit() and ours.isdigit() and int(seen) > int(ours)
