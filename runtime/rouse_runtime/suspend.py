"""Suspend a skill until a named event arrives (e.g. a human approval), then resume it.

`await ctx.wait_for(type, key=...)` stores a waiting record (the skill's
checkpoint and the event it was handling) under (agent, skill, type, key) and
ends the invocation with 202: no reply, nothing for the broker to retry. A later
event of that type whose `rousekey` extension attribute equals key resumes it:
the skill's handler runs for that event with `ctx.resumed` set.

A waiting record resumes once. It carries an id, and the resume takes the
store's idempotency claim on that id (the claim/complete/release that makes a
redelivered event run once), so two approvals, or two deliveries racing on two
pods, resume once; a resume that fails (500) releases the claim and the broker's
retry resumes again. An event without `rousekey` costs no store access; one whose
key finds no waiting record (unknown, expired or already resumed) reaches the
handler as an ordinary event (`ctx.resumed` is None), so nothing is lost.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, NoReturn

from cloudevents.http import CloudEvent

from rouse_runtime.config import IDEMPOTENCY_TTL_SECONDS, Config
from rouse_runtime.runs.ids import run_of
from rouse_runtime.scope import Scope
from rouse_runtime.store import Store

KEY_ATTRIBUTE = "rousekey"


class Suspended(BaseException):
    """Raised by `ctx.wait_for` to end the invocation.

    A BaseException so that a skill's `except Exception` does not swallow it.
    """

    def __init__(self, event_type: str, key: str, reply: CloudEvent | None = None) -> None:
        super().__init__(f"suspended until {event_type} with {KEY_ATTRIBUTE}={key!r}")
        self.event_type = event_type
        self.key = key
        self.reply = reply  # answered instead of 202 (a tool's approval request)


class ResumeBusyError(Exception):
    """Another instance is resuming the same waiting record now (answered 409: retry later)."""


@dataclass(frozen=True)
class Resumed:
    """`ctx.resumed`: what a skill saved when it suspended, handed back on resume.

    `checkpoint` is the data given to `wait_for` (default: `ctx.partial`);
    `origin` holds `source`, `id` and `type` of the event it was handling then;
    `since` is when it suspended (Unix seconds). The resuming event is `ctx.event`.
    """

    checkpoint: Any
    origin: dict[str, str]
    since: float
    event_type: str
    key: str
    record_id: str


def waiting_key(scope: Scope, skill: str, event_type: str, key: str) -> str:
    """Store key of a waiting record; never equal to a `ctx.state` key (`<ns>/<agent>/...`)."""
    return scope.tagged("wait", skill, event_type, key)


def resume_claim_key(scope: Scope, skill: str, record_id: str) -> str:
    """Idempotency key of one waiting record's resume (event keys are bare hex digests)."""
    return "resume:" + scope.digest(skill, record_id)


async def suspend(
    store: Store,
    config: Config,
    event: CloudEvent,
    event_type: str,
    key: str,
    checkpoint: Any,
    ttl: float | None,
    reply: CloudEvent | None = None,
    *,
    run: str | None = None,
) -> NoReturn:
    """Store the waiting record, then raise Suspended (see `Context.wait_for`)."""
    if not isinstance(event_type, str) or not event_type:
        raise ValueError(f"ctx.wait_for: event type must be a non-empty string, got {event_type!r}")
    if not isinstance(key, str) or not key:
        raise ValueError(f"ctx.wait_for: key must be a non-empty string, got {key!r}")
    if ttl is not None and ttl <= 0:
        raise ValueError(f"ctx.wait_for: ttl must be positive seconds or None, got {ttl!r}")
    try:
        json.dumps(checkpoint)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"ctx.wait_for: the checkpoint is not JSON-serializable: {exc}") from exc
    record = {
        "id": uuid.uuid4().hex,
        "checkpoint": checkpoint,
        "origin": {
            "source": event["source"],
            "id": event["id"],
            "type": event["type"],
            "run": run or run_of(event),  # the resumed invocation goes on in this run
        },
        "since": time.time(),
    }
    # A later wait on the same (type, key) replaces this one: one waiter per key.
    await store.set(waiting_key(config.scope, config.skill, event_type, key), record, ttl=ttl)
    raise Suspended(event_type, key, reply)


class Resumer:
    """Finds and takes the waiting record an event resumes; settles it after the run."""

    def __init__(self, store: Store, config: Config, owner: str) -> None:
        self.store = store
        self.config = config
        self.owner = owner

    async def take(self, event: CloudEvent, key: Any) -> Resumed | None:
        """The waiting record event resumes, claimed for this run; None for an ordinary event.

        Raises ResumeBusyError while another instance is resuming it.
        """
        cfg, store = self.config, self.store
        event_type = event["type"]
        key = str(key)
        wkey = waiting_key(cfg.scope, cfg.skill, event_type, key)
        record = await store.get(wkey)
        if not isinstance(record, dict) or not isinstance(record.get("id"), str):
            return None
        record_id = record["id"]
        claim = await store.claim(
            resume_claim_key(cfg.scope, cfg.skill, record_id), self.owner, cfg.lease_seconds
        )
        if claim.state == "done":  # resumed already; only its record was left behind
            await self._forget(wkey, record_id)
            return None
        if claim.state == "busy":
            raise ResumeBusyError(
                f"the skill waiting for {event_type} with {KEY_ATTRIBUTE}={key!r}"
                " is being resumed by another instance; retry later"
            )
        return Resumed(
            checkpoint=record.get("checkpoint"),
            origin=dict(record.get("origin") or {}),
            since=float(record.get("since") or 0.0),
            event_type=event_type,
            key=key,
            record_id=record_id,
        )

    async def finish(self, resumed: Resumed, *, ok: bool) -> None:
        """After the resumed run: consume the record (ok), or free it for the retry."""
        cfg = self.config
        claim_key = resume_claim_key(cfg.scope, cfg.skill, resumed.record_id)
        if not ok:
            await self.store.release(claim_key, self.owner)
            return
        await self.store.complete(
            claim_key, self.owner, {"resumed_by": "event"}, IDEMPOTENCY_TTL_SECONDS
        )
        wkey = waiting_key(cfg.scope, cfg.skill, resumed.event_type, resumed.key)
        await self._forget(wkey, resumed.record_id)

    async def _forget(self, wkey: str, record_id: str) -> None:
        # Only that record: the resumed run may have suspended again on the same key.
        current = await self.store.get(wkey)
        if isinstance(current, dict) and current.get("id") == record_id:
            await self.store.delete(wkey)
