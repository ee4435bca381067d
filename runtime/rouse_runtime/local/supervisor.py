"""Per-skill process pools: Knative's activator and autoscaler, on one machine.

A skill with no traffic has no process. The first event starts one (a real
cold start: the event waits until the process answers ``/readyz``, as the
activator holds a request). A process takes at most ``concurrency`` events at
once (containerConcurrency; 0 = unlimited, then ``scaling.target`` is used as
the soft limit); when every process is full a new one starts, up to
``scaling.max``; beyond that events queue. A process idle for the skill's
idle period is stopped, down to ``scaling.min``: the period is
``scaling.retention`` when it is above zero, else ``DEFAULT_IDLE_SECONDS``
(Knative's own scale-to-zero takes its 60 s stable window plus a grace period;
locally 30 s keeps a demo lively without restarting a skill between every
event). The warm pool policy raises that floor (``set_warm_floor``, the local
min-scale) within ``[scaling.min, scaling.max]``; the policy itself keeps it
within ``warmPool.max``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from rouse_runtime.agentspec import Agent, Skill, service_name, skill_env
from rouse_runtime.local.metrics import LocalMetrics
from rouse_runtime.local.template import ForkedProcess, ForkTemplate, die_with_parent
from rouse_runtime.policies.durations import go_duration_seconds
from rouse_runtime.tools.spec import header_refs

DEFAULT_IDLE_SECONDS = 30.0
DEFAULT_STARTUP_TIMEOUT = 60.0
STOP_GRACE_SECONDS = 5.0
READY_POLL_SECONDS = 0.01
RUNTIME_COMMAND = (sys.executable, "-m", "rouse_runtime")

Log = Callable[[str], None]


class StartFailedError(RuntimeError):
    """A skill process exited or never became ready; the delivery counts as failed (retryable)."""


@dataclass(frozen=True)
class PoolConfig:
    """Scaling settings of one skill, read from its spec."""

    limit: int  # events per process at once; 0 = unlimited
    min: int
    max: int  # 0 = unlimited
    idle_seconds: float
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT


def pool_config(skill: Skill, default_idle: float = DEFAULT_IDLE_SECONDS) -> PoolConfig:
    """Scaling settings with the defaults local mode documents."""
    scaling = skill.get("scaling") or {}
    concurrency = int(skill.get("concurrency") or 0)
    limit = concurrency if concurrency > 0 else int(scaling.get("target") or 0)
    retention = go_duration_seconds(str(scaling.get("retention") or "0s"))
    return PoolConfig(
        limit=limit,
        min=int(scaling.get("min") or 0),
        max=int(scaling.get("max") or 0),
        idle_seconds=retention if retention > 0 else default_idle,
    )


def free_port() -> int:
    """A free loopback port chosen by the OS."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(
    agent: Agent,
    skill: Skill,
    *,
    broker_url: str,
    state_url: str,
    port: int,
    agent_dir: Path,
    base: dict[str, str],
    log: Log,
    namespace: str = "default",
) -> dict[str, str]:
    """The env of a skill process: inherited env, the agent's env, then the runtime contract."""
    env = dict(base)
    for var in agent["spec"].get("env") or []:
        if "value" in var:
            env[str(var["name"])] = str(var["value"])
        elif str(var["name"]) not in base:
            log(
                f"env {var['name']} uses valueFrom, which local mode cannot resolve: export it before rouse dev"
            )
    for name, _ in header_refs(agent["spec"].get("tools") or []):
        if name not in base:  # the skill's start fails naming it; say why here, once per process
            log(f"tool header {name} comes from a Secret in a cluster: export it before rouse dev")
    env.update(skill_env(agent, skill, broker_url))
    env["PORT"] = str(port)
    env["ROUSE_HOST"] = "127.0.0.1"  # loopback only: local mode serves nobody else
    env["ROUSE_STATE_URL"] = state_url
    env["ROUSE_NAMESPACE"] = namespace  # ledger lines and the budget gate carry it
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(agent_dir), base.get("PYTHONPATH", "")) if p
    )
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass(eq=False)  # identity: a pool holds each process once
class SkillProcess:
    """One runtime process of a skill and what the pool knows about it."""

    index: int
    port: int
    spawned_at: float = field(default_factory=time.monotonic)
    state: str = "starting"  # starting | ready | stopping | stopped
    load: int = 0
    served: int = 0
    idle_since: float = field(default_factory=time.monotonic)
    spawn_seconds: float = 0.0
    ready_seconds: float = 0.0
    error: str | None = None
    proc: asyncio.subprocess.Process | ForkedProcess | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))
    usage: dict[str, float] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None


@dataclass(frozen=True)
class Lease:
    """A process slot held for one delivery attempt."""

    process: SkillProcess
    cold: bool


class SkillPool:
    """The processes of one skill: start on demand, queue at max, stop when idle."""

    def __init__(
        self,
        agent: Agent,
        skill: Skill,
        *,
        env_for_port: Callable[[int], dict[str, str]],
        config: PoolConfig,
        metrics: LocalMetrics,
        log: Log,
        command: tuple[str, ...] = RUNTIME_COMMAND,
        template: ForkTemplate | None = None,
    ) -> None:
        self.agent_name = str(agent["metadata"]["name"])
        self.name = str(skill["name"])
        self.service = service_name(self.agent_name, self.name)
        self.config = config
        self.metrics = metrics
        self.log = log
        self.command = command
        self.template = template  # None: every process is exec'd
        self._env_for_port = env_for_port
        self._processes: list[SkillProcess] = []
        self._cond = asyncio.Condition()
        self._next_index = 1
        self._tasks: set[asyncio.Task[Any]] = set()
        self.cold_starts = 0
        self.starts = 0
        self.queued = 0
        self.retired_usage: dict[str, float] = {}
        # The warm pool's floor (local min-scale): kept alive past the idle period.
        self.warm_floor = 0
        self.warm_reason = ""
        self._labels = {"agent": self.agent_name, "skill": self.name}

    # -- what the view and the API read ------------------------------------------------------

    def live(self) -> list[SkillProcess]:
        """Processes that exist (starting, ready or stopping)."""
        return [p for p in self._processes if p.state != "stopped"]

    def inflight(self) -> int:
        """Events being handled plus events queued for a slot (at scaling.max)."""
        return sum(p.load for p in self._processes) + self.queued

    def usage(self) -> dict[str, float]:
        """Tokens and cost of this skill so far (stopped processes plus the last scrape of live ones)."""
        total = dict(self.retired_usage)
        for process in self.live():
            for key, value in process.usage.items():
                total[key] = total.get(key, 0.0) + value
        return total

    def snapshot(self) -> dict[str, Any]:
        """JSON for GET /skills."""
        now = time.monotonic()
        return {
            "skill": self.name,
            "service": self.service,
            "limit": self.config.limit,
            "min": self.config.min,
            "max": self.config.max,
            "warmFloor": self.warm_floor,
            "warmReason": self.warm_reason,
            "idleSeconds": self.config.idle_seconds,
            "coldStarts": self.cold_starts,
            "starts": self.starts,
            "inflight": self.inflight(),
            "queued": self.queued,
            "usage": self.usage(),
            "processes": [
                {
                    "index": p.index,
                    "pid": p.pid,
                    "state": p.state,
                    "url": p.url,
                    "metrics": f"{p.url}/metrics",
                    "load": p.load,
                    "served": p.served,
                    "idleFor": round(now - p.idle_since, 3) if p.load == 0 else 0.0,
                    "spawnSeconds": round(p.spawn_seconds, 4),
                    "readySeconds": round(p.ready_seconds, 4),
                }
                for p in self.live()
            ],
        }

    # -- leasing -----------------------------------------------------------------------------

    def _has_room(self, process: SkillProcess) -> bool:
        return self.config.limit <= 0 or process.load < self.config.limit

    def _pick(self) -> SkillProcess | None:
        candidates = [
            p for p in self._processes if p.state in ("ready", "starting") and self._has_room(p)
        ]
        if not candidates:
            return None
        # Prefer a ready process (no wait), then the least loaded.
        return min(candidates, key=lambda p: (p.state != "ready", p.load, p.index))

    async def acquire(self) -> Lease:
        """A slot on a process, starting one if every process is full (the event waits)."""
        async with self._cond:
            while True:
                process = self._pick()
                if process is None and (self.config.max <= 0 or len(self.live()) < self.config.max):
                    process = self._spawn()
                if process is not None:
                    process.load += 1
                    self.metrics.inflight.labels(**self._labels).inc()
                    break
                self.queued += 1
                try:
                    await self._cond.wait()
                finally:
                    self.queued -= 1
        cold = process.state == "starting"
        if cold:
            await process.ready.wait()
            if process.error is not None:
                await self.release(process, served=False)
                raise StartFailedError(
                    f"{self.service} process {process.index} did not start: {process.error}"
                )
            self.cold_starts += 1
            self.metrics.cold_starts.labels(**self._labels).inc()
        return Lease(process=process, cold=cold)

    async def release(self, process: SkillProcess, *, served: bool = True) -> None:
        """Give the slot back; the process is idle from now if nothing else holds it."""
        async with self._cond:
            process.load -= 1
            self.metrics.inflight.labels(**self._labels).dec()
            if served:
                process.served += 1
            if process.load == 0:
                process.idle_since = time.monotonic()
            self._cond.notify_all()

    # -- process lifecycle -------------------------------------------------------------------

    def _spawn(self) -> SkillProcess:
        process = SkillProcess(index=self._next_index, port=free_port())
        self._next_index += 1
        self._processes.append(process)
        self.starts += 1
        self._track(asyncio.create_task(self._start(process)))
        return process

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def keep(self) -> int:
        """Processes kept alive when idle: ``scaling.min`` or the warm pool's floor."""
        wanted = max(self.config.min, self.warm_floor)
        return min(wanted, self.config.max) if self.config.max > 0 else wanted

    async def ensure_min(self) -> None:
        """Start the processes ``scaling.min`` and the warm floor ask for (warm in advance)."""
        async with self._cond:
            while len(self.live()) < self.keep():
                self._spawn()

    async def set_warm_floor(self, count: int, reason: str = "") -> None:
        """The warm pool's decision (min-scale): keep ``count`` processes alive, starting them now."""
        if count != self.warm_floor:
            why = f": {reason}" if reason else ""
            self.log(
                f"{self.service} warm pool: keep {count} process(es) alive "
                f"(was {self.warm_floor}){why}"
            )
        self.warm_floor = max(count, 0)
        self.warm_reason = reason
        await self.ensure_min()

    async def _start(self, process: SkillProcess) -> None:
        env = self._env_for_port(process.port)
        try:
            process.proc = await self._launch(env)
        except OSError as exc:
            await self._failed(process, f"cannot run {' '.join(self.command)}: {exc}")
            return
        process.spawn_seconds = time.monotonic() - process.spawned_at
        self.metrics.processes.labels(**self._labels).inc()
        self.log(
            f"{self.service}#{process.index} starting (pid {process.proc.pid}, port {process.port})"
        )
        self._track(asyncio.create_task(self._pump(process, process.proc.stdout, stderr=False)))
        self._track(asyncio.create_task(self._pump(process, process.proc.stderr, stderr=True)))
        self._track(asyncio.create_task(self._watch_exit(process)))
        error = await self._wait_ready(process)
        if error is not None:
            process.state = "stopping"  # so the exit watcher does not call it unexpected
            await self._terminate(process)
            await self._failed(process, error)
            return
        process.ready_seconds = time.monotonic() - process.spawned_at
        self.metrics.start_seconds.labels(**self._labels).observe(process.ready_seconds)
        async with self._cond:
            if process.state == "starting":
                process.state = "ready"
                process.idle_since = time.monotonic()
            self._cond.notify_all()
        process.ready.set()
        self.log(f"{self.service}#{process.index} ready in {process.ready_seconds:.2f}s")

    async def _launch(self, env: dict[str, str]) -> asyncio.subprocess.Process | ForkedProcess:
        """Fork from the template when it can (no interpreter start, no library imports), else exec."""
        if self.template is not None and (forked := await self.template.fork(self.command, env)):
            return forked
        return await asyncio.create_subprocess_exec(
            *self.command,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    async def _failed(self, process: SkillProcess, error: str) -> None:
        process.error = error
        self.log(f"{self.service}#{process.index} failed to start: {error}")
        async with self._cond:
            process.state = "stopped"
            self._forget(process)
            self._cond.notify_all()
        process.ready.set()

    async def _wait_ready(self, process: SkillProcess) -> str | None:
        deadline = time.monotonic() + self.config.startup_timeout
        assert process.proc is not None
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if process.proc.returncode is not None:
                    tail = " | ".join(process.stderr_tail) or "no output"
                    return f"exited with code {process.proc.returncode} before ready: {tail}"
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"{process.url}/readyz")
                    if response.status_code == 200:
                        return None
                    fatal = _fatal_readiness(response)
                    if fatal is not None:
                        return fatal
                await asyncio.sleep(READY_POLL_SECONDS)
        return f"not ready after {self.config.startup_timeout:.0f}s"

    async def _pump(
        self, process: SkillProcess, stream: asyncio.StreamReader | None, *, stderr: bool
    ) -> None:
        if stream is None:
            return
        while line := await stream.readline():
            text = line.decode(errors="replace").rstrip()
            if stderr:
                process.stderr_tail.append(text)
            shown = readable_log_line(text)
            if shown is not None:
                self.log(f"{self.service}#{process.index} | {shown}")

    async def _watch_exit(self, process: SkillProcess) -> None:
        assert process.proc is not None
        code = await process.proc.wait()
        self.metrics.processes.labels(**self._labels).dec()
        async with self._cond:
            unexpected = process.state in ("starting", "ready")
            process.state = "stopped"
            self._retire_usage(process)
            self._forget(process)
            self._cond.notify_all()
        if unexpected:
            self.log(f"{self.service}#{process.index} exited unexpectedly with code {code}")
        else:
            self.log(f"{self.service}#{process.index} stopped (served {process.served})")

    def _forget(self, process: SkillProcess) -> None:
        """Drop a stopped process from the pool (a long session must not grow the list)."""
        if process in self._processes:
            self._processes.remove(process)

    def _retire_usage(self, process: SkillProcess) -> None:
        for key, value in process.usage.items():
            self.retired_usage[key] = self.retired_usage.get(key, 0.0) + value
        process.usage = {}

    async def _terminate(self, process: SkillProcess) -> None:
        proc = process.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def stop(self, process: SkillProcess, reason: str) -> None:
        """Scrape the process's last figures and stop it."""
        async with self._cond:
            if process.state != "ready" or process.load > 0:
                return
            process.state = "stopping"
        self.log(f"{self.service}#{process.index} stopping: {reason}")
        await self.scrape(process)
        await self._terminate(process)

    async def reap(self) -> None:
        """Stop processes idle for the idle period, keeping ``scaling.min`` and the warm floor."""
        now = time.monotonic()
        async with self._cond:
            live = self.live()
            idle = sorted(
                (
                    p
                    for p in live
                    if p.state == "ready"
                    and p.load == 0
                    and now - p.idle_since >= self.config.idle_seconds
                ),
                key=lambda p: p.idle_since,
            )
            keep = max(self.keep() - (len(live) - len(idle)), 0)
            victims = idle[keep:] if keep < len(idle) else []
        for process in victims:
            await self.stop(process, f"idle for {self.config.idle_seconds:g}s")

    async def scrape(self, process: SkillProcess) -> None:
        """Read tokens and cost from the process's /metrics (kept after it stops)."""
        if process.state not in ("ready", "stopping"):
            return
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                response = await client.get(f"{process.url}/metrics")
        except httpx.HTTPError:
            return
        if response.status_code == 200:
            process.usage = usage_from_metrics(response.text)

    async def shutdown(self) -> None:
        """Stop every process (rouse dev is exiting)."""
        async with self._cond:
            processes = self.live()
            for process in processes:
                process.state = "stopping"
        await asyncio.gather(*(self._terminate(p) for p in processes))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


QUIET_FIELDS = frozenset({"time", "level", "logger", "msg", "agent", "skill"})


def readable_log_line(text: str) -> str | None:
    """A runtime JSON log line as ``level msg k=v``; uvicorn's startup chatter is dropped."""
    try:
        record = json.loads(text)
    except ValueError:
        return text
    if not isinstance(record, dict) or "msg" not in record:
        return text
    level = str(record.get("level", "info"))
    if str(record.get("logger", "")).startswith("uvicorn") and level in ("info", "debug"):
        return None
    fields = " ".join(f"{k}={v}" for k, v in record.items() if k not in QUIET_FIELDS)
    return f"{level} {record['msg']}" + (f" {fields}" if fields else "")


def _fatal_readiness(response: httpx.Response) -> str | None:
    """A /readyz answer that will not change by waiting (the handler failed to import)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("error") == "handler not loaded":
        return f"handler not loaded: {body.get('detail', '')}"
    return None


def usage_from_metrics(text: str) -> dict[str, float]:
    """Tokens (all kinds) and cost in USD from a runtime's Prometheus text."""
    usage = {"tokens": 0.0, "costUSD": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rouse_tokens_total":
                usage["tokens"] += sample.value
            elif sample.name == "rouse_cost_usd_total":
                usage["costUSD"] += sample.value
    return usage
