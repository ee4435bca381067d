"""Replay parked events to the skills they were parked in place of: one replayer at a time.

An event is parked per skill (its Trigger pointed at the parking sink instead
of the skill), so it is replayed to that skill's own address only, never into
the broker: every other subscriber of the broker had it already. Each delivery
follows the skill's delivery spec (retries, backoff; Knative's rules in
`delivery.py`); a reply event the skill answers with goes into the broker,
as Knative does with a subscriber's reply. Oldest first; a delivery that still
fails after its retries stops the replay so order holds (the rest stays parked
for the next replay); an answer Knative would not retry (e.g. 400) moves the
event to the dead letters of that skill, where it can be listed and dropped, and
so does an event parked for a skill the Agent no longer has (no address).

Single flight: a replay holds a lease in the state store (the idempotency
claim, per namespace and agent) so an operator retry, a second parking replica
and `rouse parked replay` by hand never send an event twice or out of order;
a replay that finds the lease held answers `busy`. The lease is renewed while the
replay runs (a skill may take minutes to answer) and frees itself soon after a
replayer dies. It drains in rounds: what is
parked while it runs (late deliveries of the Triggers being restored) is sent
too. It stops taking new events after `time_budget` seconds (`more` says so)
so the lease never outlives its holder's work.

Schedule ticks (PingSource events) parked while suspended are coalesced: one
tick per skill, the latest, is delivered at resume; the older ones are dropped
(within each page of `PAGE` events read: a longer suspension can leave one
tick per page).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from rouse_runtime.agentspec import PING_TYPE as PING_TYPE
from rouse_runtime.delivery import DeliverySpec, backoff_seconds, retryable
from rouse_runtime.events import EventError, load_event, parse_event, to_http
from rouse_runtime.parking.queue import Filter, Kind, Parked, ParkingQueue
from rouse_runtime.runs.log import RunLog
from rouse_runtime.runs.platform import append_quietly, record_about
from rouse_runtime.scope import Scope
from rouse_runtime.store import Store, StoreError

DEFAULT_LEASE_SECONDS = 60.0  # renewed every third of it while the replay runs
DEFAULT_TIME_BUDGET_SECONDS = 60.0
PAGE = 100  # events read at a time: a replay never loads a whole queue

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Target:
    """Where a skill's parked events go: its own address, with its delivery spec."""

    url: str
    delivery: DeliverySpec = field(default_factory=DeliverySpec)


@dataclass(frozen=True)
class ReplayResult:
    replayed: int
    removed: int
    remaining: int
    error: str | None = None
    busy: bool = False
    more: bool = False
    coalesced: int = 0
    dead_lettered: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def lease_key(namespace: str, agent: str) -> str:
    """The replay lease of one agent (a store idempotency key of its own kind)."""
    return "replay-lease:" + Scope(namespace, agent).digest("replay")


def coalesce_ticks(items: list[Parked]) -> tuple[list[Parked], list[Parked]]:
    """(to deliver, to drop): of each skill's parked schedule ticks, only the latest is kept."""
    latest: dict[str, int] = {}
    for item in items:
        if _is_tick(item):
            latest[item.skill] = item.id
    keep = [i for i in items if not _is_tick(i) or latest[i.skill] == i.id]
    drop = [i for i in items if _is_tick(i) and latest[i.skill] != i.id]
    return keep, drop


def _is_tick(item: Parked) -> bool:
    return bool(json.loads(item.event).get("type") == PING_TYPE)


@dataclass
class _Delivery:
    status: int | None
    error: str | None
    reply: tuple[dict[str, str], bytes] | None = None


class Replayer:
    """Replays one agent's parked events (see the module docstring).

    `runs`: where each replayed or dead-lettered event is recorded in its run's history.
    """

    runs: RunLog | None = None

    def __init__(
        self,
        queue: ParkingQueue,
        store: Store,
        client: httpx.AsyncClient,
        *,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        time_budget: float = DEFAULT_TIME_BUDGET_SECONDS,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.queue = queue
        self.store = store
        self.client = client
        self.lease_seconds = lease_seconds
        self.time_budget = time_budget
        self.sleep = sleep

    async def replay(
        self,
        namespace: str,
        agent: str,
        targets: Callable[[str], Target | None],
        *,
        reply_to: str | None,
        kind: Kind = "park",
        ids: tuple[int, ...] | None = None,
    ) -> ReplayResult:
        """Deliver the agent's parked events to their skills in order, under the lease.

        `targets(skill)` is the skill's address and delivery spec (None: unknown, its
        events stay parked); `reply_to` the broker that takes the skills' replies.
        """
        key, owner = lease_key(namespace, agent), f"replayer-{uuid.uuid4().hex}"
        claim = await self.store.claim(key, owner, self.lease_seconds)
        if claim.state != "claimed":
            return ReplayResult(
                0, 0, -1, error="another replay of this agent is running", busy=True
            )
        renewing = asyncio.create_task(self._renew(key, owner))
        try:
            where = Filter(namespace=namespace, agent=agent, kind=kind, ids=ids)
            return await self._drain(where, targets, reply_to)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await self.store.release(key, owner)

    async def _renew(self, key: str, owner: str) -> None:
        """Keep the lease while the replay runs, however long a skill takes to answer; a
        replayer that dies stops renewing, and the lease frees itself within `lease_seconds`."""
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            with contextlib.suppress(StoreError):  # a blip: the next renewal may still make it
                await self.store.extend(key, owner, self.lease_seconds)

    async def _drain(
        self, where: Filter, targets: Callable[[str], Target | None], reply_to: str | None
    ) -> ReplayResult:
        started = time.monotonic()
        replayed = removed = coalesced = dead = 0
        error: str | None = None
        more = False
        while error is None:
            # A page at a time (delivered events are removed, so the next page starts after).
            items = await self.queue.items(where, limit=PAGE)
            if not items:
                break
            items, drop = coalesce_ticks(items)
            coalesced += await self.queue.remove([i.id for i in drop])
            for item in items:
                if time.monotonic() - started > self.time_budget:
                    more = True
                    break
                target = targets(item.skill)
                if target is None:  # the skill left the Agent: kept where it can be seen
                    if item.kind == "park":
                        removed += await self._to_dead_letters(item)
                        dead += 1
                        continue
                    error = f"no address for skill {item.skill!r}: its events stay parked"
                    break
                outcome = await self._deliver(item, target)
                if outcome.status is not None and 200 <= outcome.status < 300:
                    problem = await self._forward_reply(outcome, reply_to)
                    if problem is not None:  # the skill ran; its stored reply comes back next time
                        error = problem
                        break
                    replayed += 1
                    removed += await self.queue.remove([item.id])
                    await self._record(item, "replayed", status=outcome.status)
                elif item.kind == "park" and not retryable(outcome.status):  # Knative dead-letters
                    removed += await self._to_dead_letters(item)
                    dead += 1
                else:
                    error = f"skill {item.skill} ({target.url}) refused event {item.event_id!r}: {outcome.error}"
                    break
            if more:
                break
        remaining = await self.queue.count(where)
        return ReplayResult(
            replayed, removed, remaining, error, more=more, coalesced=coalesced, dead_lettered=dead
        )

    async def _record(self, item: Parked, kind: str, **fields: Any) -> None:
        record = record_about(item.namespace, item.agent, item.skill, item.event, kind, **fields)
        await append_quietly(self.runs, record)

    async def _to_dead_letters(self, item: Parked) -> int:
        """Move a parked event to its skill's dead letters (listed, droppable, replayable)."""
        await self._record(item, "dead_lettered", reason="replay refused or skill gone")
        await self.queue.append(
            "dead-letter", item.namespace, item.agent, item.skill,
            item.source, item.event_id, item.event,
        )  # fmt: skip
        return await self.queue.remove([item.id])

    async def _deliver(self, item: Parked, target: Target) -> _Delivery:
        headers, body = to_http(load_event(item.event), "binary")
        outcome = _Delivery(None, "not attempted")
        for number in range(target.delivery.retries + 1):
            if number > 0:
                await self.sleep(backoff_seconds(target.delivery, number))
            outcome = await self._attempt(target.url, headers, body)
            if outcome.status is not None and 200 <= outcome.status < 300:
                break
            if not retryable(outcome.status):
                break
        return outcome

    async def _attempt(self, url: str, headers: dict[str, str], body: bytes) -> _Delivery:
        try:
            response = await self.client.post(url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            return _Delivery(None, f"unreachable: {type(exc).__name__}: {exc}")
        status = response.status_code
        if not 200 <= status < 300:
            return _Delivery(status, f"HTTP {status} {response.text[:200]}")
        if status == 200 and response.content:
            return _Delivery(status, None, (dict(response.headers), response.content))
        return _Delivery(status, None)

    async def _forward_reply(self, outcome: _Delivery, reply_to: str | None) -> str | None:
        if outcome.reply is None or reply_to is None:
            return None
        return await forward_reply(self.client, *outcome.reply, reply_to)


async def forward_reply(
    client: httpx.AsyncClient, headers: dict[str, str], body: bytes, reply_to: str
) -> str | None:
    """Send a skill's reply event into the broker (as a Trigger does); why not, or None."""
    try:
        event, mode = parse_event(headers, body)
    except EventError:
        return None  # not an event: Knative ignores a non-event 2xx body too
    out_headers, out_body = to_http(event, mode)
    try:
        response = await client.post(reply_to, headers=out_headers, content=out_body)
    except httpx.HTTPError as exc:
        return f"broker {reply_to} unreachable for a reply: {type(exc).__name__}: {exc}"
    if response.status_code >= 300:
        return f"broker {reply_to} refused a reply: HTTP {response.status_code}"
    return None
