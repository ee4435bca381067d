"""The runs API of the parking (platform) service: list, show, cancel, kill switch.

Mounted on the parking service's app (and so on local mode's broker, which
serves that app): `rouse runs` talks to it in a cluster and locally alike.
Reading is open inside the cluster like `/parked`; cancel and the kill switch
change what runs, so they need the parking token (credential.py), as drop and
replay do.

- `GET /runs?namespace=&agent=&state=&since=&limit=`: runs, most recently
  changed first, each folded to its summary (history.py);
- `GET /runs/{ns}/{agent}/{run}`: the run's steps and ordered history (404: none);
- `POST /runs/{ns}/{agent}/{run}/cancel`: stop the run (`{"by": ...}` optional);
- `POST /runs/{ns}/{agent}/kill`: `{"on": true|false}`, the agent-wide switch;
- `GET /runs/{ns}/{agent}`: the agent's kill switch and cancelled runs.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from rouse_runtime.parking.credential import authorized
from rouse_runtime.runs.history import STATES, fold
from rouse_runtime.runs.ids import InvalidRunIdError, check_run_id
from rouse_runtime.runs.log import RunLog

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
MAX_LIST = 500

# Called after a run is cancelled, with (namespace, agent, run): e.g. compensation.
AfterCancel = Callable[[str, str, str], Awaitable[dict[str, Any]]]


class CancelRequest(BaseModel):
    by: str = "rouse runs cancel"


class KillRequest(BaseModel):
    on: bool = True
    by: str = "rouse runs kill"


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status)


def _bad(namespace: str, agent: str, run: str | None = None) -> JSONResponse | None:
    for name, value in (("namespace", namespace), ("agent", agent)):
        if not DNS_LABEL.match(value):
            return _error(400, "invalid name", f"{name} {value!r} is not a DNS-1123 label")
    if run is not None:
        try:
            check_run_id(run)
        except InvalidRunIdError as exc:
            return _error(400, "invalid run id", str(exc))
    return None


def runs_router(
    runlog: RunLog, token: str | None, *, after_cancel: AfterCancel | None = None
) -> APIRouter:
    """The routes above over one run log; `token`: what cancel and kill require (None: open)."""
    router = APIRouter()

    def refused(request: Request) -> JSONResponse | None:
        if authorized(request.headers, token):
            return None
        return JSONResponse(
            {"error": "unauthorized", "detail": "cancel and kill need the parking token (Bearer)"},
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )

    @router.get("/runs")
    async def list_runs(
        namespace: str | None = None,
        agent: str | None = None,
        state: str | None = None,
        since: float | None = Query(None, description="Unix seconds: runs changed since then"),
        limit: int = Query(50, ge=1, le=MAX_LIST),
    ) -> Response:
        if state is not None and state not in STATES:
            return _error(400, "invalid state", f"state {state!r}: one of {', '.join(STATES)}")
        keys = await runlog.runs(namespace=namespace, agent=agent, since=since, limit=limit)
        items = []
        for key in keys:
            view = fold(await runlog.history(key.namespace, key.agent, key.run))
            if view is not None and (state is None or view.state == state):
                items.append(view.summary())
        return JSONResponse({"items": items})

    @router.get("/runs/{ns}/{agent}")
    async def agent_stops(ns: str, agent: str) -> Response:
        if (bad := _bad(ns, agent)) is not None:
            return bad
        stopped = await runlog.stopped(ns, agent)
        return JSONResponse({"killed": stopped.killed, "cancelled": sorted(stopped.runs)})

    @router.get("/runs/{ns}/{agent}/{run}")
    async def show_run(ns: str, agent: str, run: str) -> Response:
        if (bad := _bad(ns, agent, run)) is not None:
            return bad
        view = fold(await runlog.history(ns, agent, run))
        if view is None:
            return _error(404, "no such run", f"no records of run {run} of {ns}/{agent}")
        return JSONResponse(view.as_json())

    @router.post("/runs/{ns}/{agent}/{run}/cancel")
    async def cancel_run(request: Request, ns: str, agent: str, run: str) -> Response:
        if (no := refused(request)) is not None:
            return no
        if (bad := _bad(ns, agent, run)) is not None:
            return bad
        body = CancelRequest.model_validate_json(await request.body() or b"{}")
        first = await runlog.cancel(ns, agent, run, body.by)
        answer: dict[str, Any] = {"run": run, "cancelled": True, "already": not first}
        if first and after_cancel is not None:
            answer.update(await after_cancel(ns, agent, run))
        return JSONResponse(answer)

    @router.post("/runs/{ns}/{agent}/kill")
    async def kill(request: Request, ns: str, agent: str, body: KillRequest) -> Response:
        if (no := refused(request)) is not None:
            return no
        if (bad := _bad(ns, agent)) is not None:
            return bad
        changed = await runlog.kill(ns, agent, body.by, on=body.on)
        return JSONResponse({"agent": f"{ns}/{agent}", "killed": body.on, "changed": changed})

    return router
