"""A suspended agent's gate, read by real runtime processes: 429 everywhere for `reject`; for
`park` a front door answers 503 without running its handler, and event skills are untouched."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rouse_runtime.budget_gate import gate_record, sync_gate
from rouse_runtime.policies.budget import BudgetDecision, BudgetSpec, Usage, decide
from rouse_runtime.store import open_store
from rouse_testing.runtime import start_runtime
from rouse_testing.wait import wait_until

SKILL = "async def noop(event, ctx):\n    return None\n"


def spent(action: str) -> BudgetDecision:
    spec = BudgetSpec(daily_tokens=10, on_exhausted="reject" if action == "reject" else "park")
    return decide(spec, Usage(20, 0.0), None, datetime.now(UTC))


def test_gate_record_while_suspended_names_the_action() -> None:
    for action in ("reject", "park"):
        decision = spent(action)
        assert gate_record(decision) == {
            "until": decision.resets_at.isoformat(),
            "reason": "TokensExhausted",
            "message": decision.message,
            "action": action,
        }
    fine = decide(BudgetSpec(daily_tokens=10), Usage(1, 0.0), None, datetime.now(UTC))
    assert gate_record(fine) is None


def post(url: str) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": str(uuid.uuid4()),
        "ce-source": "/test",
        "ce-type": "com.example.work",
        "content-type": "application/json",
    }
    return httpx.post(url, headers=headers, content=b"{}", timeout=10)


def test_runtime_refuses_while_the_gate_is_closed(tmp_path: Path) -> None:
    (tmp_path / "gate_skill.py").write_text(SKILL)
    state_url = f"sqlite:///{tmp_path}/state.db"
    env = {
        "ROUSE_HANDLER": "gate_skill:noop",
        "ROUSE_AGENT": "frugal",
        "ROUSE_SKILL": "work",
        "ROUSE_NAMESPACE": "team-a",
        "ROUSE_STATE_URL": state_url,
    }
    runtime = start_runtime(env, tmp_path)
    store = open_store(state_url)
    try:
        assert post(runtime.url).status_code == 202
        closed = spent("reject")
        asyncio.run(sync_gate(store, "team-a", "frugal", closed))

        def refused() -> httpx.Response | None:
            answer = post(runtime.url)
            return answer if answer.status_code == 429 else None

        answer = wait_until(refused, timeout=15, what="429 while the budget gate is closed")
        body = answer.json()
        assert body["error"] == "budget exhausted"
        assert "onExhausted: reject" in body["detail"]
        left = closed.resets_at - datetime.now(UTC)
        assert 0 < int(answer.headers["retry-after"]) <= left.total_seconds() + 2
        # Another agent sharing the store is not affected.
        asyncio.run(sync_gate(store, "team-b", "frugal", closed))

        reopened = decide(
            BudgetSpec(daily_tokens=1000, on_exhausted="reject"),
            Usage(20, 0.0),
            closed,
            datetime.now(UTC) + timedelta(seconds=1),
        )
        asyncio.run(sync_gate(store, "team-a", "frugal", reopened))
        wait_until(
            lambda: post(runtime.url).status_code == 202,
            timeout=15,
            what="202 again once the gate is open",
        )
    finally:
        runtime.stop()
        asyncio.run(store.close())


DOOR = """
from pathlib import Path

async def ask(event, ctx):
    Path(__file__).with_name("ran").write_text("ran")
    yield "an answer"
"""


def test_park_stops_a_front_door_with_503_and_spends_nothing(tmp_path: Path) -> None:
    (tmp_path / "door_skill.py").write_text(DOOR)
    (tmp_path / "gate_skill.py").write_text(SKILL)
    state_url = f"sqlite:///{tmp_path}/state.db"
    common = {"ROUSE_AGENT": "frugal", "ROUSE_NAMESPACE": "team-a", "ROUSE_STATE_URL": state_url}
    door = start_runtime(
        {**common, "ROUSE_HANDLER": "door_skill:ask", "ROUSE_SKILL": "ask",
         "ROUSE_FRONT_DOOR": "public"},
        tmp_path,
    )  # fmt: skip
    work = start_runtime(
        {**common, "ROUSE_HANDLER": "gate_skill:noop", "ROUSE_SKILL": "work"}, tmp_path
    )
    store = open_store(state_url)
    try:
        closed = spent("park")
        asyncio.run(sync_gate(store, "team-a", "frugal", closed))

        def refused() -> httpx.Response | None:
            answer = httpx.post(door.url, json={"question": "?"}, timeout=10)
            return answer if answer.status_code == 503 else None

        answer = wait_until(refused, timeout=15, what="503 at the front door while parked")
        body = answer.json()
        assert body["error"] == "budget exhausted" and body["reason"] == "TokensExhausted"
        assert "suspended until" in body["detail"] and "onExhausted: park" in body["detail"]
        left = closed.resets_at - datetime.now(UTC)
        assert 0 < int(answer.headers["retry-after"]) <= left.total_seconds() + 2
        assert not (tmp_path / "ran").exists(), "the handler ran while the agent was parked"
        # an event skill reached directly (a replay, the cluster) is not refused by park
        assert post(work.url).status_code == 202

        reopened = decide(
            BudgetSpec(daily_tokens=1000), Usage(20, 0.0), closed,
            datetime.now(UTC) + timedelta(seconds=1),
        )  # fmt: skip
        asyncio.run(sync_gate(store, "team-a", "frugal", reopened))
        wait_until(
            lambda: httpx.post(door.url, json={"question": "?"}, timeout=10).status_code == 200,
            timeout=15,
            what="the front door answering again once the gate is open",
        )
        assert (tmp_path / "ran").exists()
    finally:
        door.stop()
        work.stop()
        asyncio.run(store.close())
