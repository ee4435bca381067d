"""``rouse dev``: wire the broker, the process pools, the schedules, the policies and the view.

The policies are the operator's own (``LocalPolicyLoop`` reads the ledger the
skill processes write): every ``eval_interval`` seconds the warm pool sets each
skill's warm floor in its pool, and the budget parks events (``park``) or
closes the runtime's 429 gate (``reject``) until the daily reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn

from rouse_runtime.agentspec import Agent, load_agent_file
from rouse_runtime.ledger import open_ledger
from rouse_runtime.local import STATE_FILE
from rouse_runtime.local.broker import Broker
from rouse_runtime.local.frontdoor import FrontDoorProxy, front_door_env
from rouse_runtime.local.frontdoor import path as front_door_path
from rouse_runtime.local.frontdoor import warnings as front_door_warnings
from rouse_runtime.local.metrics import LocalMetrics
from rouse_runtime.local.parking import LOCAL_NAMESPACE, LocalParking, skill_url
from rouse_runtime.local.scheduler import run_schedule, schedules
from rouse_runtime.local.supervisor import (
    DEFAULT_IDLE_SECONDS,
    RUNTIME_COMMAND,
    SkillPool,
    pool_config,
    process_env,
)
from rouse_runtime.local.template import template_for
from rouse_runtime.local.view import View
from rouse_runtime.parking.app import ParkingSettings, create_app
from rouse_runtime.policies.warm_pool import Tuning
from rouse_runtime.policy_loop import LocalPolicyLoop
from rouse_runtime.runs import open_runlog
from rouse_runtime.runs.log import PRUNE_EVERY_SECONDS
from rouse_runtime.store import StoreError

REAP_INTERVAL = 0.2
SCRAPE_INTERVAL = 2.0
DEFAULT_PORT = 8080
DEFAULT_STATE_DIR = ".rouse"
DEFAULT_EVAL_INTERVAL = 5.0  # the operator's default is 60 s; locally a demo reacts sooner


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DevOptions:
    """What ``rouse dev`` was asked for."""

    agent_file: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    state_dir: Path = Path(DEFAULT_STATE_DIR)
    default_idle: float = DEFAULT_IDLE_SECONDS
    command: tuple[str, ...] = RUNTIME_COMMAND
    clock: Callable[[], float] = time.time
    eval_interval: float = DEFAULT_EVAL_INTERVAL
    # The policies' clock (tests move it to the next day to see the budget reset).
    now: Callable[[], datetime] = utc_now
    tuning: Tuning = field(default_factory=Tuning)


class LocalMode:
    """One agent on one machine: build with ``create``, run with ``serve``."""

    def __init__(self, agent: Agent, options: DevOptions, view: View) -> None:
        self.agent = agent
        self.options = options
        self.view = view
        self.metrics = LocalMetrics()
        self.broker_url = f"http://{options.host}:{options.port}/"
        state_dir = options.state_dir.resolve()
        state_dir.mkdir(parents=True, exist_ok=True)
        state_url = f"sqlite:///{state_dir / STATE_FILE}"
        self.state_url = state_url
        agent_dir = options.agent_file.resolve().parent
        base_env = dict(os.environ)
        # Skill processes fork from a pre-imported runtime (started by serve); None: exec'd.
        self.template = template_for(options.command, base_env, view.log)
        self.pools: dict[str, SkillPool] = {}
        for skill in agent["spec"].get("skills") or []:

            def env_for_port(port: int, skill: dict[str, Any] = skill) -> dict[str, str]:
                env = process_env(
                    agent,
                    skill,
                    broker_url=self.broker_url,
                    state_url=state_url,
                    port=port,
                    agent_dir=agent_dir,
                    base=base_env,
                    log=view.log,
                    namespace=LOCAL_NAMESPACE,
                )
                return env | front_door_env(skill, base_env, self.broker_url)

            self.pools[str(skill["name"])] = SkillPool(
                agent,
                skill,
                env_for_port=env_for_port,
                config=pool_config(skill, options.default_idle),
                metrics=self.metrics,
                log=view.log,
                command=options.command,
                template=self.template,
            )
        self.front_doors = FrontDoorProxy(agent, self.pools, base_env)
        self.front_door_warnings = front_door_warnings(agent, base_env)
        self.parking = LocalParking(
            str(agent["metadata"]["name"]),
            state_url,
            broker_url=lambda: self.broker_url,
            log=view.log,
        )
        self.broker = Broker(
            agent,
            self.pools,
            dead_letters=self.parking.queue,  # the cluster's dead-letter sink: one queue
            namespace=LOCAL_NAMESPACE,
            metrics=self.metrics,
            log=view.log,
        )
        self.broker.parking = self.parking
        self.runs = self.broker.runs = open_runlog(state_url)
        self.broker.claims = self.parking.store
        self.ledger = open_ledger(state_url)
        self.policies = LocalPolicyLoop(
            dict(agent),
            self.ledger,
            on_min_scale=self._set_warm_floor,
            on_budget=self.parking.on_budget,
            namespace=LOCAL_NAMESPACE,
            interval=options.eval_interval,
            tuning=options.tuning,
        )
        self._floors: dict[str, int] = {}
        self.schedules = schedules(agent)
        self.socket: socket.socket | None = None
        self._server: _Server | None = None
        self._exit_requested = False
        self._exit_stack = contextlib.AsyncExitStack()
        view.broker = self.broker

    @classmethod
    def create(cls, options: DevOptions, view: View) -> LocalMode:
        """Load and validate the agent file (AgentInvalid carries the CRD's messages)."""
        return cls(load_agent_file(options.agent_file), options, view)

    def bind(self) -> socket.socket:
        """Listen now (port 0 picks a free port): events sent meanwhile wait in the backlog."""
        if self.socket is not None:
            return self.socket
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.options.host, self.options.port))
        except OSError as exc:
            sock.close()
            raise OSError(
                f"cannot listen on {self.options.host}:{self.options.port} ({exc.strerror}): "
                "is another rouse dev running? pick another --port"
            ) from exc
        sock.listen(128)
        self.socket = sock
        self.broker_url = f"http://{self.options.host}:{sock.getsockname()[1]}/"
        return sock

    async def _housekeeping(self) -> None:
        """Scale idle pools down and keep the usage figures fresh."""
        last_scrape = 0.0
        next_prune = 0.0
        while True:
            await asyncio.gather(*(pool.reap() for pool in self.pools.values()))
            if time.monotonic() >= next_prune:  # the run log's retention (never the hot path)
                next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
                with contextlib.suppress(StoreError):
                    await self.runs.prune()
            if time.monotonic() - last_scrape >= SCRAPE_INTERVAL:
                last_scrape = time.monotonic()
                with contextlib.suppress(StoreError):
                    await self.parking.refresh_counts()  # for the live view
                await asyncio.gather(
                    *(
                        pool.scrape(p)
                        for pool in self.pools.values()
                        for p in pool.live()
                        if p.state == "ready"
                    )
                )
            await asyncio.sleep(REAP_INTERVAL)

    def _set_warm_floor(self, skill: str, count: int) -> None:
        self._floors[skill] = count  # applied by evaluate(), which knows the reason

    async def evaluate(self) -> None:
        """One round of the policies; a state-store failure holds every decision."""
        try:
            decisions, _ = await self.policies.evaluate_once(self.options.now())
            await self.parking.settle(self.policies.budget)
        except StoreError as exc:
            self.view.log(f"policies: cannot read the ledger, holding the last decisions: {exc}")
            return
        for skill, made in decisions.items():
            reason = f"{made.reason}: {made.message}"
            if skill in self._floors:
                await self.pools[skill].set_warm_floor(self._floors.pop(skill), reason)
            self.pools[skill].warm_reason = reason

    async def _policy_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.eval_interval)
            await self.evaluate()

    def request_exit(self) -> None:
        """Ask the server to stop (serve() then stops every skill process and returns)."""
        self._exit_requested = True
        if self._server is not None:
            self._server.should_exit = True

    async def serve(self, started: Callable[[], None] | None = None) -> None:
        """Run until the server is asked to exit (Ctrl-C / SIGTERM), then stop every process."""
        sock = self.bind()
        if self.template is not None:
            await self.template.start()  # its imports run while local mode starts up
        parking_api = create_app(
            ParkingSettings(
                state_url=self.state_url,
                broker_url=self.broker_url,
                # `rouse parked replay` by hand: each skill at its own address here
                skill_url_template=skill_url(self.broker_url, "{skill}"),
            )
        )
        config = uvicorn.Config(
            self.broker.app(parking_api, self.front_doors.routes()),
            host=self.options.host,
            port=self.options.port,
            log_level="warning",
            lifespan="off",
        )
        server = _Server(config)
        server.should_exit = self._exit_requested
        self._server = server
        # Decide before the first event: a budget spent in an earlier run parks from the start.
        await self.evaluate()  # and replays what is owed when the agent may spend
        await self._exit_stack.enter_async_context(
            parking_api.router.lifespan_context(parking_api)  # its queue, ledger and client
        )
        tasks = [
            asyncio.create_task(self._policy_loop()),
            asyncio.create_task(self._housekeeping()),
            asyncio.create_task(self.view.run()),
            *(
                asyncio.create_task(
                    run_schedule(s, self.broker.fire_schedule, clock=self.options.clock)
                )
                for s in self.schedules
            ),
        ]
        for pool in self.pools.values():
            await pool.ensure_min()
        try:
            self.view.log(f"broker listening on {self.broker_url}")
            for warning in self.front_door_warnings:
                self.view.log(warning)
            if started is not None:
                started()
            await server.serve(sockets=[sock])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.broker.close()
            await self.front_doors.close()
            await self.parking.close()
            await self.ledger.close()
            await self.runs.close()
            await self._exit_stack.aclose()
            await asyncio.gather(*(pool.shutdown() for pool in self.pools.values()))
            if self.template is not None:
                await self.template.close()
            with contextlib.suppress(Exception):
                self.view.log("all skill processes stopped")


class _Server(uvicorn.Server):
    """uvicorn without its signal handling: ``rouse dev`` stops the skills first, then exits."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def banner(agent: Agent, options: DevOptions) -> str:
    """What ``rouse dev`` prints first: the skills and how to send an event."""
    url = f"http://{options.host}:{options.port}"
    lines = [
        f"rouse dev: agent {agent['metadata']['name']} from {options.agent_file} (broker {url})"
    ]
    first_type = None
    for skill in agent["spec"].get("skills") or []:
        filters = ", ".join(
            " ".join(f"{k}={v}" for k, v in sorted(f.items())) for f in skill.get("events") or []
        )
        first_type = first_type or next(
            (f.get("type") for f in skill.get("events") or [] if f.get("type")), None
        )
        if skill.get("http") is not None:
            where = front_door_path(agent["metadata"]["name"], skill["name"])
            lines.append(
                f"  front door {skill['name']}: POST {url}{where} (JSON; SSE when it streams)"
            )
            continue
        cron = (skill.get("schedule") or {}).get("cron")
        extra = f"; cron {cron!r}" if cron else ""
        lines.append(f"  skill {skill['name']}: on [{filters}]{extra}")
    if first_type:
        broker = (
            ""
            if options.port == DEFAULT_PORT and options.host == "127.0.0.1"
            else f" --broker {url}"
        )
        lines.append(f"send an event:  rouse send {first_type} --data '{{...}}' --wait{broker}")
    lines.append("stop: Ctrl-C")
    return "\n".join(lines)
