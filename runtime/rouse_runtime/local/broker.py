"""The local broker: Knative Broker + Triggers + delivery + dead-letter sink in one process.

``POST /`` takes a CloudEvent (binary or structured mode, parsed by the
CloudEvents SDK) and answers 202 with where it was routed. An event that no
Trigger matches is not dropped silently: the answer is 404 with a JSON body
naming the event and the agent's filters, and a log line says the same.
(Knative's broker would accept it and do nothing; locally the mistake is
worth a loud answer.) A reply with no subscriber is simply the end of its
chain.

Deliveries run in the background with the skill's delivery spec; a skill's
reply re-enters the broker in the trace (chain) of the event that caused it.

While the agent's daily budget is spent with ``onExhausted: park`` (see
``local/parking.py``), a routed event is stored in the parking queue instead
of delivered (the answer is still 202, saying ``parked``), and schedules do
not fire. The parking service's API (``/parked``, ``/replay/...``,
``/drop/...``) is served by the broker too, so ``rouse parked`` works locally.

Dead letters go where the cluster's Knative puts them: the parking queue
(kind ``dead-letter``, in the same state store), with the extension attributes
Knative's dispatcher adds (``knativeerrordest``, ``knativeerrorcode``,
``knativeerrordata``); they are listed, replayed and dropped with the parking
service's API and replayer, as in a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from cloudevents.conversion import to_binary
from cloudevents.exceptions import GenericException
from cloudevents.http import CloudEvent, from_http
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rouse_runtime.agentspec import Agent
from rouse_runtime.delivery import (
    DeliverySpec,
    backoff_seconds,
    dead_letter_attributes,
    delivery_spec,
    retryable,
)
from rouse_runtime.events import dump_event
from rouse_runtime.local import routing
from rouse_runtime.local.chains import (
    TRACEPARENT,
    ChainLog,
    Delivery,
    EventRecord,
    chain_id,
    new_traceparent,
)
from rouse_runtime.local.metrics import LocalMetrics
from rouse_runtime.local.parking import LocalParking
from rouse_runtime.local.supervisor import SkillPool, StartFailedError
from rouse_runtime.parking.queue import Filter, ParkingQueue
from rouse_runtime.runs.ids import run_of
from rouse_runtime.runs.log import RunLog
from rouse_runtime.runs.platform import append_quietly, record_about
from rouse_runtime.runs.saga import compensate_quietly
from rouse_runtime.store import Store

MAX_BODY_BYTES = 1024 * 1024
DEFAULT_TIMEOUT_SECONDS = 300.0
Log = Callable[[str], None]
Sleep = Callable[[float], Any]


@dataclass
class SkillStats:
    """Per-skill delivery counts shown by the live view."""

    delivered: int = 0
    failed: int = 0
    retries: int = 0
    dead_letters: int = 0


@dataclass(frozen=True)
class Attempt:
    """The answer of one delivery attempt (status None: no HTTP answer)."""

    status: int | None
    reply: CloudEvent | None = None
    error: str | None = None
    cold: bool = False


class Broker:
    """Routes events to skill pools, retries, dead-letters, and feeds replies back in."""

    def __init__(
        self,
        agent: Agent,
        pools: dict[str, SkillPool],
        *,
        dead_letters: ParkingQueue,
        namespace: str,
        metrics: LocalMetrics,
        log: Log,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.agent = agent
        self.agent_name = str(agent["metadata"]["name"])
        self.skills = {str(s["name"]): s for s in agent["spec"].get("skills") or []}
        self.routes = routing.routes(agent)
        self.pools = pools
        self.dead_letters = dead_letters
        self.namespace = namespace
        self.metrics = metrics
        self.log = log
        self.sleep = sleep
        self.chains = ChainLog()
        self.stats = {name: SkillStats() for name in self.skills}
        self.delivery = {name: delivery_spec(skill) for name, skill in self.skills.items()}
        self._client = httpx.AsyncClient(timeout=None)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.parking: LocalParking | None = None
        self.runs: RunLog | None = None  # where retries, dead letters and parking are recorded
        self.claims: Store | None = None  # compensations sent once (runs/saga.py)
        self.namespace = "default"  # local mode's (parking.LOCAL_NAMESPACE)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._client.aclose()

    # -- intake ------------------------------------------------------------------------------

    def publish(self, event: CloudEvent, *, via: str, parent: str | None = None) -> EventRecord:
        """Accept an event: give it a chain, record it, start a delivery per matching Trigger."""
        record = self._record(event, via=via, parent=parent)
        outcome = "routed" if record.routed_to else "unroutable"
        self.metrics.events.labels(agent=self.agent_name, outcome=outcome).inc()
        for skill in record.routed_to:
            self.start_delivery(event, skill, record)
        return record

    def _record(self, event: CloudEvent, *, via: str, parent: str | None) -> EventRecord:
        """The event's record, routed and added to its chain (delivered or parked next)."""
        record = EventRecord(
            id=str(event["id"]),
            type=str(event["type"]),
            source=str(event["source"]),
            chain=ensure_chain(event),
            via=via,
            parent=parent,
            data=_jsonable(event.data),
        )
        record.routed_to = routing.targets(self.routes, event.get_attributes())
        self.chains.chain(record.chain).events.append(record)
        return record

    def _direct_record(self, event: CloudEvent, skill: str, *, via: str) -> EventRecord:
        """The record of an event sent straight to one skill (no Trigger routing), in its chain."""
        record = EventRecord(
            id=str(event["id"]),
            type=str(event["type"]),
            source=str(event["source"]),
            chain=ensure_chain(event),
            via=via,
            data=_jsonable(event.data),
            routed_to=[skill],
        )
        self.chains.chain(record.chain).events.append(record)
        return record

    def start_delivery(
        self,
        event: CloudEvent,
        skill: str,
        record: EventRecord,
        *,
        on_done: Callable[[str], None] | None = None,
    ) -> None:
        """Deliver in the background; the chain counts it as pending until it ends."""
        delivery = Delivery(skill=skill)
        record.deliveries.append(delivery)
        chain = self.chains.chain(record.chain)
        chain.pending += 1

        async def run() -> None:
            try:
                await self.deliver(event, skill, delivery)
            finally:
                chain.pending -= 1
                if on_done is not None:
                    on_done(delivery.outcome)

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def accept(
        self, event: CloudEvent, *, via: str, parent: str | None = None
    ) -> tuple[EventRecord, bool]:
        """Publish an event, or park it while the agent's budget is spent; (record, parked)."""
        parking = self.parking
        if parking is None or not parking.holds(event):
            return self.publish(event, via=via, parent=parent), False
        record = self._record(event, via=via, parent=parent)
        outcome = "parked" if record.routed_to else "unroutable"
        self.metrics.events.labels(agent=self.agent_name, outcome=outcome).inc()
        if record.routed_to:
            record.parked = True
            await parking.park(event, record.routed_to)
            for skill in record.routed_to:
                await self._note(event, skill, "parked")
            why = "daily budget spent (replayed at reset)" if parking.parking else "behind a replay"
            self.log(f"parked {record.type} {record.id} for {', '.join(record.routed_to)}: {why}")
        return record, bool(record.routed_to)

    # -- delivery ----------------------------------------------------------------------------

    async def deliver(
        self, event: CloudEvent, skill: str, delivery: Delivery, *, dead_letter: bool = True
    ) -> None:
        """Attempts with the skill's backoff, then the reply or the dead-letter sink (unless
        `dead_letter` is False: a replay keeps what fails, as the cluster's replayer does)."""
        spec: DeliverySpec = self.delivery[skill]
        labels = {"agent": self.agent_name, "skill": skill}
        began = time.monotonic()
        attempt = Attempt(status=None)
        for number in range(spec.retries + 1):
            if number > 0:
                wait = backoff_seconds(spec, number)
                self.stats[skill].retries += 1
                self.metrics.retries.labels(**labels).inc()
                self.log(
                    f"retry {number}/{spec.retries} of {event['type']} {event['id']} to {skill} in {wait:g}s"
                )
                # Recorded during the backoff, never adding to it.
                noted = self._note(
                    event, skill, "retry", attempt=number + 1, status=attempt.status, wait=wait
                )
                await asyncio.gather(noted, self.sleep(wait))
            attempt = await self.attempt(event, skill)
            delivery.attempts = number + 1
            delivery.cold = delivery.cold or attempt.cold
            delivery.status = attempt.status
            delivery.error = attempt.error
            if attempt.status is not None and 200 <= attempt.status < 300:
                break
            self.log(f"{skill} failed {event['type']} {event['id']}: {attempt.error}")
            if not retryable(attempt.status):
                break
        delivery.seconds = time.monotonic() - began
        if attempt.status is not None and 200 <= attempt.status < 300:
            self.stats[skill].delivered += 1
            delivery.outcome = "replied" if attempt.reply is not None else "accepted"
            cold = ", cold start" if delivery.cold else ""
            answer = (
                f"replied {attempt.reply['type']}"
                if attempt.reply is not None
                else "accepted (no reply)"
            )
            self.log(
                f"{skill} <- {event['type']} {event['id']}: {answer} in {delivery.seconds:.2f}s{cold}"
            )
            self.metrics.deliveries.labels(**labels, outcome=delivery.outcome).inc()
            if attempt.reply is not None:
                await self._accept_reply(event, skill, attempt.reply, delivery)
            return
        self.stats[skill].failed += 1
        if not dead_letter:
            delivery.outcome = "failed"
        elif spec.dead_letter:
            await self._dead_letter(event, skill, attempt)
            self.stats[skill].dead_letters += 1
            self.metrics.dead_letters.labels(**labels).inc()
            delivery.outcome = "dead_lettered"
            await self._note(
                event, skill, "dead_lettered", attempts=delivery.attempts,
                reason=(attempt.error or "failed")[:300],
            )  # fmt: skip
            await self._compensate(event, f"{skill} dead-lettered")
            self.log(
                f"dead letter: {event['type']} {event['id']} to {skill} after {delivery.attempts} "
                f"attempt(s): {attempt.error} (rouse deadletters list / replay ID)"
            )
        else:
            delivery.outcome = "failed"
            await self._note(
                event, skill, "delivery_failed", attempts=delivery.attempts,
                reason=(attempt.error or "failed")[:300],
            )  # fmt: skip
            self.log(
                f"dropped {event['type']} {event['id']} to {skill}: no dead-letter sink (delivery.deadLetter)"
            )
        self.metrics.deliveries.labels(**labels, outcome=delivery.outcome).inc()

    async def _dead_letter(self, event: CloudEvent, skill: str, attempt: Attempt) -> None:
        """Into the parking queue as Knative's dispatcher sends it to a dead-letter sink."""
        failed = CloudEvent(
            {
                **event.get_attributes(),
                **dead_letter_attributes(
                    self._url_of(skill), attempt.status, attempt.error or "failed"
                ),
            },
            event.get_data(),
        )
        await self.dead_letters.append(
            "dead-letter", self.namespace, self.agent_name, skill,
            str(event["source"]), str(event["id"]), dump_event(failed),
        )  # fmt: skip

    def _url_of(self, skill: str) -> str:
        """Where the skill is delivered to (its first process's address, else its pool's name)."""
        live = self.pools[skill].live() if skill in self.pools else []
        return f"{live[0].url}/" if live else f"skill {skill}"

    async def _note(self, event: CloudEvent, skill: str, kind: str, **fields: Any) -> None:
        """Append what this broker saw to the event's run (runs/platform.py)."""
        if self.runs is not None:
            record = record_about(self.namespace, self.agent_name, skill, event, kind, **fields)
            await append_quietly(self.runs, record)

    async def _compensate(self, event: CloudEvent, why: str) -> None:
        """Undo the run's completed steps (runs/saga.py): their events re-enter this broker."""
        if self.runs is None or self.claims is None:
            return

        async def send(compensation: CloudEvent, _broker: str | None) -> None:  # one, here
            compensation[TRACEPARENT] = event[TRACEPARENT]  # the same chain as the failure
            await self.accept(compensation, via="compensation", parent=str(event["id"]))

        run = run_of(event)
        sent = await compensate_quietly(
            self.runs, self.claims, self.namespace, self.agent_name, run, send, why=why
        )
        for undo in sent:
            self.log(f"compensating {undo['skill']} ({undo['type']}): {why}")

    async def attempt(self, event: CloudEvent, skill: str) -> Attempt:
        """One POST to a process of the skill, started first if needed."""
        pool = self.pools[skill]
        try:
            lease = await pool.acquire()
        except StartFailedError as exc:
            return Attempt(status=None, error=str(exc), cold=True)
        timeout = float(self.skills[skill].get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
        headers, body = to_binary(event)
        try:
            response = await self._client.post(
                f"{lease.process.url}/", headers=headers, content=body, timeout=timeout + 5.0
            )
        except httpx.HTTPError as exc:
            return Attempt(status=None, error=f"{type(exc).__name__}: {exc}", cold=lease.cold)
        finally:
            await pool.release(lease.process)
        if response.status_code >= 300:
            return Attempt(
                status=response.status_code, error=_error_text(response), cold=lease.cold
            )
        reply = None
        if response.status_code == 200 and response.content:
            try:
                reply = from_http(dict(response.headers), response.content)
            except GenericException as exc:
                return Attempt(
                    status=502,
                    error=f"{skill} replied with an invalid CloudEvent: {exc}",
                    cold=lease.cold,
                )
        return Attempt(status=response.status_code, reply=reply, cold=lease.cold)

    async def _accept_reply(
        self, event: CloudEvent, skill: str, reply: CloudEvent, delivery: Delivery
    ) -> None:
        if chain_id(reply.get(TRACEPARENT)) is None:
            reply[TRACEPARENT] = event[TRACEPARENT]
        delivery.reply_id = str(reply["id"])
        delivery.reply_type = str(reply["type"])
        record, _ = await self.accept(reply, via=f"reply:{skill}", parent=str(event["id"]))
        if not record.routed_to:
            self.log(
                f"{skill} replied {reply['type']} {reply['id']}: no skill subscribes (end of chain)"
            )

    def fire_schedule(self, skill: str, event: CloudEvent) -> EventRecord | None:
        """A PingSource event: delivered to its skill alone, as in a cluster the PingSource's
        Trigger (its exact type and source) does; the skill's reply enters the broker.

        While the budget is spent the tick is parked for its skill, as the
        cluster's schedule Trigger then points at the parking sink; the replay at
        resume delivers one tick per skill, the latest (parking/replay.py).
        """
        parking = self.parking
        if parking is not None and parking.parking:
            task = asyncio.create_task(parking.park(event, [skill]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            self.log(
                f"schedule of {skill} parked: daily budget spent (one tick replayed at resume)"
            )
            return None
        record = self._direct_record(event, skill, via="schedule")
        self.metrics.schedules.labels(agent=self.agent_name, skill=skill).inc()
        self.start_delivery(event, skill, record)
        return record

    # -- HTTP --------------------------------------------------------------------------------

    def app(
        self, parking_api: ASGIApp | None = None, front_doors: Sequence[Route] = ()
    ) -> Starlette:
        """The broker's HTTP API (see the README's Local mode section).

        ``parking_api`` (the parking service's app over the same state store)
        answers every path the broker does not: ``/parked``, ``/replay/...``,
        ``/drop/...``. ``front_doors`` are the routes of the agent's front doors
        (``local/frontdoor.py``), as the ingress serves them in a cluster.
        """
        extra: list[Route | Mount] = []
        if parking_api is not None:
            extra = [
                Route("/replay/{ns}/{agent}", _GuardedReplay(self, parking_api), methods=["POST"]),
                Mount("", app=parking_api),
            ]
        return Starlette(
            routes=[
                Route("/", self._post_event, methods=["POST"]),
                Route("/healthz", _ok, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/skills", self._skills, methods=["GET"]),
                Route("/events", self._events, methods=["GET"]),
                Route("/chains/{chain}", self._chain, methods=["GET"]),
                Route("/deadletters", self._dead_letters, methods=["GET"]),
                Route("/skills/{skill}", self._deliver_to_skill, methods=["POST"]),
                *front_doors,
                *extra,
            ]
        )

    async def _post_event(self, request: Request) -> Response:
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            self.metrics.events.labels(agent=self.agent_name, outcome="rejected").inc()
            return JSONResponse(
                {"error": f"event is larger than {MAX_BODY_BYTES} bytes"}, status_code=413
            )
        try:
            event = from_http(dict(request.headers), body)
        except GenericException as exc:
            self.metrics.events.labels(agent=self.agent_name, outcome="rejected").inc()
            return JSONResponse({"error": f"not a CloudEvent: {exc}"}, status_code=400)
        record, parked = await self.accept(event, via="send")
        if parked:
            return JSONResponse(
                {
                    "id": record.id,
                    "chain": record.chain,
                    "routedTo": record.routed_to,
                    "parked": True,
                },
                status_code=202,
            )
        if not record.routed_to:
            filters = [{"skill": r.skill, "filter": dict(r.filter)} for r in self.routes]
            self.log(
                f"UNROUTABLE {record.type} from {record.source} (id {record.id}): "
                f"no trigger of agent {self.agent_name} matches"
            )
            return JSONResponse(
                {
                    "error": f"no trigger of agent {self.agent_name!r} matches type={record.type!r} source={record.source!r}",
                    "id": record.id,
                    "chain": record.chain,
                    "triggers": filters,
                },
                status_code=404,
            )
        return JSONResponse(
            {"id": record.id, "chain": record.chain, "routedTo": record.routed_to}, status_code=202
        )

    async def _metrics(self, request: Request) -> Response:
        for name, pool in self.pools.items():
            self.metrics.processes.labels(agent=self.agent_name, skill=name).set(len(pool.live()))
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def _skills(self, request: Request) -> Response:
        parked: dict[str, int] = {}
        budget: dict[str, Any] = {"phase": "Running", "parked": 0}
        if self.parking is not None:
            parked = await self.parking.refresh_counts()
            budget = self.parking.as_json()
        skills = []
        for name, pool in self.pools.items():
            stats = self.stats[name]
            skills.append(
                {
                    **pool.snapshot(),
                    "parked": parked.get(name, 0),
                    "delivered": stats.delivered,
                    "failed": stats.failed,
                    "retries": stats.retries,
                    "deadLetters": stats.dead_letters,
                }
            )
        return JSONResponse(
            {"agent": self.agent_name, "phase": budget["phase"], "budget": budget, "skills": skills}
        )

    async def _events(self, request: Request) -> Response:
        limit = int(request.query_params.get("limit", "50"))
        return JSONResponse({"events": [e.as_json() for e in self.chains.recent(limit)]})

    async def _chain(self, request: Request) -> Response:
        chain = self.chains.get(request.path_params["chain"])
        if chain is None:
            return JSONResponse(
                {"error": f"no chain {request.path_params['chain']!r}"}, status_code=404
            )
        return JSONResponse(chain.as_json())

    async def _dead_letters(self, request: Request) -> Response:
        """The agent's dead letters, oldest first (the parking service's ``/parked`` pages them)."""
        where = Filter(namespace=self.namespace, agent=self.agent_name, kind="dead-letter")
        items = await self.dead_letters.items(where, limit=1000)
        return JSONResponse({"deadLetters": [i.as_json() for i in items]})

    async def _deliver_to_skill(self, request: Request) -> Response:
        """Deliver one event to one skill (its own delivery spec) and answer when it ended.

        The replay of parked events and dead letters calls this, as it calls a skill's
        Service in a cluster: 202 once delivered (a reply went into the broker), else the
        skill's last answer (502 without one), so the replayer applies the cluster's rules
        (a retryable failure keeps the event, another one dead-letters a parked event).
        """
        skill = request.path_params["skill"]
        if skill not in self.skills:
            return JSONResponse({"error": f"no skill {skill!r}"}, status_code=404)
        try:
            event = from_http(dict(request.headers), await request.body())
        except GenericException as exc:
            return JSONResponse({"error": f"not a CloudEvent: {exc}"}, status_code=400)
        record = self._direct_record(event, skill, via="replay:parked")
        chain = self.chains.chain(record.chain)
        delivery = Delivery(skill=skill)
        record.deliveries.append(delivery)
        chain.pending += 1
        try:
            await self.deliver(event, skill, delivery, dead_letter=False)
        finally:
            chain.pending -= 1
        if delivery.outcome in ("accepted", "replied"):
            return Response(status_code=202)
        status = delivery.status if delivery.status is not None and delivery.status >= 300 else 502
        return JSONResponse({"error": delivery.error or delivery.outcome}, status_code=status)


class _GuardedReplay:
    """``POST /replay/<ns>/<agent>`` of the parking API, refused while the agent is suspended.

    Replaying then would run the skills while their budget is spent; the events
    replay by themselves at the reset. The lock keeps a replay and the start of
    a suspension apart.
    """

    def __init__(self, broker: Broker, parking_api: ASGIApp) -> None:
        self.broker = broker
        self.parking_api = parking_api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parking = self.broker.parking
        if parking is None:
            await self.parking_api(scope, receive, send)
            return
        async with parking.lock:
            if parking.parking:
                decision = parking.decision
                assert decision is not None
                response = JSONResponse(
                    {
                        "error": "agent suspended",
                        "detail": (
                            f"agent {self.broker.agent_name} is suspended ({decision.message}): "
                            "replaying now would run the skills while the budget is spent; "
                            "they replay by themselves at the reset"
                        ),
                    },
                    status_code=409,
                )
                await response(scope, receive, send)
                return
            await self.parking_api(scope, receive, send)
        with contextlib.suppress(Exception):
            await parking.refresh_counts()


async def _ok(request: Request) -> Response:
    return JSONResponse({"ok": True})


def _error_text(response: httpx.Response) -> str:
    text = response.text.strip()
    return f"HTTP {response.status_code}: {text[:500]}" if text else f"HTTP {response.status_code}"


def ensure_chain(event: CloudEvent) -> str:
    """The event's chain (trace id), starting a trace when it carries no valid traceparent."""
    found = chain_id(event.get(TRACEPARENT))
    if found is None:
        event[TRACEPARENT] = new_traceparent()
        found = chain_id(event[TRACEPARENT])
    assert found is not None
    return found


def _jsonable(data: Any) -> Any:
    if isinstance(data, bytes | bytearray):
        return data.decode(errors="replace")
    return data


def new_event(
    event_type: str, source: str, data: Any, extensions: dict[str, str] | None = None
) -> CloudEvent:
    """A CloudEvent with a fresh id (used by the scheduler and ``rouse send``)."""
    attributes = {
        "type": event_type,
        "source": source,
        "id": str(uuid.uuid4()),
        "time": datetime.now(UTC).isoformat(),
        **(extensions or {}),
    }
    if data is not None and not isinstance(data, bytes | bytearray):
        attributes.setdefault("datacontenttype", "application/json")
    return CloudEvent(attributes, data)
