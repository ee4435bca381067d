"""The platform side of joins and compensation, as real processes over HTTP.

A join whose last part never comes is ended by the parking service's sweeper at its deadline: a
real runtime (the join skill) and a real parking service share the state store (SQLite, or a
real redis-server); the join runs once with what arrived, its reply goes into the Agent's Broker
(an HTTP stand-in for the broker ingress, `<ingress>/<namespace>/<broker>`), a late part does not
run it again, and the run's history records it. A compensation goes to the Agent's Broker too,
not the namespace's `default`: the runtime that completed the step records which.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from rouse_runtime.runs import Record, open_runlog
from rouse_runtime.runs.join import due_joins
from rouse_runtime.store import open_store
from rouse_testing.parking import Parking, start_parking
from rouse_testing.runtime import HttpSink, RunningRuntime, start_runtime, start_sink
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.integration

HANDLERS = Path(__file__).resolve().parents[1] / "unit" / "runtime_handlers"
NS, AGENT, BROKER = "team-a", "research", "research-bus"


@pytest.fixture
def ingress() -> Iterator[HttpSink]:
    """The broker ingress stand-in: records every event posted to any broker path."""
    sink = start_sink()
    yield sink
    sink.stop()


def skill_env(state_url: str, runs: Path, ingress: HttpSink, **extra: str) -> dict[str, str]:
    """A skill's env as the operator sets it (ROUSE_BROKER_URL names the Agent's Broker)."""
    return {
        "ROUSE_AGENT": AGENT,
        "ROUSE_NAMESPACE": NS,
        "ROUSE_STATE_URL": state_url,
        "ROUSE_BROKER_URL": f"{ingress.url}{NS}/{BROKER}",
        "ROUSE_TEST_RUNS": str(runs),
        **extra,
    }


@dataclass
class Platform:
    skill: RunningRuntime
    parking: Parking
    runs: Path  # the skill notes each run here (rouse_runs_skills)


@contextmanager
def platform(tmp_path: Path, state_url: str, ingress: HttpSink, **env: str) -> Iterator[Platform]:
    """A skill of HANDLERS (skill_env plus `env`) and the parking service as the chart runs it
    (broker ingress, not a fixed broker URL), its skill addresses pointed at that skill, sweeping
    often; both stopped on exit."""
    runs = tmp_path / "runs.txt"
    runs.touch()
    skill = start_runtime(skill_env(state_url, runs, ingress, **env), HANDLERS)
    try:
        parking = start_parking(
            tmp_path,
            state_url,
            extra_env={
                "ROUSE_BROKER_INGRESS": ingress.url,
                "ROUSE_SKILL_URL": skill.url,
                "ROUSE_JOIN_SWEEP_SECONDS": "0.2",
            },
        )
        try:
            yield Platform(skill, parking, runs)
        finally:
            parking.stop()
    finally:
        skill.stop()


def post(rt: RunningRuntime, event_id: str, event_type: str, data: object, **ext: str) -> int:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": f"/agents/{AGENT}/worker",
        "ce-type": event_type,
        "content-type": "application/json",
        **{f"ce-{k}": v for k, v in ext.items()},
    }
    return httpx.post(rt.url, headers=headers, content=json.dumps(data), timeout=30).status_code


def history(state_url: str, run: str) -> list[Record]:
    async def read() -> list[Record]:
        log = open_runlog(state_url)
        try:
            return await log.history(NS, AGENT, run)
        finally:
            await log.close()

    return asyncio.run(read())


def nothing_due(state_url: str, join_key_prefix: str = "") -> bool:
    async def read() -> bool:
        store = open_store(state_url)
        try:
            due = await due_joins(store, time.time() + 10**9)
            return not [d for d in due if d.about["join"].startswith(join_key_prefix)]
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_join_whose_last_part_never_comes_runs_at_its_deadline(
    state_url: str, tmp_path: Path, ingress: HttpSink
) -> None:
    join, run = f"j{uuid.uuid4().hex[:12]}", f"run-{uuid.uuid4().hex[:8]}"
    part = {"rouserun": run, "rousejoin": join, "rouseparts": "3"}
    with platform(
        tmp_path,
        state_url,
        ingress,
        ROUSE_HANDLER="rouse_runs_skills:joiner",
        ROUSE_SKILL="brief",
        ROUSE_REPLY_TYPE="com.example.brief.ready",
        ROUSE_JOIN="true",
        ROUSE_JOIN_DEADLINE="1",
    ) as world:
        skill = world.skill
        for n in (0, 1):
            answer = {"answer": f"answer {n}"}
            assert (
                post(skill, f"{join}-{n}", "test.answered", answer, rousepart=str(n), **part) == 202
            )

        def briefs() -> list[dict[str, object]]:
            return [
                {"path": r.path, "headers": r.headers, "data": json.loads(r.body)}
                for r in ingress.received
                if r.headers.get("ce-type") == "com.example.brief.ready"
            ]

        [brief] = wait_until(briefs, timeout=30, what="the join's reply at the broker ingress")
        # the last part, late: collected as such, the join does not run again
        late = post(skill, f"{join}-2", "test.answered", {"answer": "late"}, rousepart="2", **part)
        assert late == 202
        wait_until(
            lambda: "join_late" in [r.kind for r in history(state_url, run)],
            timeout=10,
            what="the late part recorded",
        )
        # a second sweep has nothing left to send
        wait_until(lambda: nothing_due(state_url, join), timeout=10, what="the join no longer due")
    assert brief["path"] == f"/{NS}/{BROKER}", "the reply did not go to the Agent's Broker"
    assert brief["data"] == {
        "join": join,
        "results": [{"answer": "answer 0"}, {"answer": "answer 1"}, None],
        "missing": [2],
    }
    assert brief["headers"]["ce-rouserun"] == run
    joined = [ln for ln in world.runs.read_text().splitlines() if ln.startswith("joined ")]
    assert len(joined) == 1, joined  # the skill ran once, for the join
    assert len(briefs()) == 1
    kinds = [r.kind for r in history(state_url, run)]
    assert kinds.count("join_collected") == 2, kinds
    fired = [r for r in history(state_url, run) if r.fields.get("joins")]
    assert [r.fields["joins"] for r in fired] == [{"join": join, "parts": 3, "missing": [2]}]
    assert fired[0].event is not None and fired[0].event["type"] == "dev.rouse.join.deadline"
    assert kinds.count("join_deadline") == 1, kinds
    assert kinds.index("join_deadline") > kinds.index("join_collected")


def test_a_compensation_goes_to_the_agents_broker(
    state_url: str, tmp_path: Path, ingress: HttpSink
) -> None:
    """A step completed by a real runtime whose Agent uses Broker `research-bus`; a later step
    of the run is dead-lettered: its compensation is posted to `<ingress>/team-a/research-bus`."""
    run = f"trip-{uuid.uuid4().hex[:8]}"
    with platform(
        tmp_path,
        state_url,
        ingress,
        ROUSE_HANDLER="rouse_runs_skills:work",
        ROUSE_SKILL="book",
        ROUSE_REPLY_TYPE="com.example.booked",
        ROUSE_COMPENSATE_TYPE="com.example.unbook",
    ) as world:
        assert post(world.skill, "b1", "com.example.requested", {"n": 1}, rouserun=run) == 200
        wait_until(
            lambda: [r for r in history(state_url, run) if r.fields.get("compensate")],
            timeout=10,
            what="the completed step's record",
        )
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "h1",
            "ce-source": "/agents/research/book",
            "ce-type": "com.example.booked",
            "ce-rouserun": run,
            "content-type": "application/json",
        }
        dead = httpx.post(
            f"{world.parking.url}/dead-letter/{NS}/{AGENT}/hotel", headers=headers, content=b"{}"
        )
        assert dead.status_code == 202
    undone = [r for r in ingress.received if r.headers.get("ce-type") == "com.example.unbook"]
    assert [(r.path, r.headers["ce-rouserun"]) for r in undone] == [(f"/{NS}/{BROKER}", run)]
    assert json.loads(undone[0].body)["result"] == {"done": "b1", "run": run}
