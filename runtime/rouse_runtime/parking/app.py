"""The parking service's HTTP API (FastAPI)."""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from cloudevents.http import CloudEvent
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from rouse_runtime.agentspec import service_name
from rouse_runtime.delivery import delivery_spec
from rouse_runtime.events import EventError, dump_event, parse_event, to_http
from rouse_runtime.ledger import Ledger, ledger_registry, open_ledger, utc_day
from rouse_runtime.parking.credential import authorized
from rouse_runtime.parking.queue import Filter, Kind, ParkingQueue, open_queue
from rouse_runtime.parking.replay import DEFAULT_LEASE_SECONDS, Replayer, Target
from rouse_runtime.runs import open_runlog
from rouse_runtime.runs.api import runs_router
from rouse_runtime.runs.brokers import recorded_broker
from rouse_runtime.runs.platform import append_quietly, record_about
from rouse_runtime.runs.saga import compensate_quietly
from rouse_runtime.runs.sweeper import DEFAULT_SWEEP_SECONDS, JoinSweeper
from rouse_runtime.server import read_body
from rouse_runtime.store import Store, StoreError, open_store

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_BROKER_INGRESS = "http://broker-ingress.knative-eventing.svc.cluster.local"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
PAGE = 100  # GET /parked's default page
MAX_PAGE = 1000


@dataclass(frozen=True)
class ParkingSettings:
    state_url: str
    broker_ingress: str = DEFAULT_BROKER_INGRESS
    # A fixed broker URL (local mode) instead of `<ingress>/<namespace>/<broker>`.
    broker_url: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    # A delivery to a skill lasts as long as the skill runs (Knative allows up to 600 s).
    replay_timeout: float = 620.0
    replay_lease_seconds: float = DEFAULT_LEASE_SECONDS
    # A skill's address when the replay request names none (`rouse parked replay` by hand):
    # the cluster-local address of its Knative Service.
    skill_url_template: str = "http://{service}.{namespace}.svc.cluster.local"
    # Required by drop and replay (credential.py); None only in local mode (one machine).
    token: str | None = field(default=None, repr=False)
    # How often joins past their deadline are looked for (runs/sweeper.py).
    join_sweep_seconds: float = DEFAULT_SWEEP_SECONDS

    def broker_for(self, namespace: str, broker: str) -> str:
        if self.broker_url:
            return self.broker_url
        return f"{self.broker_ingress.rstrip('/')}/{namespace}/{broker}"

    def default_target(self, namespace: str, agent: str, skill: str) -> Target:
        service = service_name(agent, skill)
        url = self.skill_url_template.format(
            service=service, namespace=namespace, agent=agent, skill=skill
        )
        return Target(url)


class TargetModel(BaseModel):
    """A skill's address (the Trigger's subscriber URI) and its Trigger's `delivery`."""

    url: str
    delivery: dict[str, Any] = Field(default_factory=dict)


class ReplayRequest(BaseModel):
    broker: str = "default"
    kind: Literal["park", "dead-letter"] = "park"
    ids: list[int] | None = None
    targets: dict[str, TargetModel] | None = None


class DropRequest(BaseModel):
    kind: Literal["park", "dead-letter"] | None = None
    ids: list[int] | None = None
    all: bool = Field(default=False, description="drop every matching event (no ids given)")


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _bad_names(**names: str) -> JSONResponse | None:
    for name, value in names.items():
        if not DNS_LABEL.match(value):
            return _error(400, "invalid name", f"{name} {value!r} is not a DNS-1123 label")
    return None


def create_app(settings: ParkingSettings) -> FastAPI:
    """The app, with its queue, ledger and HTTP client opened for its lifetime."""
    queue: ParkingQueue = open_queue(settings.state_url)
    ledger: Ledger = open_ledger(settings.state_url)
    leases: Store = open_store(settings.state_url)
    client = httpx.AsyncClient(timeout=settings.replay_timeout)
    runlog = open_runlog(settings.state_url)
    replayer = Replayer(queue, leases, client, lease_seconds=settings.replay_lease_seconds)
    replayer.runs = runlog
    sweeper = JoinSweeper(
        leases,
        runlog,
        client,
        skill_url=lambda ns, agent, skill: settings.default_target(ns, agent, skill).url,
        broker_url=settings.broker_for,
        interval=settings.join_sweep_seconds,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sweeping = asyncio.create_task(sweeper.run())
        try:
            yield
        finally:
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
            await client.aclose()
            await queue.close()
            await ledger.close()
            await leases.close()
            await runlog.close()

    app = FastAPI(title="rouse parking", lifespan=lifespan)

    async def undo(ns: str, agent: str, run: str, why: str) -> list[dict[str, str]]:
        """Compensate a run's completed steps through the agent's broker (runs/saga.py)."""

        async def send(event: CloudEvent, broker: str | None) -> None:
            headers, body = to_http(event, "binary")
            response = await client.post(
                settings.broker_for(ns, recorded_broker(broker)), headers=headers, content=body
            )
            if response.status_code >= 300:
                raise RuntimeError(f"broker answered {response.status_code}")

        return await compensate_quietly(runlog, leases, ns, agent, run, send, why=why)

    async def after_cancel(ns: str, agent: str, run: str) -> dict[str, Any]:
        return {"compensations": await undo(ns, agent, run, "cancelled")}

    app.include_router(runs_router(runlog, settings.token, after_cancel=after_cancel))

    def refused(request: Request) -> JSONResponse | None:
        if authorized(request.headers, settings.token):
            return None
        return JSONResponse(
            {"error": "unauthorized", "detail": "drop and replay need the parking token (Bearer)"},
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )

    @app.exception_handler(StoreError)
    async def store_error(_: Request, exc: StoreError) -> JSONResponse:
        return _error(503, "state store unavailable", str(exc))

    async def store_event(
        kind: Kind, request: Request, ns: str, agent: str, skill: str
    ) -> Response:
        bad = _bad_names(namespace=ns, agent=agent, skill=skill)
        if bad is not None:
            return bad
        try:
            # Streamed with the limit (by Content-Length, then by bytes read), never
            # buffered whole first.
            body = await read_body(
                request.receive, request.headers.get("content-length"), settings.max_body_bytes
            )
            if body is None:
                return Response(status_code=400)  # the client went away; nobody reads this
            event, _ = parse_event(request.headers, body)
        except EventError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        await queue.append(
            kind, ns, agent, skill, str(event["source"]), str(event["id"]), dump_event(event)
        )
        recorded = "parked" if kind == "park" else "dead_lettered"
        about = record_about(ns, agent, skill, event, recorded)
        await append_quietly(runlog, about)
        if kind == "dead-letter":  # a step failed for good: undo the ones before it
            await undo(ns, agent, about.run, f"{skill} dead-lettered")
        # Knative's delivery contract: a 2xx answer is empty or a CloudEvent (a JSON body
        # would be taken as a failed delivery, retried, then dead-lettered).
        return Response(status_code=202)

    @app.post("/park/{ns}/{agent}/{skill}")
    async def park(request: Request, ns: str, agent: str, skill: str) -> Response:
        return await store_event("park", request, ns, agent, skill)

    @app.post("/dead-letter/{ns}/{agent}/{skill}")
    async def dead_letter(request: Request, ns: str, agent: str, skill: str) -> Response:
        return await store_event("dead-letter", request, ns, agent, skill)

    @app.get("/parked")
    async def parked(
        namespace: str | None = None,
        agent: str | None = None,
        kind: Kind | None = None,
        after: int = Query(0, ge=0, description="list events with an id above this (a cursor)"),
        limit: int = Query(PAGE, ge=1, le=MAX_PAGE),
    ) -> dict[str, Any]:
        """One page, oldest first; `next` is the cursor of the next page (None: no more)."""
        where = Filter(namespace=namespace, agent=agent, kind=kind)
        items = await queue.items(where, after=after, limit=limit)
        more = len(items) == limit
        return {"items": [i.as_json() for i in items], "next": items[-1].id if more else None}

    @app.post("/replay/{ns}/{agent}")
    async def replay_agent(request: Request, ns: str, agent: str, body: ReplayRequest) -> Response:
        if (no := refused(request)) is not None:
            return no
        bad = _bad_names(namespace=ns, agent=agent, broker=body.broker)
        if bad is not None:
            return bad
        try:
            given = {
                skill: Target(t.url, delivery_spec({"delivery": t.delivery}))
                for skill, t in (body.targets or {}).items()
            }
        except (ValueError, TypeError) as exc:
            return _error(400, "invalid delivery", str(exc))

        def target(skill: str) -> Target | None:
            if body.targets is not None:  # the operator names every current skill
                return given.get(skill)
            return settings.default_target(ns, agent, skill)

        result = await replayer.replay(
            ns,
            agent,
            target,
            reply_to=settings.broker_for(ns, body.broker),
            kind=body.kind,
            ids=None if body.ids is None else tuple(body.ids),
        )
        status = 409 if result.busy else 502 if result.error is not None else 200
        return JSONResponse(result.as_json(), status_code=status)

    @app.post("/drop/{ns}/{agent}")
    async def drop(request: Request, ns: str, agent: str, body: DropRequest) -> Response:
        if (no := refused(request)) is not None:
            return no
        if body.ids is None and not body.all:
            return _error(400, "nothing selected", "give ids, or all=true to drop every match")
        where = Filter(
            namespace=ns,
            agent=agent,
            kind=body.kind,
            ids=None if body.ids is None else tuple(body.ids),
        )
        dropped = 0
        while items := await queue.items(where, limit=MAX_PAGE):  # a page at a time
            dropped += await queue.remove([item.id for item in items])
        return JSONResponse({"dropped": dropped})

    @app.get("/metrics")
    async def metrics() -> Response:
        day = utc_day()
        registry = ledger_registry(await ledger.lines(day=day), day)
        counts = await queue.counts()  # a grouped count: no event body is read
        parked_family = GaugeMetricFamily(
            "rouse_parked_events",
            "Events held by the parking service",
            labels=["namespace", "agent", "skill", "kind"],
        )
        for key, count in sorted(counts.items()):
            parked_family.add_metric(list(key), count)
        registry.register(_Families([parked_family]))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


class _Families(Collector):
    """Ready-made metric families, registered beside the ledger's for one scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families
