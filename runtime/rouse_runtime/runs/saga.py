"""Compensation: undo a run's completed steps, newest first, when a later step fails or it is cancelled.

A skill declares the event that undoes its step (`spec.skills[].compensate.type`,
`ROUSE_COMPENSATE_TYPE`); when a step of it completes, its `finished` (or `ran`)
record keeps that type and what the step did (`request`: the event's data,
`result`: its reply's). When a later event of the run is dead-lettered, or the
run is cancelled, the component that saw it (the parking service, local mode's
broker) calls `compensate`: the completed steps' compensation events are sent
into the broker in reverse order of completion, each once (a claim in the
state store per step, so a second dead letter, a second replica or a retry
never sends one twice), each recorded as a `compensation` record, into the
Agent's Broker (the step's record names it: runs/brokers.py). The event
carries the run (`rouserun`) and `rousecompensates` (the step undone), which
lets it through a cancelled run's stop check: undoing is what a cancel asks for.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from cloudevents.http import CloudEvent

from rouse_runtime.config import IDEMPOTENCY_TTL_SECONDS, Config
from rouse_runtime.events import derived_id, new_event
from rouse_runtime.runs.brokers import broker_name
from rouse_runtime.runs.ids import RUN_ATTRIBUTE
from rouse_runtime.runs.log import Record, RunLog
from rouse_runtime.scope import Scope
from rouse_runtime.store import Store, StoreError

log = logging.getLogger("rouse.runs")

COMPENSATES_ATTRIBUTE = "rousecompensates"
CLAIM_SECONDS = 300.0

# Sends a compensation into the Broker named (runs/brokers.py: None for the default one).
Send = Callable[[CloudEvent, str | None], Awaitable[None]]


def _jsonable(data: Any) -> Any:
    return None if isinstance(data, bytes | bytearray) else data


def undo_fields(config: Config, event: CloudEvent, reply: CloudEvent | None) -> dict[str, Any]:
    """What a completed step's record keeps to undo it: the type, what the step did, and the
    Broker its compensation goes to (the Agent's: runs/brokers.py)."""
    result = None if reply is None else _jsonable(reply.data)
    return {
        "type": config.compensate_type,
        "data": {"request": _jsonable(event.data), "result": result},
        "broker": broker_name(config.broker_url, config.namespace),
    }


def undo_of(record: Record) -> dict[str, Any] | None:
    """The compensation a completed step's record keeps (None: nothing to undo)."""
    if record.kind not in ("finished", "ran"):
        return None
    undo = record.fields.get("compensate")
    if not isinstance(undo, dict) or record.fields.get("outcome") not in ("ok",):
        return None
    return undo


async def compensate(
    runlog: RunLog, claims: Store, namespace: str, agent: str, run: str, send: Send, *, why: str
) -> list[dict[str, str]]:
    """Send the compensations of run's completed steps, newest first, each once.

    Returns what was sent now (type, skill, event id of the step undone); stops at
    the first that cannot be sent (its claim released: the next call goes on).
    """
    history = await runlog.history(namespace, agent, run)
    steps = [(r, undo) for r in history if (undo := undo_of(r)) is not None]
    sent: list[dict[str, str]] = []
    scope = Scope(namespace, agent)
    for record, undo in reversed(steps):
        event = record.event or {}
        step = f"{record.skill}/{event.get('id')}"
        key = "compensation:" + scope.digest(run, step)
        owner = f"compensate:{run}"
        claim = await claims.claim(key, owner, CLAIM_SECONDS)
        if claim.state != "claimed":
            continue  # sent already (done) or being sent elsewhere now (busy)
        attrs = {
            "type": str(undo["type"]),
            "source": f"/agents/{agent}/{record.skill}/compensation",
            "id": derived_id(namespace, agent, run, step, "compensate"),
            RUN_ATTRIBUTE: run,
            COMPENSATES_ATTRIBUTE: step,
        }
        compensation = new_event(attrs, undo.get("data"))
        try:
            await send(compensation, undo.get("broker"))
        except Exception as exc:
            await claims.release(key, owner)
            log.warning("compensation %s of run %s not sent: %s", attrs["type"], run, exc)
            break
        await claims.complete(key, owner, {"sent": attrs["id"]}, IDEMPOTENCY_TTL_SECONDS)
        fields = {"type": attrs["type"], "undoes": step, "why": why}
        await runlog.append(
            [Record(namespace, agent, run, "compensation", record.skill, dict(event), fields)]
        )
        sent.append(
            {"type": attrs["type"], "skill": str(record.skill), "event": str(event.get("id"))}
        )
    return sent


async def compensate_quietly(
    runlog: RunLog, claims: Store, namespace: str, agent: str, run: str, send: Send, *, why: str
) -> list[dict[str, str]]:
    """`compensate`, logging a store failure instead of raising (the caller's own work is done)."""
    try:
        return await compensate(runlog, claims, namespace, agent, run, send, why=why)
    except StoreError as exc:
        log.warning("compensation of run %s not done: %s", run, exc)
        return []
