"""Local mode's fork template: a forked skill process behaves as an exec'd one.

Real processes throughout: local mode in this process (its broker's own
delivery path), the template it starts, the skill processes forked from it,
and for the parent-death case a real ``rouse dev``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localdev import alive, start_dev
from rouse_runtime.local.broker import new_event
from rouse_runtime.local.dev import DevOptions, LocalMode
from rouse_runtime.local.supervisor import StartFailedError
from rouse_runtime.local.template import (
    OPT_OUT,
    ForkTemplate,
    child_sys_path,
    env_mismatch,
    fork_unsafe,
    forkable,
)
from rouse_runtime.local.view import View
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.e2e

SKILLS = """
import os, sys

print("fork_skills imported")  # no flush: PYTHONUNBUFFERED, as local mode sets it


def who(event, ctx):
    return {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "sid": os.getsid(0),
        "port": os.environ["PORT"],
        "var": os.environ.get("FORK_TEST_VAR"),
        "cwd": os.getcwd(),
        "path": sys.path,
    }
"""
CRASHING = """
import os, sys

print("crashing on purpose", file=sys.stderr, flush=True)
os._exit(3)
"""


def agent_file(directory: Path, *, env: dict[str, str] | None = None) -> Path:
    """An agent with a skill that reports who it is and one that crashes while importing."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "fork_skills.py").write_text(SKILLS)
    (directory / "crashing.py").write_text(CRASHING)
    variables = {"FORK_TEST_VAR": "from-the-agent", **(env or {})}

    def skill(name: str, handler: str) -> dict[str, Any]:
        return {"name": name, "handler": handler, "events": [{"type": f"fork.{name}"}]}

    agent = {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "fork"},
        "spec": {
            "image": "example.com/fork:1",
            "env": [{"name": k, "value": v} for k, v in variables.items()],
            "skills": [skill("who", "fork_skills:who"), skill("crash", "crashing:who")],
        },
    }
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    return path


class Local:
    """Local mode in this process, with its output."""

    def __init__(self, mode: LocalMode, out: io.StringIO) -> None:
        self.mode = mode
        self.out = out

    async def who(self) -> dict[str, Any]:
        attempt = await self.mode.broker.attempt(new_event("fork.who", "/test", {}), "who")
        assert attempt.status == 200 and attempt.reply is not None, (attempt, self.logs())
        data: dict[str, Any] = attempt.reply.data
        return data

    def logs(self) -> str:
        return self.out.getvalue()


@contextlib.asynccontextmanager
async def local_mode(agent: Path, state: Path) -> AsyncIterator[Local]:
    out = io.StringIO()
    mode = LocalMode.create(
        DevOptions(agent_file=agent, port=0, state_dir=state), View(stream=out, tty=False)
    )
    mode.bind()
    if mode.template is not None:
        await mode.template.start()
    try:
        yield Local(mode, out)
    finally:
        await mode.broker.close()
        await asyncio.gather(*(pool.shutdown() for pool in mode.pools.values()))
        if mode.template is not None:
            await mode.template.close()
        assert mode.socket is not None
        mode.socket.close()


async def wait_for(check: Any, what: str) -> None:
    """wait_until off the event loop's thread, so the processes' pipes keep flowing."""
    await asyncio.to_thread(wait_until, check, timeout=30, what=what)


async def test_a_forked_skill_has_its_own_env_port_session_and_prefixed_logs(
    tmp_path: Path,
) -> None:
    async with local_mode(agent_file(tmp_path / "agent"), tmp_path / "state") as local:
        assert local.mode.template is not None and await local.mode.template.ready()
        who = await local.who()
        process = local.mode.pools["who"].live()[0]
        assert who["pid"] == process.pid
        assert who["ppid"] != os.getpid()  # forked by the template, not exec'd by local mode
        assert who["sid"] == who["pid"]  # its own session (local mode stops it by group)
        assert who["port"] == str(process.port)
        assert who["var"] == "from-the-agent"
        assert who["cwd"] == os.getcwd()
        # as `python -m rouse_runtime` has it: the cwd first, then PYTHONPATH (the agent's dir)
        assert who["path"][:2] == [os.getcwd(), str((tmp_path / "agent").resolve())]
        assert "fork-who#1 | fork_skills imported" in local.logs()


async def test_a_crash_before_ready_reports_the_exit_code_and_stderr(tmp_path: Path) -> None:
    async with local_mode(agent_file(tmp_path / "agent"), tmp_path / "state") as local:
        assert local.mode.template is not None and await local.mode.template.ready()
        with pytest.raises(StartFailedError) as failed:
            await local.mode.pools["crash"].acquire()
        assert "exited with code 3 before ready: crashing on purpose" in str(failed.value)
        assert "fork-crash#1 | crashing on purpose" in local.logs()


async def test_terminate_stops_a_forked_skill_and_reports_its_exit(tmp_path: Path) -> None:
    async with local_mode(agent_file(tmp_path / "agent"), tmp_path / "state") as local:
        who = await local.who()
        pool = local.mode.pools["who"]
        process = pool.live()[0]
        await pool.stop(process, "the test stops it")
        assert process.proc is not None
        # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (as exec'd)
        assert await asyncio.wait_for(process.proc.wait(), 30) == -signal.SIGTERM
        assert process.proc.returncode == -signal.SIGTERM
        await wait_for(lambda: pool.live() == [], "the pool to forget the process")
        assert not alive(who["pid"])
        assert "fork-who#1 stopped (served 1)" in local.logs()


async def test_a_template_that_dies_is_restarted(tmp_path: Path) -> None:
    async with local_mode(agent_file(tmp_path / "agent"), tmp_path / "state") as local:
        first = await local.who()
        template = first["ppid"]
        os.kill(template, signal.SIGKILL)
        await wait_for(lambda: "restarting it" in local.logs(), "the template to be restarted")
        # its skill got SIGTERM with it (PDEATHSIG) and the pool saw the exit
        await wait_for(lambda: local.mode.pools["who"].live() == [], "the skill to exit")
        assert not alive(first["pid"])
        second = await local.who()
        assert second["ppid"] not in (template, os.getpid())  # forked by the new template


async def test_opting_out_execs_every_skill(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(OPT_OUT, "0")
    async with local_mode(agent_file(tmp_path / "agent"), tmp_path / "state") as local:
        assert local.mode.template is None
        who = await local.who()
        assert who["ppid"] == os.getpid()  # exec'd by local mode itself
        assert who["var"] == "from-the-agent"
        assert f"{OPT_OUT}=0: skill processes are exec'd" in local.logs()


async def test_a_template_that_cannot_start_falls_back_to_exec(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "uvicorn.py").write_text("raise ImportError('a broken uvicorn')\n")
    async with local_mode(agent_file(tmp_path / "agent"), tmp_path / "state") as local:
        # the template imports the broken uvicorn first on its path; the skills do not
        env = {**os.environ, "PYTHONPATH": str(broken)}
        logged: list[str] = []
        template = ForkTemplate(env, logged.append)
        for pool in local.mode.pools.values():
            pool.template = template
        await template.start()
        try:
            assert await template.ready() is False
            who = await local.who()
            assert who["ppid"] == os.getpid()
            assert any("a broken uvicorn" in line for line in logged), logged
            assert any(line.endswith(": skill processes are exec'd") for line in logged), logged
        finally:
            await template.close()


async def test_an_agent_env_read_at_import_is_exec_d(tmp_path: Path) -> None:
    agent = agent_file(tmp_path / "agent", env={"PYTHONHASHSEED": "7"})
    async with local_mode(agent, tmp_path / "state") as local:
        who = await local.who()
        assert who["ppid"] == os.getpid()
        assert "PYTHONHASHSEED differs from rouse dev's env" in local.logs()


def test_skills_die_with_rouse_dev(tmp_path: Path) -> None:
    dev = start_dev(agent_file(tmp_path / "agent"), tmp_path / "state")
    try:
        answer = dev.post("fork.who", {})
        assert answer.status_code == 202, answer.text
        chain = dev.wait_chain(answer.json()["chain"])
        who = chain["events"][1]["data"]
        assert who["ppid"] != dev.proc.pid and alive(who["ppid"])  # forked by the template
        dev.proc.kill()  # no chance to stop anything
        dev.proc.wait(timeout=10)
        wait_until(lambda: not alive(who["ppid"]), timeout=20, what="the template to exit")
        wait_until(lambda: not alive(who["pid"]), timeout=20, what="the skill process to exit")
    finally:
        dev.stop()


def test_fork_safety_is_checked() -> None:
    assert fork_unsafe() is None
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="a-thread")
    thread.start()
    try:
        assert "a-thread" in (fork_unsafe() or "")
    finally:
        stop.set()
        thread.join()


def test_what_a_fork_can_run_and_honour() -> None:
    assert forkable((sys.executable, "-m", "rouse_runtime"))
    assert forkable((sys.executable, "-c", "print(1)"))
    assert not forkable(("/usr/bin/python3.9", "-m", "rouse_runtime"))
    assert not forkable(("rouse-runtime",))
    read = frozenset({"LANG"})
    assert env_mismatch({"LANG": "C", "PORT": "1"}, {"LANG": "C", "PORT": "2"}, read) is None
    assert env_mismatch({"LANG": "C"}, {"LANG": "de_DE"}, read) == "LANG"
    assert env_mismatch({"PYTHONOPTIMIZE": "1"}, {}, read) == "PYTHONOPTIMIZE"
    assert env_mismatch({"PYTHONPATH": "/a", "PYTHONUNBUFFERED": "1"}, {}, read) is None
    assert env_mismatch({}, {}, frozenset({"*"})) is not None
    assert child_sys_path(["/t", "/tp", "/lib", "/site"], "/tp", "/agent:/x", "/cwd") == [
        "/cwd",
        "/agent",
        "/x",
        "/lib",
        "/site",
    ]
    # PYTHONSAFEPATH: no cwd first, in the template as in the child
    assert child_sys_path(["/lib"], "", "/agent", "/cwd", safe_path=True) == ["/agent", "/lib"]
