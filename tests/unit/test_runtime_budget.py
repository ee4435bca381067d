"""Per-invocation budgets through real HTTP: each limit stops the skill, checkpoints, replies 200."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rouse_runtime.events import derived_id
from rouse_runtime.runs.ids import root_run_id
from rouse_runtime.store.sqlite import SqliteStore
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.runtime import RunningRuntime, start_runtime
from rouse_testing.wait import wait_until

HANDLERS = Path(__file__).parent / "runtime_handlers"
SOURCE = "/tests/budget"
PRICES = '{"m1": {"input": 2.0, "output": 10.0}}'


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = start_openai_server(prompt_tokens=120, completion_tokens=30)
    yield server
    server.stop()


def limited(handler: str, llm: FakeLLM) -> dict[str, str]:
    return {
        "ROUSE_HANDLER": handler,
        "ROUSE_AGENT": "acme",
        "ROUSE_SKILL": "work",
        "ROUSE_MAX_STEPS": "3",
        "ROUSE_MAX_TOOL_CALLS": "2",
        "ROUSE_MAX_TOKENS": "250",
        "ROUSE_TIMEOUT_SECONDS": "1.5",
        "ROUSE_LLM_BASE_URL": llm.url,
        "ROUSE_LLM_MODEL": "m1",
        "ROUSE_LLM_PRICES": PRICES,
    }


@pytest.fixture(scope="module")
def runtime(llm: FakeLLM) -> Iterator[RunningRuntime]:
    rt = start_runtime(limited("rouse_test_skills:skill", llm), HANDLERS)
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def sync_runtime(llm: FakeLLM) -> Iterator[RunningRuntime]:
    rt = start_runtime(limited("rouse_test_skills:sync_skill", llm), HANDLERS)
    yield rt
    rt.stop()


def send(rt: RunningRuntime, type_: str, id_: str, data: bytes = b"{}") -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": SOURCE,
        "ce-type": type_,
        "content-type": "application/json",
    }
    return httpx.post(rt.url, headers=headers, content=data, timeout=30)


def checkpoint(rt: RunningRuntime, id_: str) -> Any:
    store = SqliteStore(str(rt.state_dir / "state.db"))
    try:
        return asyncio.run(store.load_checkpoint(f"default/acme/work/{SOURCE}/{id_}"))
    finally:
        asyncio.run(store.close())


def state_value(rt: RunningRuntime, key: str) -> Any:
    store = SqliteStore(str(rt.state_dir / "state.db"))
    try:
        return asyncio.run(store.get(f"default/acme/{key}"))
    finally:
        asyncio.run(store.close())


def expect_budget_reply(response: httpx.Response, id_: str, type_: str) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    headers = {k: v for k, v in response.headers.items() if k.startswith("ce-")}
    assert headers.pop("ce-time")
    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": derived_id("acme", "work", SOURCE, id_, "budget"),
        "ce-source": "/agents/acme/work",
        "ce-rouserun": root_run_id(SOURCE, id_),
        "ce-type": "dev.rouse.budget.exceeded",
    }
    data: dict[str, Any] = response.json()
    assert data["event"] == {"source": SOURCE, "id": id_, "type": type_}
    assert data["checkpoint"] == f"default/acme/work/{SOURCE}/{id_}"
    return data


def usage(
    steps: int = 0,
    tool_calls: int = 0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost: float = 0.0,
) -> dict[str, Any]:
    return {
        "steps": steps,
        "tool_calls": tool_calls,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cost_usd": cost,
    }


def test_steps_limit(runtime: RunningRuntime) -> None:
    data = expect_budget_reply(send(runtime, "test.steps", "st-1"), "st-1", "test.steps")
    assert {k: data[k] for k in ("limit", "used", "max", "usage")} == {
        "limit": "steps",
        "used": 4,
        "max": 3,
        "usage": usage(steps=4),
    }
    assert checkpoint(runtime, "st-1") == {"done": [1, 2, 3]}


def test_tool_calls_limit(runtime: RunningRuntime) -> None:
    data = expect_budget_reply(send(runtime, "test.tools", "tc-1"), "tc-1", "test.tools")
    assert {k: data[k] for k in ("limit", "used", "max", "usage")} == {
        "limit": "tool_calls",
        "used": 3,
        "max": 2,
        "usage": usage(tool_calls=3),
    }
    assert checkpoint(runtime, "tc-1") == {"calls": ["q0", "q1"]}


def test_tokens_limit(runtime: RunningRuntime, llm: FakeLLM) -> None:
    data = expect_budget_reply(send(runtime, "test.tokens", "tk-1"), "tk-1", "test.tokens")
    assert {k: data[k] for k in ("limit", "used", "max", "usage")} == {
        "limit": "tokens",
        "used": 300,
        "max": 250,
        "usage": usage(input_tokens=240, output_tokens=60, cost=0.00108),
    }
    assert checkpoint(runtime, "tk-1") == {"answers": ["hello from the model"]}


def test_timeout_limit_async(runtime: RunningRuntime) -> None:
    started = time.monotonic()
    data = expect_budget_reply(send(runtime, "test.slow", "to-1"), "to-1", "test.slow")
    elapsed = time.monotonic() - started
    assert (data["limit"], data["max"]) == ("timeout", 1.5)
    assert 1.3 <= data["used"] < 3 and elapsed < 10  # stops at 1.35 s (10% before); slack for load
    assert checkpoint(runtime, "to-1") == {"stage": "before sleep"}


def test_timeout_limit_sync_skill_stops_at_next_helper(sync_runtime: RunningRuntime) -> None:
    data = expect_budget_reply(
        send(sync_runtime, "test.slow", "sto-1", b'{"sleep": 2}'), "sto-1", "test.slow"
    )
    assert (data["limit"], data["max"]) == ("timeout", 1.5)
    assert checkpoint(sync_runtime, "sto-1") == {"stage": "sync before sleep"}


def test_timed_out_sync_skill_cannot_write_state_after_the_reply(
    sync_runtime: RunningRuntime, tmp_path: Path
) -> None:
    marker = tmp_path / "late-write"
    body = json.dumps({"sleep": 2, "marker": str(marker)}).encode()
    data = expect_budget_reply(send(sync_runtime, "test.slow-state", "sto-2", body), "sto-2",
                               "test.slow-state")  # fmt: skip
    assert data["limit"] == "timeout"
    seen = wait_until(lambda: marker.exists() and marker.read_text(), what="the skill's thread")
    assert seen == "refused: timeout"
    assert state_value(sync_runtime, "late") is None


def test_sync_skill_steps_limit(sync_runtime: RunningRuntime) -> None:
    data = expect_budget_reply(send(sync_runtime, "test.steps", "sst-1"), "sst-1", "test.steps")
    assert (data["limit"], data["used"], data["max"]) == ("steps", 4, 3)
    assert checkpoint(sync_runtime, "sst-1") == {"done": 3}


def test_sync_skill_uses_io_helpers_through_ctx_run(sync_runtime: RunningRuntime) -> None:
    response = send(sync_runtime, "test.echo", "se-1", b'{"x": 1}')
    assert (response.status_code, response.json()) == (
        200,
        {"sync_echo": {"x": 1}, "stored": {"x": 1}},
    )


def test_budget_stop_is_final_redelivery_answers_the_same(runtime: RunningRuntime) -> None:
    first = send(runtime, "test.steps", "st-again")
    second = send(runtime, "test.steps", "st-again")
    assert (second.status_code, second.headers["ce-id"], second.json()) == (
        200,
        first.headers["ce-id"],
        first.json(),
    )
    text = httpx.get(f"{runtime.url}/metrics").text
    labels = 'agent="acme",limit="steps",skill="work"'
    before = [
        line
        for line in text.splitlines()
        if line.startswith(f"rouse_budget_exceeded_total{{{labels}}}")
    ]
    assert before == [
        f"rouse_budget_exceeded_total{{{labels}}} 2.0"
    ]  # st-1 and st-again, not its redelivery
