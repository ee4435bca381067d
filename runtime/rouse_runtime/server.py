"""The skill's HTTP server: CloudEvents in on POST /, replies out, health and metrics.

`create_app(config)` builds the app on Starlette (FastAPI's own core: the skill
server uses no FastAPI feature, and importing FastAPI was half of a cold start).
One invocation is: read the body within the size limit → parse the CloudEvent
(400/413/415 on bad input) → admission checks (the hook where a "reject with 429
while suspended" policy goes) → idempotency (an in-process future per key plus a
store-level claim, so duplicates run once across processes) → the skill under its
budget → reply.

Replies follow Knative: 200 with a CloudEvent (same HTTP mode as the request) is a
reply the broker feeds back; 202 without body is none; 500 means "retry me"; a
budget stop is a 200 `dev.rouse.budget.exceeded` reply, never a retryable error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from rouse_runtime.budget import Budget, BudgetExceeded
from rouse_runtime.budget_gate import BudgetGate
from rouse_runtime.config import IDEMPOTENCY_TTL_SECONDS, Config
from rouse_runtime.context import Context
from rouse_runtime.events import (
    BUDGET_EXCEEDED_TYPE,
    EventError,
    Mode,
    derived_id,
    dump_event,
    load_event,
    new_event,
    parse_event,
    to_http,
)
from rouse_runtime.handler import LoadedHandler, load_handler
from rouse_runtime.ledger import Entry, Ledger, ledger_on
from rouse_runtime.metrics import Metrics
from rouse_runtime.protocol import MAX_HEADER_BYTES
from rouse_runtime.runs import RUN_ATTRIBUTE, RunLog, run_of, runlog_on
from rouse_runtime.runs.ids import JOIN_ATTRIBUTE, JOIN_ATTRIBUTES
from rouse_runtime.runs.recorder import Cancelled, Recorder, RunHandle, finished_fields
from rouse_runtime.runs.saga import COMPENSATES_ATTRIBUTE, undo_fields
from rouse_runtime.scope import Scope as KeyScope
from rouse_runtime.spend import record_spend
from rouse_runtime.store import Store, StoreError, open_store
from rouse_runtime.suspend import KEY_ATTRIBUTE, ResumeBusyError, Resumed, Resumer, Suspended

if TYPE_CHECKING:
    import httpx

    from rouse_runtime.runs.join import Joined, Joins
    from rouse_runtime.telemetry import Telemetry
    from rouse_runtime.tools.calls import ToolCallObserver
    from rouse_runtime.tools.client import Connections

log = logging.getLogger("rouse.runtime")

# Request headers an event is read from (ASGI names are lower case): the CloudEvents
# attributes, content type and length. Knative's proxies add a dozen others per request.
EVENT_HEADERS = (b"ce-", b"content-")
# An invocation's ledger line (its spend goes in per model call): two values, made once.
INVOCATION = Entry.invocation(cold_start=False)
COLD_INVOCATION = Entry.invocation(cold_start=True)

BYTES_HINT = (
    " (return bytes alone for an application/octet-stream reply, or a CloudEvent with"
    " bytes data; inside JSON, encode them, e.g. base64)"
)

# An admission check sees the parsed event before the skill runs; returning a
# Response refuses it (e.g. 429 while the agent's budget is spent).
AdmissionCheck = Callable[[CloudEvent], Awaitable[Response | None]]


@dataclass(frozen=True)
class Outcome:
    """What one invocation produced: the HTTP status and the reply event or error body."""

    status: int
    event: CloudEvent | None = None
    error: dict[str, str] | None = None
    kind: str = "ok"

    dumped: str | None = None  # the event as stored, when already serialized

    def record(self) -> dict[str, Any]:
        event = self.dumped
        if event is None and self.event is not None:
            event = dump_event(self.event)
        return {"status": self.status, "event": event}

    @staticmethod
    def from_record(record: dict[str, Any]) -> Outcome:
        event = record.get("event")
        return Outcome(
            int(record["status"]), None if event is None else load_event(event), kind="duplicate"
        )


def json_response(
    status: int, error: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = json.dumps({"error": error, "detail": detail}).encode()
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def idempotency_key(scope: KeyScope, skill: str, source: str, event_id: str) -> str:
    """One key per (namespace, agent, skill, event source, event id): each skill runs an event once."""
    return scope.digest(skill, source, event_id)


def stale_tool_answer(config: Config, event: CloudEvent) -> bool:
    """An approval answer for a tool call no longer waiting (tools/approval.py)."""
    from rouse_runtime.tools.approval import is_stale_answer

    return is_stale_answer(config, event)


def process_age() -> float | None:
    """Seconds since this process was created (Linux), for rouse_startup_seconds.

    Both ends are on the boot clock: now is CLOCK_BOOTTIME (ns resolution) and the
    start is /proc/self/stat field 22 (starttime, in clock ticks since boot, 10 ms
    at the usual USER_HZ=100). The wall clock plus /proc/stat `btime` would be
    off by up to 1 s (btime is whole seconds) and move with clock steps. What is
    measured: from the fork that made the process (exec follows at once for a
    container's entrypoint or Popen) to the call. None where /proc is missing.
    """
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of the line; fields here start at field 3
        now = time.clock_gettime(time.CLOCK_BOOTTIME)
        return max(0.0, now - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class BodyTooLargeError(EventError):
    def __init__(self, limit: int, what: str) -> None:
        super().__init__(
            413,
            "payload too large",
            f"{what} exceeds the limit of {limit} bytes (ROUSE_MAX_BODY_BYTES)",
        )


async def read_body(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """The request body, refusing (413) past limit by Content-Length and by bytes streamed.

    None when the client went away before sending it all.
    """
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise EventError(
                400, "invalid header", f"Content-Length {declared[:40]!r} is not a number"
            ) from None
        if size > limit:
            raise BodyTooLargeError(limit, f"Content-Length {size}")
    chunks: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        if chunk:
            received += len(chunk)
            if received > limit:
                raise BodyTooLargeError(limit, "body")
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_response(send: Send, status: int, headers: Mapping[str, str], body: bytes) -> None:
    raw = [(b"content-length", str(len(body)).encode())]
    raw += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, error: str, detail: str) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send_response(send, status, {"content-type": "application/json"}, body)


class RawEndpoint:
    """A bare ASGI callable as a route endpoint (Starlette calls non-functions as ASGI apps)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class SkillApp(Starlette):
    """The Starlette app, with the hot path (POST /) served as a bare ASGI endpoint.

    Events skip the middleware stack and Starlette's routing; health, readiness,
    metrics and errors go through Starlette as usual. Every event costs the
    same few microseconds less.
    """

    receive_event: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.receive_event is not None
            and scope["type"] == "http"
            and scope["path"] == "/"
            and scope["method"] == "POST"
        ):
            await self.receive_event(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class Runtime:
    """The skill's process-wide state: handler, store, metrics, in-flight invocations."""

    def __init__(
        self,
        config: Config,
        handler: LoadedHandler,
        metrics: Metrics | None = None,
        store: Store | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.telemetry = telemetry  # None: tracing off (telemetry.from_environ)
        self.handler = handler
        self.metrics = metrics or Metrics(config.agent, config.skill)
        self.admission_checks: list[AdmissionCheck] = []
        # Called after every ctx.tools call (run history and spans hook in here).
        self.tool_observers: list[ToolCallObserver] = []
        self._connections: Connections | None = None
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._store = store
        self._ledger: Ledger | None = None
        self._resumer: Resumer | None = None
        self._runlog: RunLog | None = None
        self._joins: Joins | None = None
        self.namespace = config.namespace
        self.runs = Recorder(
            lambda: self.runlog,
            config.namespace,
            config.agent,
            config.skill,
            on_stops_read=self.metrics.stop_marks_read.set,
        )
        self._http: httpx.AsyncClient | None = None
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._served = 0
        limits = config.limits
        timeout = limits.timeout_seconds
        # Stop a little before Knative's own request timeout so the budget reply gets out.
        self.deadline = None if timeout is None else timeout - min(1.0, timeout * 0.1)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = open_store(self.config.state_url, sole_writer=True)
        return self._store

    @property
    def ledger(self) -> Ledger:
        """Exact per-skill counts (see ledger.py), beside the store and in its commits."""
        if self._ledger is None:
            self._ledger = ledger_on(self.store, self.config.state_url)
        return self._ledger

    @property
    def runlog(self) -> RunLog:
        """Run records (runs/), beside the store and in its commits."""
        if self._runlog is None:
            self._runlog = runlog_on(
                self.store, self.config.state_url, retention=self.config.runs_retention
            )
        return self._runlog

    @property
    def joins(self) -> Joins:
        """Fan-in join state (runs/join.py), used only by a skill declared `join`."""
        if self._joins is None:
            from rouse_runtime.runs.join import Joins  # only a join skill loads it (cold start)

            self._joins = Joins(self.store, self.config.join_deadline)
        return self._joins

    @property
    def resumer(self) -> Resumer:
        """Waiting records (suspend.py), used only by events that carry `rousekey`."""
        if self._resumer is None:
            self._resumer = Resumer(self.store, self.config, self.owner)
        return self._resumer

    def http(self) -> httpx.AsyncClient:
        """Shared outbound client (emit, llm), built on first use."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=10.0))
        return self._http

    def connections(self) -> Connections:
        """The MCP sessions of spec.tools, opened on first use and kept while the process is warm."""
        if self._connections is None:
            from rouse_runtime.tools.client import Connections

            self._connections = Connections(self.config.tools)
        return self._connections

    async def close(self) -> None:
        if self._connections is not None:
            await self._connections.close()
        await self.runs.watch.close()
        if self._http is not None:
            await self._http.aclose()
        if self._runlog is not None:
            await self._runlog.close()
        if self._store is not None:
            await self._store.close()
        if self.telemetry is not None:
            await asyncio.to_thread(self.telemetry.shutdown)  # exports what is buffered

    async def admit(self, event: CloudEvent) -> Response | None:
        for check in self.admission_checks:
            refusal = await check(event)
            if refusal is not None:
                return refusal
        return None

    async def invoke_once(self, event: CloudEvent, run: str | None = None) -> Outcome:
        """Run the skill for event unless this (source, id) already ran or is running.

        `run`: the event's run (runs/ids.py), when the caller has read it already.
        """
        run = run_of(event) if run is None else run
        key = idempotency_key(self.config.scope, self.config.skill, event["source"], event["id"])
        running = self._inflight.get(key)
        while running is not None:
            try:
                outcome = await asyncio.shield(running)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # we are cancelled ourselves
                # The run we waited on was cancelled (its client left): run it here.
                running = self._inflight.get(key)
                continue
            self.metrics.invocations["duplicate"].inc()
            self.runs.stage(
                event, run, "duplicate", {"answer": "in flight here", "status": outcome.status}
            )
            return Outcome(outcome.status, outcome.event, outcome.error, kind="duplicate")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            outcome = await self._claim_and_run(key, event, run)
        except Exception as exc:
            # Waiting duplicates get the same error (answered as JSON), never a hang.
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when none waits
            raise
        except BaseException:
            future.cancel()
            raise
        else:
            future.set_result(outcome)
            return outcome
        finally:
            del self._inflight[key]

    async def _claim_and_run(self, key: str, event: CloudEvent, run: str) -> Outcome:
        lease = self.config.lease_seconds
        wait_until = time.monotonic() + (self.config.limits.timeout_seconds or 30.0)
        pause = 0.02
        claim = await self.store.claim(key, self.owner, lease)
        while claim.state == "busy":
            if time.monotonic() > wait_until:
                self.runs.stage(
                    event, run, "duplicate", {"answer": "busy elsewhere", "status": 409}
                )
                return Outcome(
                    409,
                    error={
                        "error": "duplicate in progress",
                        "detail": f"event {event['id']!r} from {event['source']!r} is being processed by another instance; retry later",
                    },
                    kind="duplicate",
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)
            claim = await self.store.claim(key, self.owner, lease)
        if claim.state == "done":
            self.metrics.invocations["duplicate"].inc()
            stored = Outcome.from_record(claim.record)
            self.runs.stage(event, run, "duplicate", {"answer": "stored", "status": stored.status})
            return stored
        joined: Joined | None = None
        if self.config.join:
            arrival = await self._join(key, event, run)
            if isinstance(arrival, Outcome):
                return arrival
            joined = arrival
        resumed: Resumed | None = None
        try:
            wait_key = event.get(KEY_ATTRIBUTE)
            if wait_key is not None:
                resumed = await self.resumer.take(event, wait_key)
                if resumed is None and stale_tool_answer(self.config, event):
                    log.info("no tool call waits for approval %s: ignored", wait_key)
                    await self.store.complete(
                        key, self.owner, {"status": 202, "event": None}, IDEMPOTENCY_TTL_SECONDS
                    )
                    return Outcome(202, kind="duplicate")
                if resumed is not None:
                    run = resumed.origin.get("run") or run  # the suspended run goes on
                    if (
                        dropped := await self._resume_stopped(key, event, run, resumed)
                    ) is not None:
                        return dropped
            outcome, entry, recorded = await self.run(event, resumed, run, joined)
        except ResumeBusyError as exc:
            await self.store.release(key, self.owner)
            error = {"error": "resume in progress", "detail": str(exc)}
            return Outcome(409, error=error, kind="duplicate")
        except BaseException:
            try:
                if resumed is not None:
                    await self.resumer.finish(resumed, ok=False)
            finally:
                await self.store.release(key, self.owner)
            raise
        if resumed is not None:
            try:
                await self.resumer.finish(resumed, ok=outcome.status < 300)
            except StoreError as exc:  # the run happened: failing it now would run it again
                log.warning("resume of %s not settled: %s", resumed.key, exc)
        # The ledger line first: on SQLite it is queued into the same group commit as
        # the result (or release), so a crash keeps both or neither.
        counted = self._count(entry)
        try:
            if outcome.status < 300:
                await self.store.complete(
                    key, self.owner, outcome.record(), IDEMPOTENCY_TTL_SECONDS
                )
            else:
                await self.store.release(key, self.owner)
        finally:
            if counted is not None:
                try:
                    await counted
                except StoreError as exc:
                    self._not_counted(exc)
            if recorded is not None:
                with contextlib.suppress(StoreError):  # logged by the recorder
                    await recorded
        return outcome

    async def _resume_stopped(
        self, key: str, event: CloudEvent, run: str, resumed: Resumed
    ) -> Outcome | None:
        """A resume of a cancelled run: the wait is consumed, the event dropped (202, recorded)
        and stored as answered; None when the run goes on. Read fresh: it cannot be undone."""
        reason = await self.runs.stop_reason(run, fresh=True)
        if reason is None:
            return None
        await self.resumer.finish(resumed, ok=True)
        fields = {"reason": reason, "resume": f"{resumed.event_type}/{resumed.key}"}
        self.runs.stage(event, run, "dropped", fields)
        dropped = Outcome(202, kind="cancelled")
        self.metrics.invocations["cancelled"].inc()
        await self.store.complete(key, self.owner, dropped.record(), IDEMPOTENCY_TTL_SECONDS)
        return dropped

    async def _join(self, key: str, event: CloudEvent, run: str) -> Joined | Outcome | None:
        """A join skill's part: collected (202, the skill not run), or the whole join to run
        now, or None for an event that carries no join (run as usual)."""
        from rouse_runtime.runs.join import join_about, part_of

        part = part_of(event)
        if part is None:
            return None
        cfg = self.config
        about = join_about(cfg, part, run)
        try:
            arrival = await self.joins.arrive(
                cfg.scope.digest(cfg.skill, "join", part.join), part, event, key, about
            )
        except BaseException:
            await self.store.release(key, self.owner)
            raise
        if arrival.joined is not None:
            return arrival.joined
        fields = {"join": part.join, "part": part.index, "parts": part.parts, "have": arrival.have}
        self.runs.stage(event, run, f"join_{arrival.kind}", fields)
        if arrival.kind == "early":  # the sweeper's clock is ahead of ours: it sends it again
            await self.store.release(key, self.owner)
            detail = f"join {part.join} is not past its deadline yet"
            return Outcome(409, error={"error": "join not due", "detail": detail}, kind="duplicate")
        collected = Outcome(202)
        await self.store.complete(key, self.owner, collected.record(), IDEMPOTENCY_TTL_SECONDS)
        return collected

    def _count(self, entry: Entry) -> Awaitable[None] | None:
        """Start adding an invocation to the ledger; a failure is logged, never raised.

        The invocation already happened (and spent): failing it now would only make
        the broker retry and spend again.
        """
        try:
            return self.ledger.stage(self.namespace, self.config.agent, self.config.skill, entry)
        except StoreError as exc:
            self._not_counted(exc)
            return None

    async def record_spend(
        self, input_tokens: int, output_tokens: int, cost_usd: float, priced: bool
    ) -> None:
        """Add one model call's spend to the ledger now (spend.py: a kill cannot hide it)."""
        await record_spend(self, input_tokens, output_tokens, cost_usd, priced)

    def _not_counted(self, exc: StoreError) -> None:
        cfg = self.config
        log.warning("ledger: invocation of %s/%s not recorded: %s", cfg.agent, cfg.skill, exc)

    def context(self, event: CloudEvent, budget: Budget, run: RunHandle | None = None) -> Context:
        """The `ctx` of one invocation of event under budget, in run."""
        return Context(
            event=event,
            config=self.config,
            budget=budget,
            store=self.store,
            metrics=self.metrics,
            http=self.http,
            loop=asyncio.get_running_loop(),
            record_spend=self.record_spend,
            connections=self.connections,
            tool_observers=tuple(self.tool_observers),
            run=run,
        )

    async def count(self, entry: Entry) -> None:
        """Add an invocation to the ledger now; a failure is logged, never raised."""
        counted = self._count(entry)
        if counted is not None:
            try:
                await counted
            except StoreError as exc:
                self._not_counted(exc)

    def served(self) -> bool:
        """Count one invocation of this process; True for its first (a cold start)."""
        self._served += 1
        cold_start = self._served == 1
        if cold_start:
            self.metrics.cold_starts.inc()
        return cold_start

    async def run(
        self,
        event: CloudEvent,
        resumed: Resumed | None = None,
        run: str | None = None,
        joined: Joined | None = None,
    ) -> tuple[Outcome, Entry, Awaitable[None] | None]:
        """One invocation of the skill under its budget, whatever it does, its ledger line,
        and the durability of its `finished` run record.

        Its `started` and `finished` run records are staged into the store's next
        write (the idempotency result's), never a write of their own.
        """
        assert self.handler.function is not None
        metrics = self.metrics
        cold_start = self.served()
        budget = Budget(self.config.limits)
        handled, decision = event, None
        if resumed is not None:
            from rouse_runtime.tools.approval import reopen

            reopened = reopen(resumed, event)
            if reopened is not None:  # a tool call answered: the handler reruns its own event
                handled, decision = reopened
        handle = RunHandle(self.runs, run_of(event) if run is None else run, event)
        ctx = self.context(handled, budget, handle)
        if self.telemetry is not None:
            ctx.span = self.telemetry.invocation(event, cold_start=cold_start, run_id=handle.id)
        started_fields: dict[str, Any] = {"cold": True} if cold_start else {}
        if event.get(RUN_ATTRIBUTE) is None:
            started_fields["root"] = True
        if decision is not None:
            ctx.tool_decision = decision
            ctx.log.info("resumed", tool=decision.tool, approved=decision.approved)
        elif resumed is not None:
            ctx.resumed = resumed
            ctx.log.info("resumed", wait_type=resumed.event_type, wait_key=resumed.key)
            started_fields["resumes"] = f"{resumed.event_type}/{resumed.key}"
        if joined is not None:
            ctx.joined = joined
            started_fields["joins"] = {
                "join": joined.id,
                "parts": joined.parts,
                "missing": joined.missing,
            }
        self.runs.stage(handle.ref, handle.id, "started", started_fields)
        metrics.inflight.inc()
        started = time.perf_counter()
        handle.task = asyncio.current_task()
        if event.get(COMPENSATES_ATTRIBUTE) is None:  # an undoing runs to its end in a cancel
            self.runs.watch.track(handle, cancel_task=self.handler.is_async)
        kind = "cancelled"
        try:
            outcome = await self._call(event, ctx, budget)
            kind = outcome.kind
        except asyncio.CancelledError:
            if handle.stop_reason is None or handle.task is None:
                raise  # not ours: the client left, or the server stops
            handle.task.uncancel()
            outcome = self._cancelled(ctx, handle)
            kind = outcome.kind
        finally:
            self.runs.watch.untrack(handle)
            metrics.inflight.dec()
            seconds = time.perf_counter() - started
            metrics.duration.observe(seconds)
            if ctx.span is not None:
                ctx.span.end(kind, None if budget.breach is None else budget.breach.limit)
        metrics.invocations[outcome.kind].inc()
        fields = finished_fields(outcome, seconds, budget, handle)
        if self.config.compensate_type is not None and outcome.kind == "ok":
            fields["compensate"] = undo_fields(self.config, event, outcome.event)
        recorded = self.runs.stage(handle.ref, handle.id, "finished", fields)
        # The invocation and its cold start; its spend went in per model call (record_spend).
        return outcome, COLD_INVOCATION if cold_start else INVOCATION, recorded

    async def _call(self, event: CloudEvent, ctx: Context, budget: Budget) -> Outcome:
        function = self.handler.function
        assert function is not None
        started = time.monotonic()
        scope: asyncio.Timeout | None = None
        try:
            # The handler gets ctx.event: the delivered event, or the one an approval resumes.
            if self.deadline is None and self.handler.is_async:  # no timer to arm per event
                result = await function(ctx.event, ctx)
            else:
                async with asyncio.timeout(self.deadline) as scope:
                    result = await self._invoke(function, ctx.event, ctx)
        except TimeoutError as exc:
            if scope is not None and scope.expired():
                budget.timed_out(time.monotonic() - started)
                return await self._budget_stop(event, ctx, budget, None)
            return self._failure(ctx, budget, exc)
        except BudgetExceeded:
            return await self._budget_stop(event, ctx, budget, None)
        except Suspended as suspended:
            ctx.log.info("suspended", wait_type=suspended.event_type, wait_key=suspended.key)
            if ctx.run_handle is not None:
                ctx.run_handle.wait = f"{suspended.event_type}/{suspended.key}"
            if suspended.reply is not None:  # e.g. a tool's approval request
                reply = suspended.reply
                return Outcome(200, reply, dumped=dump_event(reply), kind="suspended")
            return Outcome(202, kind="suspended")
        except Cancelled:
            assert ctx.run_handle is not None
            return self._cancelled(ctx, ctx.run_handle)
        except Exception as exc:
            if budget.breach is not None:
                return await self._budget_stop(event, ctx, budget, None)
            return self._failure(ctx, budget, exc)
        if budget.breach is not None:
            return await self._budget_stop(event, ctx, budget, result)
        if result is None:
            return Outcome(202)
        if isinstance(result, CloudEvent):
            for name, value in ctx.trace.items():
                if result.get(name) is None:
                    result[name] = value
            if isinstance(result.data, bytes | bytearray) and not result.get("datacontenttype"):
                result["datacontenttype"] = "application/octet-stream"
            if result.get(RUN_ATTRIBUTE) is None:
                result[RUN_ATTRIBUTE] = ctx.run_id
            reply = result
        else:
            # The delivered event's trace (or its span's): a resumed tool call's handler sees
            # the original event as ctx.event, but its reply follows the approval.
            trace = ctx.trace if ctx.span is not None else None
            reply = self.reply(event, result, ctx.run_id, trace=trace)
        try:
            # Serialized now, once: what cannot be sent is the skill's error (500), not
            # a crash after its claim was taken.
            return Outcome(200, reply, dumped=dump_event(reply))
        except Exception as exc:
            ctx.log.error("reply cannot be serialized", error=f"{type(exc).__name__}: {exc}")
            detail = (
                f"the skill's return value cannot be sent as an event: {type(exc).__name__}: {exc}"
            )
            if "bytes" in str(exc):
                detail += BYTES_HINT
            return Outcome(
                500, error={"error": "invalid reply", "detail": detail[:500]}, kind="error"
            )

    async def _invoke(self, function: Any, event: CloudEvent, ctx: Context) -> Any:
        if self.handler.is_async:
            return await function(event, ctx)
        return await asyncio.to_thread(function, event, ctx)

    def reply(
        self,
        event: CloudEvent,
        data: Any,
        run: str | None = None,
        *,
        trace: Mapping[str, str] | None = None,
    ) -> CloudEvent:
        """The reply event for data, in `run`, carrying trace (default: the event's trace context)."""
        cfg = self.config
        attrs = {
            "type": cfg.reply_type,
            "source": cfg.reply_source,
            "id": derived_id(cfg.agent, cfg.skill, event["source"], event["id"], "reply"),
            RUN_ATTRIBUTE: run if run is not None else run_of(event),
        }
        if event.get(JOIN_ATTRIBUTE) is not None:  # a worker's result: its join part goes on
            attrs.update(
                {name: event[name] for name in JOIN_ATTRIBUTES if event.get(name) is not None}
            )
        return new_event(attrs, data, cause=event, trace=trace)

    def _cancelled(self, ctx: Context, handle: RunHandle) -> Outcome:
        """A skill stopped because its run was cancelled: acknowledged (202), never retried."""
        ctx.log.warning("run cancelled", run=handle.id, reason=handle.stop_reason)
        return Outcome(202, kind="cancelled")

    def _failure(self, ctx: Context, budget: Budget, exc: Exception) -> Outcome:
        ctx.log.error("skill failed", exc_info=exc, usage=budget.usage.as_dict())
        if ctx.span is not None:
            ctx.span.fail(exc)
        return Outcome(
            500,
            error={"error": "skill failed", "detail": f"{type(exc).__name__}: {exc}"[:500]},
            kind="error",
        )

    async def _budget_stop(
        self, event: CloudEvent, ctx: Context, budget: Budget, result: Any
    ) -> Outcome:
        breach = budget.breach
        assert breach is not None
        partial = ctx.partial if ctx.partial is not None else result
        checkpoint_error = None
        if partial is not None:
            try:
                await ctx.state.checkpoint(partial)
            except (TypeError, ValueError) as exc:
                # The stop is still reported (a 500 would be retried and spend again).
                checkpoint_error = f"partial result not checkpointed: {type(exc).__name__}: {exc}"
                ctx.log.error("checkpoint failed", error=checkpoint_error)
                partial = None
        self.metrics.budget_exceeded[breach.limit].inc()
        ctx.log.warning("budget exceeded", limit=breach.limit, used=breach.used, max=breach.maximum)
        cfg = self.config
        data: dict[str, Any] = {
            "limit": breach.limit,
            "used": breach.used,
            "max": breach.maximum,
            "usage": budget.usage.as_dict(),
            "checkpoint": ctx.checkpoint_key if partial is not None else None,
            "event": {"source": event["source"], "id": event["id"], "type": event["type"]},
        }
        if checkpoint_error is not None:
            data["checkpoint_error"] = checkpoint_error[:500]
        attrs = {
            "type": BUDGET_EXCEEDED_TYPE,
            "source": cfg.reply_source,
            "id": derived_id(cfg.agent, cfg.skill, event["source"], event["id"], "budget"),
            RUN_ATTRIBUTE: ctx.run_id,
        }
        reply = new_event(attrs, data, cause=event, trace=ctx.trace)
        return Outcome(200, reply, kind="budget_exceeded")


async def respond(send: Send, outcome: Outcome, mode: Mode) -> None:
    if outcome.error is not None:
        await send_error(send, outcome.status, outcome.error["error"], outcome.error["detail"])
    elif outcome.event is None:
        await send_response(send, outcome.status, {}, b"")
    else:
        headers, body = to_http(outcome.event, mode)
        await send_response(send, outcome.status, headers, body)


def create_app(
    config: Config,
    handler: LoadedHandler | None = None,
    metrics: Metrics | None = None,
    store: Store | None = None,
    telemetry: Telemetry | None = None,
) -> SkillApp:
    """The skill's ASGI app; imports the handler now unless one is given.

    `store`: the state store already opened for config.state_url (else opened on first use).
    `telemetry`: spans and GenAI metrics (telemetry.from_environ); None: off.
    """
    loaded = handler if handler is not None else load_handler(config.handler)
    runtime = Runtime(config, loaded, metrics, store, telemetry)
    runtime.admission_checks.append(BudgetGate.for_runtime(runtime))  # a suspended agent
    if loaded.error:
        log.error("handler not loaded: %s", loaded.error)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Ready: handler imported, app started; uvicorn opens the port right after this.
        age = process_age()
        if age is not None:
            runtime.metrics.startup.set(age)
        log.info(
            "ready" if loaded.error is None else "serving without a handler (not ready)",
            extra={
                "fields": {"agent": config.agent, "skill": config.skill, "handler": config.handler}
            },
        )
        yield
        await runtime.close()

    app = SkillApp(lifespan=lifespan)
    app.state.runtime = runtime
    max_body = config.max_body_bytes

    async def receive_event(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await handle_event(scope, receive, send)
        except Exception:  # a bug here must still answer, and in JSON
            log.exception("unexpected error handling an event")
            await send_error(send, 500, "internal error", "the runtime failed; see its log")

    async def handle_event(scope: Scope, receive: Receive, send: Send) -> None:
        if loaded.function is None:
            await send_error(send, 503, "handler not loaded", str(loaded.error))
            return
        headers: dict[str, str] = {}
        header_bytes = 0
        for key, value in scope["headers"]:
            header_bytes += len(key) + len(value)
            if key.startswith(EVENT_HEADERS):  # what the binding reads; proxies add many more
                headers[key.decode("latin-1")] = value.decode("latin-1")
        if header_bytes > MAX_HEADER_BYTES:
            # h11 only bounds headers that arrive in pieces; one big read gets here.
            await send_error(
                send,
                431,
                "request header fields too large",
                f"request headers total {header_bytes} bytes, over the limit of {MAX_HEADER_BYTES}",
            )
            return
        try:
            # Read here, not by the binding: the SDK copies every header it is handed, thrice.
            body = await read_body(receive, headers.pop("content-length", None), max_body)
            if body is None:
                return  # the client is gone
            event, mode = parse_event(headers, body)
            run = runtime.runs.run_for(event)
            if config.join:
                from rouse_runtime.runs.join import part_of

                part_of(event)  # a malformed join part is the sender's error: 400 naming it
        except EventError as exc:
            await send_error(send, exc.status, exc.error, exc.detail)
            return
        refusal = await runtime.admit(event)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            stop = await runtime.runs.stop_reason(run)
            if stop is not None and event.get(COMPENSATES_ATTRIBUTE) is None:
                # Acknowledged and dropped, with a record: never retried. (A compensation
                # goes through: undoing is what a cancel asks for.)
                runtime.metrics.invocations["cancelled"].inc()
                recorded = runtime.runs.stage(event, run, "dropped", {"reason": stop})
                if recorded is not None:
                    with contextlib.suppress(StoreError):  # logged by the recorder
                        await recorded
                await send_response(send, 202, {}, b"")
                return
            outcome = await runtime.invoke_once(event, run)
        except StoreError as exc:
            log.error("state store unavailable: %s", exc)
            await send_error(send, 503, "state store unavailable", str(exc))
            return
        await respond(send, outcome, mode)

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        if loaded.error is not None:
            return json_response(503, "handler not loaded", loaded.error)
        return Response(b'{"status":"ready"}', media_type="application/json")

    async def metrics_endpoint(request: Request) -> Response:
        body, content_type = runtime.metrics.render()
        return Response(body, media_type=content_type)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        from http import HTTPStatus

        phrase = HTTPStatus(exc.status_code).phrase.lower()
        detail = f"{request.method} {request.url.path}: {exc.detail}"
        return json_response(exc.status_code, phrase, detail, headers=exc.headers)

    app.receive_event = receive_event
    # Also routed (never reached for POST /, which the fast path takes), so that
    # other methods on / get a 405 instead of a 404.
    app.router.routes.append(Route("/", RawEndpoint(receive_event), methods=["POST"]))
    app.add_route("/healthz", healthz, methods=["GET"])
    app.add_route("/readyz", readyz, methods=["GET"])
    app.add_route("/metrics", metrics_endpoint, methods=["GET"])
    app.add_exception_handler(HTTPException, http_error)
    if config.front_door is not None:  # POST / answers people over HTTP instead of events
        from rouse_runtime.frontdoor.app import install

        install(app, runtime, config.front_door)
    return app
