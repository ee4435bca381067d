"""The chart's Redis users, on a real redis-server started with the chart's own arguments.

`helm template` renders the chart; its Redis container's arguments (the `default` user's
password and the `skill` user's ACL) start a real redis-server here, with the generated
passwords put in as Kubernetes puts `$(VAR)` in. Then the runtime's own code runs against it:
as the `skill` user (what every skill pod holds: the Secret copied into Agent namespaces) a
skill's work succeeds (ctx.state, checkpoints, waits, idempotency, its ledger lines, reading its
reject gate), and opening its gate, touching parked events or dead letters, holding a replay
lease and admin commands are refused; as the platform user (operator, parking service) all of it
works.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from cloudevents.http import CloudEvent
from rouse_runtime.budget_gate import gate_key, sync_gate
from rouse_runtime.ledger import Entry, open_ledger
from rouse_runtime.parking.queue import Filter, open_queue
from rouse_runtime.parking.replay import lease_key
from rouse_runtime.policies import budget
from rouse_runtime.policies.budget import BudgetSpec, Usage
from rouse_runtime.runs.join import Joins, Part, due_joins
from rouse_runtime.runs.log import Record, open_runlog
from rouse_runtime.scope import Scope
from rouse_runtime.server import idempotency_key
from rouse_runtime.store import StoreError, open_store
from rouse_testing.chart import NAMESPACE, helm_template
from rouse_testing.openai_server import start_openai_server
from rouse_testing.redis import start_redis
from rouse_testing.runtime import start_runtime

pytestmark = pytest.mark.integration

SCOPE = Scope("team-a", "shop")


@dataclass(frozen=True)
class Users:
    platform: str  # the operator's and parking service's URL (Secret rouse-redis, key url)
    skill: str  # the skills' URL (key skill-url, the only key copied to Agent namespaces)


def chart_redis() -> tuple[list[str], dict[str, str]]:
    """The chart's Redis arguments with its Secret's values put in, and that Secret's data."""
    objects = {
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")): o
        for o in helm_template()
    }
    secret = objects[("Secret", "rouse-redis", NAMESPACE)]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    pod = objects[("Deployment", "rouse-redis", NAMESPACE)]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: data[e["valueFrom"]["secretKeyRef"]["key"]] for e in container["env"]}
    args = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    at = args.index("--dir")
    return args[:at] + args[at + 2 :], data  # the data dir is the test's


def here(url: str, port: int) -> str:
    """The Secret's in-cluster URL pointed at the test's server, credentials kept."""
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


@pytest.fixture
def users(tmp_path: Path) -> Iterator[Users]:
    args, data = chart_redis()
    server = start_redis(tmp_path / "redis", args)
    try:
        yield Users(here(data["url"], server.port), here(data["skill-url"], server.port))
    finally:
        server.stop()


def decision(tokens: float) -> budget.BudgetDecision:
    """The budget policy's decision for a 10-token day with `onExhausted: reject`."""
    spec = BudgetSpec.from_agent({"budget": {"daily": {"tokens": 10}, "onExhausted": "reject"}})
    return budget.decide(spec, Usage(tokens=tokens, cost_usd=0.0), None, datetime.now(UTC))


def refused(exc: BaseException) -> bool:
    return "no permissions" in str(exc).lower() or "noperm" in str(exc).lower()


async def test_a_skill_does_its_work_as_the_skill_user(users: Users) -> None:
    platform = open_store(users.platform)
    await sync_gate(platform, SCOPE.namespace, SCOPE.agent, decision(20))  # the operator closes it
    store, ledger = open_store(users.skill), open_ledger(users.skill)
    try:
        await store.set(SCOPE.path("last-ticket"), "T-1")  # ctx.state
        assert await store.get(SCOPE.path("last-ticket")) == "T-1"
        await store.save_checkpoint(SCOPE.path("triage", "/src", "e1"), {"step": 2})
        assert await store.load_checkpoint(SCOPE.path("triage", "/src", "e1")) == {"step": 2}
        wait = SCOPE.tagged("wait", "triage", "com.example.approved", "T-1")  # ctx.wait_for
        await store.set(wait, {"checkpoint": 1})
        assert await store.delete(wait)
        key = idempotency_key(SCOPE, "triage", "/src", "e1")
        assert (await store.claim(key, "pod-1", 30)).state == "claimed"
        assert await store.extend(key, "pod-1", 30)
        assert await store.complete(key, "pod-1", {"status": 200}, 60)
        assert (await store.claim(key, "pod-2", 30)).state == "done"
        resume = "resume:" + SCOPE.digest("triage", "r1")
        assert (await store.claim(resume, "pod-1", 30)).state == "claimed"
        assert await store.release(resume, "pod-1")
        await ledger.add(SCOPE.namespace, SCOPE.agent, "triage", Entry(input_tokens=7))
        assert (await store.get(gate_key(SCOPE.namespace, SCOPE.agent))) is not None  # read
    finally:
        await store.close()
        await ledger.close()
        await platform.close()


async def test_a_skill_cannot_open_its_gate_touch_parked_events_or_administer(
    users: Users,
) -> None:
    store, queue = open_store(users.skill), open_queue(users.skill)
    gate = gate_key(SCOPE.namespace, SCOPE.agent)
    try:
        attempts: dict[str, Any] = {
            "open its gate": sync_gate(
                store, SCOPE.namespace, SCOPE.agent, decision(0)
            ),  # deletes it
            "write its gate": store.set(gate, None),
            "list parked events": queue.items(Filter(namespace=SCOPE.namespace)),
            "park an event": queue.append("park", "team-a", "shop", "triage", "/s", "e1", "{}"),
            "hold the replay lease": store.claim(lease_key(SCOPE.namespace, SCOPE.agent), "x", 60),
        }
        for what, attempt in attempts.items():
            with pytest.raises(StoreError) as caught:
                await attempt
            assert refused(caught.value), f"{what}: {caught.value}"
    finally:
        await store.close()
        await queue.close()
    raw = redis.Redis.from_url(users.skill)
    for command in (
        ["FLUSHALL"],
        ["KEYS", "*"],
        ["CONFIG", "GET", "*"],
        ["ACL", "LIST"],
        ["SCAN", "0"],
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            raw.execute_command(*command)
    raw.close()


async def test_the_platform_user_keeps_every_right(users: Users) -> None:
    store, queue, ledger = (
        open_store(users.platform), open_queue(users.platform), open_ledger(users.platform)
    )  # fmt: skip
    try:
        await sync_gate(store, SCOPE.namespace, SCOPE.agent, decision(20))
        assert await store.get(gate_key(SCOPE.namespace, SCOPE.agent)) is not None
        await sync_gate(store, SCOPE.namespace, SCOPE.agent, decision(0))
        assert await store.get(gate_key(SCOPE.namespace, SCOPE.agent)) is None
        assert await queue.append("park", "team-a", "shop", "triage", "/s", "e1", "{}")
        [item] = await queue.items(Filter(namespace="team-a"))
        assert await queue.remove([item.id]) == 1
        lease = lease_key(SCOPE.namespace, SCOPE.agent)
        assert (await store.claim(lease, "replayer", 60)).state == "claimed"
        assert await store.release(lease, "replayer")
        await ledger.add(SCOPE.namespace, SCOPE.agent, "triage", Entry(input_tokens=3))
        assert [line.agent for line in await ledger.lines()] == ["shop"]
    finally:
        await store.close()
        await queue.close()
        await ledger.close()


SKILL = """
async def remember(event, ctx):
    seen = await ctx.state.get("seen") or []
    await ctx.state.set("seen", [*seen, event["id"]])
    await ctx.llm.chat([{"role": "user", "content": "hi"}])
    return {"seen": len(seen) + 1}
"""


def test_a_skill_process_serves_events_as_the_skill_user(users: Users, tmp_path: Path) -> None:
    """The runtime process itself (the skill pod's code path: idempotency claim, the reject
    gate's check, ctx.state, a model call with its ledger line, the stored reply) on the skill
    user's URL: events are answered, a redelivery gets the stored reply, spend is counted."""
    (tmp_path / "skill").mkdir()
    (tmp_path / "skill" / "skill.py").write_text(SKILL)
    llm = start_openai_server(prompt_tokens=10, completion_tokens=5)
    runtime = start_runtime(
        {
            "ROUSE_HANDLER": "skill:remember",
            "ROUSE_AGENT": SCOPE.agent,
            "ROUSE_SKILL": "remember",
            "ROUSE_NAMESPACE": SCOPE.namespace,
            "ROUSE_STATE_URL": users.skill,
            "ROUSE_REPLY_TYPE": "com.example.remembered",
            "ROUSE_LLM_BASE_URL": llm.url,
            "ROUSE_LLM_MODEL": "m",
        },
        tmp_path / "skill",
    )
    try:
        answers = [post_event(runtime.url, event_id) for event_id in ("e1", "e2", "e1")]
        assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
        assert [a.json()["seen"] for a in answers] == [1, 2, 1]  # e1 again: its stored reply
    finally:
        runtime.stop()
        llm.stop()
    lines = asyncio.run(ledger_lines(users.platform))
    assert [(line.agent, line.skill, line.invocations) for line in lines] == [
        (SCOPE.agent, "remember", 2)
    ]


def post_event(url: str, event_id: str) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/tests/acl",
        "ce-type": "com.example.remember",
        "content-type": "application/json",
    }
    return httpx.post(url, headers=headers, content=b"{}", timeout=30)


async def ledger_lines(url: str) -> list[Any]:
    ledger = open_ledger(url)
    try:
        return list(await ledger.lines())
    finally:
        await ledger.close()


async def test_a_skill_records_its_runs_and_reads_but_cannot_set_their_stop_marks(
    users: Users,
) -> None:
    """The run log (runs/): a skill appends its records and reads cancel/kill marks; only the
    platform (the parking service's runs API) may stop a run."""
    skill, platform = open_runlog(users.skill), open_runlog(users.platform)
    ns, agent = SCOPE.namespace, SCOPE.agent
    try:
        await skill.append([Record(ns, agent, "r-1", "started", skill="triage")])
        assert [r.kind for r in await skill.history(ns, agent, "r-1")] == ["started"]
        assert await platform.stop(ns, agent, "r-1", by="test")
        assert (await skill.stopped(ns, agent)).covers("r-1")  # read
        with pytest.raises(Exception) as caught:  # written: refused by the ACL
            await skill.stop(ns, agent, "r-2", by="skill")
        assert refused(caught.value), caught.value
    finally:
        await skill.close()
        await platform.close()


async def test_a_join_skill_registers_its_deadline_for_the_platforms_sweeper(
    users: Users,
) -> None:
    """A join with a deadline (runs/join.py): the skill user stores its first part and registers
    it as due in one script; the platform (the parking service's sweeper) reads it back."""
    skill, platform = open_store(users.skill), open_store(users.platform)
    about = {"namespace": SCOPE.namespace, "agent": SCOPE.agent, "skill": "brief",
             "join": "acl-join", "parts": 2, "run": "r-1", "broker": "default"}  # fmt: skip
    try:
        first = CloudEvent({"type": "t", "source": "/s", "id": "p0"}, {"answer": 0})
        arrival = await Joins(skill, deadline=60).arrive(
            "acl-join-key", Part("acl-join", 0, 2), first, "p0-key", about
        )
        assert arrival.kind == "collected"
        due = await due_joins(platform, time.time() + 120)
        assert [(d.key, d.about) for d in due if d.key == "acl-join-key"] == [
            ("acl-join-key", about)
        ]
    finally:
        await skill.close()
        await platform.close()
