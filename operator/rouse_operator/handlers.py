"""kopf handlers, kept thin: every cause ends in `Reconciler.reconcile(namespace, name)`.

- Agent created, changed, or found at startup: reconcile it.
- A policy changed the Agent's status (warm-pool min-scale, budget spent): reconcile it.
- A child (Service, Trigger, PingSource with Rouse's labels) changed or was deleted by
  someone else: reconcile its Agent, so hand edits and deletions are undone and
  status follows the children's conditions.
- Every ROUSE_RESYNC_INTERVAL seconds: reconcile every known Agent (drift).

kopf keeps its last-handled configuration in status.kopf, written by the reconciler's own
status apply (bookkeeping.py: one write per handled Agent, not two), and no handler
needs a finalizer: deletion cascades through ownerReferences and the garbage collector.
Periodic per-Agent work (the policy loop) goes through `every_agent`, not kopf.timer,
because kopf puts a finalizer on every object a timer runs for.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

import kopf

from rouse_operator import (
    agent_metrics,
    bookkeeping,
    health,
    kopf_tuning,
    metrics,
    quiet_handlers,
)
from rouse_operator import settings as operator_settings
from rouse_operator.cache import slim
from rouse_operator.kube import AGENTS, Kube
from rouse_operator.reconcile import Change, Outcome, Reconciler
from rouse_operator.resources.meta import CHILD_KINDS, LABEL_AGENT, LABEL_MANAGED_BY, MANAGED_BY
from rouse_operator.resources.policy import policy_inputs

SETTINGS = operator_settings.from_env()
GROUP, VERSION, PLURAL = AGENTS.group, AGENTS.version, AGENTS.plural
log = logging.getLogger("rouse.operator")
EVENT_MESSAGE_LIMIT = 1000  # kopf truncates an Event's message at 1024 characters


PeriodicFn = Callable[..., Awaitable[None]]
RoundFn = Callable[..., Coroutine[Any, Any, None]]


class _State:
    """What the handlers share: the reconciler, known Agents and their policy inputs."""

    reconciler: Reconciler | None = None

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], Any] = {}  # (namespace, name) -> policy inputs
        self.bodies: dict[tuple[str, str], kopf.Body] = {}  # (namespace, name) -> latest, slim
        # (namespace, name) -> (resourceVersion, fields) of the policy loop's last status write
        self.policy_written: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        # A context where kopf.info/kopf.warn can post Events, per Agent: all the same one,
        # copied in the first Agent handler (kopf sets its Event queue, one per operator, in
        # each object's task). A copy per Agent also kept each one's first cause (body, diff,
        # patch) alive.
        self.contexts: dict[tuple[str, str], contextvars.Context] = {}
        self.operator_context: contextvars.Context | None = None
        self.periodic: list[tuple[tuple[float, float], RoundFn]] = []
        self.tasks: list[asyncio.Task[None]] = []


STATE = _State()
DIFF_BASE = bookkeeping.InStatusApply()


def reconciler() -> Reconciler:
    if STATE.reconciler is None:
        STATE.reconciler = Reconciler(Kube.connect(), SETTINGS)
    return STATE.reconciler


def report(body: Any, outcome: Outcome | None) -> None:
    """Kubernetes Events on the Agent for what changed and for new problems.

    One Event per action (Created, Updated, Deleted) naming every child it touched, not one
    per child, and none for an Agent's first children (`worth_an_event`).
    """
    if outcome is None:
        return
    for action, message in change_messages(worth_an_event(outcome)):
        kopf.info(body, reason=action, message=message)
    for problem in outcome.new_problems:
        kopf.warn(body, reason=problem.reason, message=problem.message)


def worth_an_event(outcome: Outcome) -> list[Change]:
    """The changes to tell in Events: all but the creation of a new Agent's children.

    Those are what creating an Agent means: its status names them (`skills[].service`) and
    its conditions say how they are doing, so an Event saying so again cost the API server
    a write per new Agent for nothing new. A child created later (deleted by hand and put
    back, a skill added) is told, as are updates, deletions and problems.
    """
    if (outcome.agent.get("status") or {}).get("observedGeneration") is not None:
        return outcome.changes
    return [c for c in outcome.changes if c.action != "Created"]


def change_messages(changes: list[Change]) -> list[tuple[str, str]]:
    """(reason, message) of the Events for `changes`: one per action, each message under
    EVENT_MESSAGE_LIMIT (kopf cuts longer ones), so an Agent of many skills gets a few."""
    grouped: dict[str, list[str]] = {}
    for change in changes:
        grouped.setdefault(change.action, []).append(f"{change.kind} {change.name}: {change.why}")
    events: list[tuple[str, str]] = []
    for action, parts in grouped.items():
        message = ""
        for part in parts:
            if message and len(message) + 2 + len(part) > EVENT_MESSAGE_LIMIT:
                events.append((action, message))
                message = ""
            message = f"{message}; {part}" if message else part
        events.append((action, message))
    return events


def run(
    namespace: str, name: str, body: Any = None, fresh: bool = False, handled: Any = None
) -> None:
    """Reconcile one Agent and report on it.

    `body`: the Agent for Events; with `fresh`, kopf's just-delivered copy is also what the
    reconcile reads (create/update/resume), otherwise the Agent is read from the API.
    `handled`: kopf's essence of the Agent being handled, written with its status.
    """
    given = json.loads(json.dumps(dict(body))) if fresh and body is not None else None
    encoded = bookkeeping.encode(handled) if handled is not None else None
    outcome = reconciler().reconcile(namespace, name, given, encoded)
    if outcome is not None:
        if encoded is not None and outcome.status_written:
            DIFF_BASE.written(namespace, name, encoded)
        report(body if body is not None else outcome.agent, outcome)
        if outcome.status:
            agent_metrics.record_status(namespace, name, outcome.status)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf's state (status.kopf, progress in annotations); Events from INFO; resync."""
    kopf_tuning.tune(settings, DIFF_BASE)
    quiet_handlers.install("agent_event", "child_event")  # their ids: the function names
    await asyncio.get_running_loop().run_in_executor(None, reconciler)
    track_agents()
    STATE.tasks.append(asyncio.create_task(_resync_forever(SETTINGS.resync_interval)))
    for interval, fn in STATE.periodic:
        STATE.tasks.append(asyncio.create_task(_every_agent_forever(*interval, fn)))
    health.STATE.ready = True


def track_agents() -> None:
    """rouse_operator_tracked_agents{store}: per-Agent state must shrink when Agents go."""
    metrics.TRACKED_AGENTS.labels("locks").set_function(lambda: reconciler().locks())
    metrics.TRACKED_AGENTS.labels("children").set_function(lambda: reconciler().cache.agents())
    metrics.TRACKED_AGENTS.labels("known").set_function(lambda: len(STATE.known))


@kopf.on.cleanup()
async def stop(**_: Any) -> None:
    health.STATE.ready = False
    for task in STATE.tasks:
        task.cancel()


@kopf.on.resume(GROUP, VERSION, PLURAL, backoff=5)
@kopf.on.create(GROUP, VERSION, PLURAL, backoff=5)
@kopf.on.update(GROUP, VERSION, PLURAL, backoff=5)
def agent_changed(
    body: kopf.Body, namespace: str | None, name: str, new: kopf.BodyEssence | None, **_: Any
) -> None:
    """The Agent's spec (or labels/annotations) changed, or the operator (re)started."""
    run(str(namespace), name, body, fresh=True, handled=new)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def agent_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    """Track known Agents; reconcile when a policy changed what the children are built from."""
    key = (str(namespace), name)
    if event.get("type") == "DELETED":
        STATE.known.pop(key, None)
        STATE.bodies.pop(key, None)
        STATE.contexts.pop(key, None)
        DIFF_BASE.forget(*key)
        STATE.policy_written.pop(key, None)
        reconciler().forget_agent(*key)  # its lock and cached children
        agent_metrics.forget(*key)
        return
    # Without managedFields: kept for every Agent (the policy loop's input), it was the
    # larger half of each one's body in memory (18 KiB -> 9 KiB for a one-skill Agent).
    STATE.bodies[key] = kopf.Body(cast(kopf.RawBody, slim(dict(body))))
    if key not in STATE.contexts:
        if STATE.operator_context is None:
            STATE.operator_context = contextvars.copy_context()  # holds kopf's Event queue
        STATE.contexts[key] = STATE.operator_context
    try:
        inputs = policy_inputs(dict(body))
    except (KeyError, TypeError, ValueError):  # not a valid Agent (yet): spec handlers report
        return
    before = STATE.known.get(key)
    STATE.known[key] = inputs
    if before is not None and before != inputs:
        await asyncio.to_thread(run, key[0], name, body)


async def child_event(
    event: kopf.RawEvent, body: kopf.Body, namespace: str | None, **_: Any
) -> None:
    """Keep the child cache current; reconcile the child's Agent unless this is our own write.

    Async: most events are echoes of our own writes, answered from memory without a thread.
    """
    meta = body.get("metadata") or {}
    agent = (meta.get("labels") or {}).get(LABEL_AGENT)
    kind = next((k for k in CHILD_KINDS if k.kind == body.get("kind")), None)
    if not agent or not namespace or kind is None:
        return
    deleted = event.get("type") == "DELETED"
    cache = reconciler().cache
    if deleted:
        cache.drop(kind, namespace, agent, meta["name"])
        reconciler().forget(kind.kind, namespace, meta["name"])
    else:
        cache.put(kind, dict(body))
    if event.get("type") is None:  # the initial listing: the resume handlers reconcile
        return
    if not deleted and reconciler().ours(
        kind.kind, namespace, meta["name"], meta["resourceVersion"]
    ):
        return
    await asyncio.to_thread(run, namespace, agent)


for _kind in CHILD_KINDS:
    kopf.on.event(_kind.group, _kind.version, _kind.plural, labels={LABEL_MANAGED_BY: MANAGED_BY})(
        child_event
    )


async def _resync_forever(interval: float) -> None:
    """Reconcile every known Agent every `interval` seconds (hand edits, missed events)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval)
        reconciler().cache.expire()
        for namespace, name in list(STATE.known):
            context = _context_of(namespace, name)
            try:
                await loop.run_in_executor(None, context.run, run, namespace, name)
            except Exception as exc:  # keep resyncing the others; kopf retries its own causes
                log.warning(
                    "resync of %s/%s failed: %s: %s", namespace, name, type(exc).__name__, exc
                )
        metrics.RESYNCS.inc()


def _context_of(namespace: str, name: str) -> contextvars.Context:
    """A copy of kopf's context for this Agent, so Events can be posted outside its handlers."""
    known = STATE.contexts.get((namespace, name))
    return known.copy() if known is not None else contextvars.copy_context()


def every_agent(
    interval: float,
    initial_delay: float | None = None,
    concurrency: int = 16,
    deadline: float | None = None,
) -> Callable[[PeriodicFn], PeriodicFn]:
    """Run `fn(body=, namespace=, name=)` for every known Agent every `interval` seconds.

    Like kopf.timer, but without the finalizer kopf puts on every object a timer runs for
    (an Agent must stay deletable when the operator is gone). The first round runs
    `initial_delay` seconds after startup (default: `interval`); each round runs the Agents
    concurrently (at most `concurrency` at once, so one slow Agent does not hold the others
    back), inside kopf's context for that Agent (kopf.info/kopf.warn work). The next round
    starts `interval` seconds after the previous one ended. Errors are logged, not retried.

    `deadline`: seconds one call may take before it is cancelled (logged with where it was
    waiting). A round waits for all of its calls, so one call that never returns would stop
    the loop for every Agent; the next round runs the cancelled one again.
    """
    delays = (interval if initial_delay is None else initial_delay, interval)

    def register(fn: PeriodicFn) -> PeriodicFn:
        STATE.periodic.append((delays, _bounded(fn, concurrency, deadline)))
        return fn

    return register


def _bounded(fn: PeriodicFn, concurrency: int, deadline: float | None) -> RoundFn:
    gate = asyncio.Semaphore(concurrency)

    async def guarded(*, body: kopf.Body, namespace: str, name: str) -> None:
        async with gate:
            call = asyncio.ensure_future(fn(body=body, namespace=namespace, name=name))
            try:
                done, _ = await asyncio.wait([call], timeout=deadline)
                if not done:
                    log.warning(
                        "%s for %s/%s did not finish in %gs, cancelled (waiting in %s)",
                        fn.__name__, namespace, name, deadline, awaiting(call),
                    )  # fmt: skip
                    return  # cancelled below
                call.result()
            except Exception as exc:
                log.warning(
                    "%s for %s/%s failed: %s: %s",
                    fn.__name__, namespace, name, type(exc).__name__, exc,
                )  # fmt: skip
            finally:
                call.cancel()  # past its deadline, or the round cancelled (operator stopping)

    guarded.__name__ = fn.__name__
    return guarded


def awaiting(task: asyncio.Task[Any]) -> str:
    """Where a pending task's coroutine waits, outermost first (`f@file:line > ...`)."""
    step: Any = task.get_coro()
    where: list[str] = []
    while (frame := getattr(step, "cr_frame", None)) is not None:  # down to a Future
        code = frame.f_code
        where.append(f"{code.co_name}@{code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}")
        step = step.cr_await
    return " > ".join(where) or "unknown"


async def _every_agent_forever(initial_delay: float, interval: float, fn: RoundFn) -> None:
    await asyncio.sleep(initial_delay)
    while True:
        rounds = [
            asyncio.create_task(
                fn(body=body, namespace=namespace, name=name),
                context=_context_of(namespace, name),
            )
            for (namespace, name), body in list(STATE.bodies.items())
        ]
        try:
            if rounds:
                await asyncio.wait(rounds)
        finally:  # operator stopping: stop this round too
            for task in rounds:
                task.cancel()
        await asyncio.sleep(interval)
