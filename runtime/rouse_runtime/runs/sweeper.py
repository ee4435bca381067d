"""The join sweeper: ends a join whose deadline passed when no further part comes to end it.

A join fires when its last part arrives, or when a part arrives past the
deadline (runs/join.py); a join whose missing parts never come (dead-lettered,
dropped, never sent) would wait forever, since its skill scales to zero and
nothing else wakes it. The sweeper runs where something always runs: the
parking service (and so `rouse dev`, which serves its app). Every `interval`
seconds it reads the joins due (`due_joins`) and delivers each join skill a
`dev.rouse.join.deadline` event straight to its address (as a PingSource or a
replay does, never through the broker: no other subscriber wants it); the skill
runs the join once with what is in (`ctx.joined.missing` names the rest), and
its reply goes into the Agent's Broker. The event's id is fixed per join, so a
second delivery (a retry after a failure, a second replica) is the same event
to the skill's idempotency, and a claim in the state store keeps two replicas
from sending it at once. Each join ended is recorded in its run
(`join_deadline`). A delivery that fails stays due and is tried again at the
next sweep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from rouse_runtime.config import IDEMPOTENCY_TTL_SECONDS
from rouse_runtime.events import derived_id, new_event, to_http
from rouse_runtime.parking.replay import forward_reply
from rouse_runtime.runs.brokers import DNS_LABEL, recorded_broker
from rouse_runtime.runs.ids import (
    JOIN_ATTRIBUTE,
    PARTS_ATTRIBUTE,
    RUN_ATTRIBUTE,
    InvalidRunIdError,
    check_run_id,
)
from rouse_runtime.runs.join import DEADLINE_TYPE, Due, due_joins, forget_due
from rouse_runtime.runs.log import Record, RunLog
from rouse_runtime.runs.platform import append_quietly
from rouse_runtime.store import Store, StoreError

log = logging.getLogger("rouse.runs")

DEFAULT_SWEEP_SECONDS = 5.0
CLAIM_SECONDS = 620.0  # a join skill may run as long as Knative lets it (600 s)

SkillUrl = Callable[[str, str, str], str]  # (namespace, agent, skill) -> the skill's address
BrokerUrl = Callable[[str, str], str]  # (namespace, broker) -> where replies go


def deadline_event(due: Due) -> Any:
    """The event that ends a join at its deadline (the same one every time it is sent)."""
    about = due.about
    attrs = {
        "type": DEADLINE_TYPE,
        "source": f"/agents/{about['agent']}/{about['skill']}/join",
        "id": derived_id(about["namespace"], about["agent"], about["skill"], about["join"]),
        RUN_ATTRIBUTE: about["run"],
        JOIN_ATTRIBUTE: about["join"],
        PARTS_ATTRIBUTE: str(about["parts"]),
    }
    return new_event(attrs, {"join": about["join"], "parts": about["parts"], "due": due.due})


def _valid(about: dict[str, Any]) -> bool:
    """A due join's description names real things (it is read back from the store)."""
    names = (about.get("namespace"), about.get("agent"), about.get("skill"))
    if not all(isinstance(n, str) and DNS_LABEL.match(n) for n in names):
        return False
    try:
        check_run_id(about.get("run"))
        check_run_id(about.get("join"))
    except InvalidRunIdError:
        return False
    return isinstance(about.get("parts"), int)


class JoinSweeper:
    """Ends the joins due in one state store (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        runlog: RunLog,
        client: httpx.AsyncClient,
        *,
        skill_url: SkillUrl,
        broker_url: BrokerUrl,
        interval: float = DEFAULT_SWEEP_SECONDS,
    ) -> None:
        self.store = store
        self.runlog = runlog
        self.client = client
        self.skill_url = skill_url
        self.broker_url = broker_url
        self.interval = interval
        self._sending: dict[str, asyncio.Task[bool]] = {}

    async def run(self) -> None:
        """Sweep every `interval` seconds until cancelled (a store failure waits a round)."""
        try:
            while True:
                try:
                    await self.sweep()
                except StoreError as exc:
                    log.warning("join sweep: state store unavailable: %s", exc)
                await asyncio.sleep(self.interval)
        finally:
            for task in self._sending.values():
                task.cancel()
            await asyncio.gather(*self._sending.values(), return_exceptions=True)

    async def sweep(self, now: float | None = None) -> int:
        """Start ending every join due now (each in its own task); how many were started."""
        started = 0
        for due in await due_joins(self.store, time.time() if now is None else now):
            if due.key in self._sending:
                continue  # still being delivered from an earlier sweep
            task = asyncio.create_task(self.end(due))
            self._sending[due.key] = task
            task.add_done_callback(self._sent)
            started += 1
        return started

    def _sent(self, task: asyncio.Task[bool]) -> None:
        for key, sending in list(self._sending.items()):
            if sending is task:
                del self._sending[key]
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("join sweep: %s", exc)

    async def wait(self) -> None:
        """Until the deliveries started so far have ended (for tests and shutdown)."""
        await asyncio.gather(*self._sending.values(), return_exceptions=True)

    async def end(self, due: Due) -> bool:
        """Deliver a due join's deadline event to its skill; True once it is ended."""
        about = due.about
        if not _valid(about):
            log.warning("join sweep: dropping a malformed due join %s: %s", due.key, about)
            await forget_due(self.store, due.key)
            return False
        owner = f"sweeper:{id(self)}"
        claim_key = f"join-sweep:{due.key}"
        claim = await self.store.claim(claim_key, owner, CLAIM_SECONDS)
        if claim.state != "claimed":
            return False  # another replica is sending it (busy), or it was sent (done)
        event = deadline_event(due)
        ns, agent, skill = about["namespace"], about["agent"], about["skill"]
        error = await self._deliver(event, self.skill_url(ns, agent, skill), about)
        if error is not None:
            with contextlib.suppress(StoreError):
                await self.store.release(claim_key, owner)
            log.warning("join %s of %s/%s not ended yet: %s", about["join"], ns, agent, error)
            return False
        await forget_due(self.store, due.key)
        await self.store.complete(claim_key, owner, {"ended": True}, IDEMPOTENCY_TTL_SECONDS)
        ref = {"type": DEADLINE_TYPE, "id": str(event["id"]), "source": str(event["source"])}
        fields = {"join": about["join"], "parts": about["parts"], "due": due.due}
        record = Record(ns, agent, about["run"], "join_deadline", skill, ref, fields)
        await append_quietly(self.runlog, record)
        return True

    async def _deliver(self, event: Any, url: str, about: dict[str, Any]) -> str | None:
        """POST the event to the skill, its reply (if any) into the Agent's Broker; why not."""
        headers, body = to_http(event, "binary")
        try:
            response = await self.client.post(url, headers=headers, content=body)
        except httpx.HTTPError as exc:
            return f"{url} unreachable: {type(exc).__name__}: {exc}"
        if not 200 <= response.status_code < 300:
            return f"{url} answered {response.status_code}: {response.text[:200]}"
        if response.status_code == 200 and response.content:
            reply_to = self.broker_url(about["namespace"], recorded_broker(about.get("broker")))
            return await forward_reply(
                self.client, dict(response.headers), response.content, reply_to
            )
        return None
