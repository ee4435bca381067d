"""The front door's HTTP surface, installed on the skill's app in place of the event endpoint.

`POST /` takes JSON (any JSON value, or an empty body) and runs the handler with
it as `event.data` of a `dev.rouse.http.request` event whose id is fresh and
whose trace starts the run; `GET /runs/<run>` follows a run as SSE. A front door
never accepts CloudEvents: it is reachable from outside the cluster, and its
events would bypass the broker.

Answers of `POST /` (header `Rouse-Run` on each):
- an async generator handler: `text/event-stream` (see stream.py);
- otherwise JSON `{"run", "follow", "result"}` (200), `{"run", "follow",
  "budgetExceeded"}` (200) after a budget stop, `{"error", "detail", "run"}` (500)
  when the skill failed;
- 401 without a valid key (nothing read, nothing run), 400 bad JSON, 413 too large,
  429 while the agent's budget rejects, 503 handler not loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import secrets
import uuid
from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from rouse_runtime.events import EventError
from rouse_runtime.frontdoor.keys import admitted
from rouse_runtime.frontdoor.progress import BrokerChains, ProgressSource, RunHistory, follow
from rouse_runtime.frontdoor.settings import FrontDoor
from rouse_runtime.runs.ids import RUN_ATTRIBUTE
from rouse_runtime.server import read_body
from rouse_runtime.store import StoreError

if TYPE_CHECKING:
    from rouse_runtime.server import Runtime, SkillApp

log = logging.getLogger("rouse.frontdoor")

REQUEST_TYPE = "dev.rouse.http.request"
RUN_HEADER = "rouse-run"
# Set by a proxy that serves the front door under a path (local mode: /agents/<agent>/<skill>).
PREFIX_HEADER = b"x-forwarded-prefix"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")
UNAUTHORIZED = (
    "a valid API key is required: send it as 'Authorization: Bearer <key>'"
    " (the keys are in the Secret of the skill's http.apiKeys)"
)


def new_run() -> tuple[str, str]:
    """A run id and the W3C traceparent that carries it (the run is the trace)."""
    run = secrets.token_hex(16)
    return run, f"00-{run}-{secrets.token_hex(8)}-01"


def request_event(source: str, data: Any, run: str, traceparent: str) -> CloudEvent:
    """The request as the handler sees it: the JSON body is `event.data`; it starts `run`
    (its `rouserun`, so what the handler emits belongs to the run: `rouse runs show RUN`)."""
    attrs = {
        "type": REQUEST_TYPE,
        "source": source,
        "id": uuid.uuid4().hex,
        "traceparent": traceparent,
        RUN_ATTRIBUTE: run,
    }
    if data is not None:
        attrs["datacontenttype"] = "application/json"
    return CloudEvent(attrs, data)


def json_answer(status: int, body: Any, run: str | None = None) -> Response:
    headers = {RUN_HEADER: run} if run else None
    return Response(json.dumps(body).encode(), status, headers, media_type="application/json")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class FrontDoorApp:
    """`POST /` and `GET /runs/<run>` of one front door."""

    def __init__(self, runtime: Runtime, door: FrontDoor) -> None:
        self.runtime = runtime
        self.door = door
        cfg = runtime.config
        # Local mode's broker keeps chains; elsewhere the run history is the record.
        self.progress: ProgressSource = (
            BrokerChains(door.progress_url, runtime.http)
            if door.progress_url
            else RunHistory(lambda: runtime.runlog, cfg.namespace, cfg.agent)
        )

    def refused(self, scope: Scope) -> Response | None:
        """401 before anything else is read or run, when the caller shows no valid key."""
        return None if admitted(self.door, scope["headers"]) else self.unauthorized()

    @staticmethod
    def unauthorized() -> Response:
        """The 401 answer (also local mode's, which refuses before starting a process)."""
        response = json_answer(401, {"error": "unauthorized", "detail": UNAUTHORIZED})
        response.headers["www-authenticate"] = 'Bearer realm="rouse"'
        return response

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.answer(scope, receive)
        except Exception:  # a bug here must still answer, and in JSON
            log.exception("unexpected error answering a front-door request")
            response = json_answer(500, {"error": "internal error", "detail": "see the log"})
        if response is not None:
            await response(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive) -> Response | None:
        refusal = self.refused(scope)
        if refusal is not None:
            return refusal
        runtime = self.runtime
        loaded = runtime.handler
        if loaded.function is None:
            return json_answer(503, {"error": "handler not loaded", "detail": str(loaded.error)})
        try:
            body = await read_body(
                receive, header(scope, b"content-length"), runtime.config.max_body_bytes
            )
        except EventError as exc:
            return json_answer(exc.status, {"error": exc.error, "detail": exc.detail})
        if body is None:
            return None  # the client is gone
        try:
            data = json.loads(body) if body.strip() else None
        except ValueError as exc:
            return json_answer(
                400, {"error": "invalid JSON", "detail": f"the body is not JSON: {exc}"}
            )
        run, traceparent = new_run()
        event = request_event(runtime.config.reply_source, data, run, traceparent)
        refusal = await runtime.admit(event)
        if refusal is not None:
            return refusal
        follow_url = f"{header(scope, PREFIX_HEADER) or ''}/runs/{run}"
        opening = {"run": run, "follow": follow_url}
        if loaded.is_stream:
            from sse_starlette import EventSourceResponse  # the first stream pays its import

            from rouse_runtime.frontdoor.stream import events

            return EventSourceResponse(events(runtime, event, opening), headers={RUN_HEADER: run})
        try:
            outcome, entry, recorded = await runtime.run(event, run=run)
            if recorded is not None:  # the run's `finished` record, before the answer
                with contextlib.suppress(StoreError):  # logged by the recorder
                    await recorded
        except StoreError as exc:
            return json_answer(503, {"error": "state store unavailable", "detail": str(exc)}, run)
        await runtime.count(entry)
        if outcome.error is not None:
            return json_answer(outcome.status, {**outcome.error, "run": run}, run)
        if outcome.kind == "budget_exceeded":
            assert outcome.event is not None
            return json_answer(200, {**opening, "budgetExceeded": outcome.event.data}, run)
        result = None if outcome.event is None else outcome.event.data
        try:
            return json_answer(200, {**opening, "result": result}, run)
        except (TypeError, ValueError) as exc:
            detail = f"a front door answers JSON; the skill returned {type(result).__name__}: {exc}"
            return json_answer(
                500, {"error": "invalid reply", "detail": detail[:500], "run": run}, run
            )

    async def runs(self, request: Request) -> Response:
        """Follow a run as SSE: each step once, then `end` with its state."""
        refusal = self.refused(request.scope)
        if refusal is not None:
            return refusal
        run = request.path_params["run"]
        if not RUN_ID.match(run):
            return json_answer(
                400,
                {"error": "invalid run", "detail": f"{run[:64]!r} is not a run id (32 hex digits)"},
            )
        source = self.progress
        first = await source.read(run)
        if first is None:
            return json_answer(
                404,
                {
                    "error": "unknown run",
                    "detail": f"no run {run} (it caused no event, or it is too old)",
                },
            )
        from sse_starlette import EventSourceResponse

        from rouse_runtime.frontdoor.stream import sse

        async def steps() -> Any:
            async for name, data in follow(source, run, first):
                yield sse(name, data)

        return EventSourceResponse(steps(), headers={RUN_HEADER: run})


def install(app: SkillApp, runtime: Runtime, door: FrontDoor) -> None:
    """Serve the front door on `app`: POST / and GET /runs/<run>."""
    front = FrontDoorApp(runtime, door)
    app.receive_event = front
    app.add_route("/runs/{run}", front.runs, methods=["GET"])
