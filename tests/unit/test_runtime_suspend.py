"""ctx.wait_for: a skill suspends (202, waiting record stored) and an approval event resumes it once.

Real runtime processes over loopback HTTP, with the SQLite store and a real redis-server.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rouse_runtime.runs.ids import root_run_id
from rouse_runtime.scope import Scope
from rouse_runtime.store import open_store
from rouse_runtime.suspend import resume_claim_key, waiting_key
from rouse_testing.redis import RedisServer
from rouse_testing.runtime import RunningRuntime, start_runtime

HANDLERS = Path(__file__).parent / "runtime_handlers"
AGENT, SKILL = "support", "escalate"


def ticket(id_: str, number: str) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/tickets",
        "ce-type": "test.ticket",
        "content-type": "application/json",
    }
    return headers, json.dumps({"ticket": number}).encode()


def approval(
    id_: str, key: str, data: dict[str, Any] | None = None
) -> tuple[dict[str, str], bytes]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/approvals",
        "ce-type": "test.approved",
        "ce-rousekey": key,
        "content-type": "application/json",
    }
    return headers, json.dumps(data or {"by": "alice"}).encode()


def post(rt: RunningRuntime, message: tuple[dict[str, str], bytes]) -> httpx.Response:
    headers, body = message
    return httpx.post(rt.url, headers=headers, content=body, timeout=30)


def store_call(state_url: str, method: str, *args: Any) -> Any:
    """One call on the runtime's own state store, from the test process."""

    async def call() -> Any:
        store = open_store(state_url)
        try:
            return await getattr(store, method)(*args)
        finally:
            await store.close()

    return asyncio.run(call())


def waiting(state_url: str, number: str) -> Any:
    return store_call(
        state_url, "get", waiting_key(Scope("default", AGENT), SKILL, "test.approved", number)
    )


def resumes(runs: Path) -> list[str]:
    return runs.read_text().splitlines() if runs.exists() else []


def metric(rt: RunningRuntime, line_start: str) -> list[str]:
    text = httpx.get(f"{rt.url}/metrics").text
    return [line for line in text.splitlines() if line.startswith(line_start)]


def log_lines(rt: RunningRuntime, msg: str) -> list[tuple[str, str, str]]:
    """(event id, wait type, wait key) of the runtime's JSON log lines with that message."""
    lines = [json.loads(line) for line in rt.logs().splitlines() if line.startswith("{")]
    return [(x["event_id"], x["wait_type"], x["wait_key"]) for x in lines if x["msg"] == msg]


def runtime_env(
    state_url: str, runs: Path, handler: str = "escalate", **extra: str
) -> dict[str, str]:
    return {
        "ROUSE_HANDLER": f"rouse_suspend_skills:{handler}",
        "ROUSE_AGENT": AGENT,
        "ROUSE_SKILL": SKILL,
        "ROUSE_STATE_URL": state_url,
        "ROUSE_TEST_RUNS": str(runs),
        **extra,
    }


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs.txt"


@pytest.fixture
def runtime(state_url: str, runs: Path) -> Iterator[RunningRuntime]:
    rt = start_runtime(runtime_env(state_url, runs, ROUSE_MAX_STEPS="3"), HANDLERS)
    yield rt
    rt.stop()


def test_suspend_resume_once(runtime: RunningRuntime, state_url: str, runs: Path) -> None:
    suspended = post(runtime, ticket("t-1", "T-42"))
    assert (suspended.status_code, suspended.content) == (202, b"")
    record = waiting(state_url, "T-42")
    assert {k: record[k] for k in ("checkpoint", "origin")} == {
        "checkpoint": {"ticket": "T-42", "stage": "awaiting approval"},
        "origin": {
            "source": "/tickets",
            "id": "t-1",
            "type": "test.ticket",
            "run": root_run_id("/tickets", "t-1"),  # the run the resume goes on in
        },
    }
    assert log_lines(runtime, "suspended") == [("t-1", "test.approved", "T-42")]
    # a redelivery of the suspending event is answered from the store, not run again
    assert post(runtime, ticket("t-1", "T-42")).status_code == 202
    assert waiting(state_url, "T-42")["id"] == record["id"]

    resumed = post(runtime, approval("a-1", "T-42"))
    assert resumed.status_code == 200, resumed.text
    assert resumed.headers["ce-type"] == "dev.rouse.escalate.completed"
    assert resumed.json() == {
        "checkpoint": {"ticket": "T-42", "stage": "awaiting approval"},
        "origin": {
            "source": "/tickets",
            "id": "t-1",
            "type": "test.ticket",
            "run": root_run_id("/tickets", "t-1"),  # the run the resume goes on in
        },
        "approval": {"by": "alice"},
    }
    assert waiting(state_url, "T-42") is None

    # the same approval delivered again: the stored reply, no second resume
    again = post(runtime, approval("a-1", "T-42"))
    assert (again.status_code, again.json()) == (200, resumed.json())
    # another approval for the same key: the wait is over, an ordinary event
    late = post(runtime, approval("a-2", "T-42"))
    assert (late.status_code, late.json()) == (
        200,
        {"ordinary": "test.approved", "rousekey": "T-42"},
    )
    assert resumes(runs) == ["resumed a-1"]
    assert metric(runtime, "rouse_invocations_total{") == [
        'rouse_invocations_total{agent="support",outcome="ok",skill="escalate"} 2.0',
        'rouse_invocations_total{agent="support",outcome="error",skill="escalate"} 0.0',
        'rouse_invocations_total{agent="support",outcome="budget_exceeded",skill="escalate"} 0.0',
        'rouse_invocations_total{agent="support",outcome="duplicate",skill="escalate"} 2.0',
        'rouse_invocations_total{agent="support",outcome="suspended",skill="escalate"} 1.0',
        'rouse_invocations_total{agent="support",outcome="cancelled",skill="escalate"} 0.0',
    ]
    assert log_lines(runtime, "resumed") == [("a-1", "test.approved", "T-42")]


def test_unknown_key_is_an_ordinary_event(runtime: RunningRuntime, runs: Path) -> None:
    response = post(runtime, approval("a-9", "NO-SUCH-TICKET"))
    assert (response.status_code, response.json()) == (
        200,
        {"ordinary": "test.approved", "rousekey": "NO-SUCH-TICKET"},
    )
    assert resumes(runs) == []


def test_failed_resume_is_retried_and_resumes(
    runtime: RunningRuntime, state_url: str, runs: Path
) -> None:
    assert post(runtime, ticket("t-2", "T-7")).status_code == 202
    failed = post(runtime, approval("a-3", "T-7", {"fail": True}))
    assert failed.status_code == 500
    assert waiting(state_url, "T-7") is not None  # kept for the broker's retry
    retried = post(runtime, approval("a-4", "T-7"))
    assert retried.status_code == 200
    assert retried.json()["checkpoint"] == {"ticket": "T-7", "stage": "awaiting approval"}
    assert resumes(runs) == ["resumed a-4"]


def test_budget_applies_on_resume(runtime: RunningRuntime, state_url: str, runs: Path) -> None:
    assert post(runtime, ticket("t-3", "T-8")).status_code == 202
    stopped = post(runtime, approval("a-5", "T-8", {"steps": 10}))  # ROUSE_MAX_STEPS=3
    assert stopped.status_code == 200
    assert stopped.headers["ce-type"] == "dev.rouse.budget.exceeded"
    assert {k: stopped.json()[k] for k in ("limit", "used", "max")} == {
        "limit": "steps",
        "used": 4,
        "max": 3,
    }
    # a budget stop is final (not retried), so the wait is consumed
    assert waiting(state_url, "T-8") is None
    assert resumes(runs) == ["resumed a-5"]


def test_resume_in_progress_elsewhere_is_409(
    runtime: RunningRuntime, state_url: str, runs: Path
) -> None:
    assert post(runtime, ticket("t-4", "T-9")).status_code == 202
    record_id = waiting(state_url, "T-9")["id"]
    claim_key = resume_claim_key(Scope("default", AGENT), SKILL, record_id)
    assert store_call(state_url, "claim", claim_key, "other-pod", 60.0).state == "claimed"
    busy = post(runtime, approval("a-6", "T-9"))
    assert busy.status_code == 409
    assert busy.json()["error"] == "resume in progress"
    assert store_call(state_url, "release", claim_key, "other-pod") is True
    retried = post(runtime, approval("a-6", "T-9"))  # the broker retries a 409
    assert retried.status_code == 200
    assert resumes(runs) == ["resumed a-6"]


def test_sync_skill_suspends_through_ctx_run(state_url: str, runs: Path) -> None:
    rt = start_runtime(runtime_env(state_url, runs, "escalate_sync"), HANDLERS)
    try:
        assert post(rt, ticket("t-5", "T-10")).status_code == 202
        assert waiting(state_url, "T-10")["checkpoint"] == {"sync": True}
        resumed = post(rt, approval("a-7", "T-10"))
        assert resumed.status_code == 200
        assert resumed.json()["checkpoint"] == {"sync": True}
    finally:
        rt.stop()
    assert resumes(runs) == ["resumed a-7"]


def test_concurrent_approvals_on_two_pods_resume_once(
    redis_server: RedisServer, runs: Path
) -> None:
    url = redis_server.url
    pods = [start_runtime(runtime_env(url, runs), HANDLERS) for _ in range(2)]
    try:
        assert post(pods[0], ticket("t-6", "T-11")).status_code == 202

        async def both() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                sends = []
                for n, pod in enumerate(pods):
                    headers, body = approval(f"c-{n}", "T-11", {"sleep": 0.5})
                    sends.append(client.post(pod.url, headers=headers, content=body))
                return list(await asyncio.gather(*sends))

        answers = asyncio.run(both())
        statuses = sorted(r.status_code for r in answers)
        resumed_answers = [r for r in answers if r.status_code == 200 and "checkpoint" in r.json()]
        assert len(resumed_answers) == 1, [(r.status_code, r.text) for r in answers]
        # the other one is busy (409, retried later) or already an ordinary event
        assert statuses in ([200, 409], [200, 200])
        assert len(resumes(runs)) == 1
        assert waiting(url, "T-11") is None
    finally:
        for pod in pods:
            pod.stop()
