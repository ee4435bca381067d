"""Front doors in local mode: `/agents/<agent>/<skill>` on the broker's port, as the ingress.

The proxy starts the skill's process on demand (a cold start, scale to zero
after idle, like any skill: it leases a slot of the skill's pool for the whole
request, stream included) and streams the answer back unbuffered. Callers'
keys come from ROUSE_API_KEYS in the environment of `rouse dev` (a Secret
cannot be read here); when it is not set, a front door that asks for keys is
served open, with a warning at start-up: a development convenience that the
cluster never has (there the runtime refuses to start without keys).

The proxy checks the key with the runtime's own check before starting
anything, so an unauthorized caller costs not even a cold start. A run is
followed on the broker's own record of its chain (`ROUSE_PROGRESS_URL`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from rouse_runtime.agentspec import Agent, Skill, front_door_mode
from rouse_runtime.envnames import ENV_API_KEYS, ENV_FRONT_DOOR, ENV_PROGRESS_URL
from rouse_runtime.frontdoor.app import FrontDoorApp
from rouse_runtime.frontdoor.keys import admitted
from rouse_runtime.frontdoor.settings import PUBLIC, FrontDoor, load_front_door, parse_keys
from rouse_runtime.local.supervisor import SkillPool, StartFailedError

PREFIX = "/agents/{agent}/{skill}"
# What a client sends that the front door reads; what it answers that the client needs.
REQUEST_HEADERS = ("authorization", "content-type", "content-length", "accept", "last-event-id")
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
)
DEFAULT_TIMEOUT_SECONDS = 300.0


def path(agent: str, skill: str) -> str:
    """Where a front door answers on the broker's port."""
    return PREFIX.format(agent=agent, skill=skill)


def served_open(skill: Skill, env: Mapping[str, str]) -> bool:
    """A front door that asks for keys, run where none are given (ROUSE_API_KEYS)."""
    return front_door_mode(skill) == "keys" and not parse_keys(env.get(ENV_API_KEYS, ""))


def front_door_env(skill: Skill, env: Mapping[str, str], broker_url: str) -> dict[str, str]:
    """What a front door's process gets on top of the skill env: progress, and open when keyless."""
    if front_door_mode(skill) is None:
        return {}
    extra = {ENV_PROGRESS_URL: f"{broker_url.rstrip('/')}/chains/{{run}}"}
    if served_open(skill, env):
        extra[ENV_FRONT_DOOR] = PUBLIC
    return extra


def warnings(agent: Agent, env: Mapping[str, str]) -> list[str]:
    """Start-up lines for every front door served open because no keys are set."""
    name = agent["metadata"]["name"]
    return [
        f"WARNING front door {s['name']} ({path(name, s['name'])}) is served OPEN: "
        f"{ENV_API_KEYS} is not set (local mode only: in a cluster it needs the keys of its "
        "http.apiKeys Secret); export ROUSE_API_KEYS=<key>[,<key>...] to require them"
        for s in agent["spec"].get("skills") or []
        if served_open(s, env)
    ]


class FrontDoorProxy:
    """Routes `/agents/<agent>/<skill>[/...]` to a process of that front door."""

    def __init__(
        self,
        agent: Agent,
        pools: Mapping[str, SkillPool],
        env: Mapping[str, str],
    ) -> None:
        self.agent = str(agent["metadata"]["name"])
        self.pools = pools
        self.skills = {
            str(s["name"]): s
            for s in agent["spec"].get("skills") or []
            if front_door_mode(s) is not None
        }
        self.doors: dict[str, FrontDoor] = {}
        for name, skill in self.skills.items():
            door = load_front_door({**env, ENV_FRONT_DOOR: self._mode(skill, env)})
            assert door is not None
            self.doors[name] = door
        self._client = httpx.AsyncClient(timeout=None)

    @staticmethod
    def _mode(skill: Skill, env: Mapping[str, str]) -> str:
        return PUBLIC if served_open(skill, env) else str(front_door_mode(skill))

    def routes(self) -> list[Route]:
        methods = ["GET", "POST"]
        return [
            Route(PREFIX, self.forward, methods=methods),
            Route(PREFIX + "/{rest:path}", self.forward, methods=methods),
        ]

    async def close(self) -> None:
        await self._client.aclose()

    async def forward(self, request: Request) -> Response:
        agent, skill = request.path_params["agent"], request.path_params["skill"]
        if agent != self.agent or skill not in self.skills:
            known = [path(self.agent, s) for s in self.skills]
            return JSONResponse(
                {"error": "no such front door", "detail": f"front doors here: {known or 'none'}"},
                status_code=404,
            )
        door = self.doors[skill]
        if not admitted(door, request.scope["headers"]):
            # The runtime's own check and answer, without starting a process for it.
            return FrontDoorApp.unauthorized()
        body = await request.body()
        pool = self.pools[skill]
        try:
            lease = await pool.acquire()
        except StartFailedError as exc:
            return JSONResponse({"error": "front door not started", "detail": str(exc)}, 502)
        headers = {k: v for k, v in request.headers.items() if k in REQUEST_HEADERS}
        headers["x-forwarded-prefix"] = path(agent, skill)
        rest = request.path_params.get("rest", "")
        timeout = float(self.skills[skill].get("timeoutSeconds") or DEFAULT_TIMEOUT_SECONDS)
        sent = self._client.build_request(
            request.method,
            f"{lease.process.url}/{rest}",
            headers=headers,
            content=body,
            timeout=httpx.Timeout(timeout + 5.0, read=None),  # a stream may pause; it ends itself
        )
        try:
            answer = await self._client.send(sent, stream=True)
        except httpx.HTTPError as exc:
            await pool.release(lease.process)
            return JSONResponse({"error": "front door unreachable", "detail": repr(exc)}, 502)

        async def relay() -> AsyncIterator[bytes]:
            try:
                async for chunk in answer.aiter_raw():
                    yield chunk
            finally:
                await answer.aclose()
                await pool.release(lease.process)

        kept: dict[str, Any] = {
            k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP
        }
        return StreamingResponse(relay(), status_code=answer.status_code, headers=kept)
