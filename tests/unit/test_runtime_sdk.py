"""ctx helpers against real servers: fan-out to an HTTP sink, LLM calls metered by usage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from rouse_runtime.events import derived_id
from rouse_runtime.runs.ids import root_run_id
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.runtime import HttpSink, RunningRuntime, start_runtime, start_sink

HANDLERS = Path(__file__).parent / "runtime_handlers"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def sink() -> Iterator[HttpSink]:
    server = start_sink()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = start_openai_server(
        prompt_tokens=1200, completion_tokens=300, content="triaged: urgent"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def runtime(sink: HttpSink, llm: FakeLLM) -> Iterator[RunningRuntime]:
    rt = start_runtime(
        {
            "ROUSE_HANDLER": "rouse_test_skills:skill",
            "ROUSE_AGENT": "support",
            "ROUSE_SKILL": "draft",
            "ROUSE_BROKER_URL": sink.url,
            "ROUSE_LLM_BASE_URL": llm.url,
            "ROUSE_LLM_API_KEY": "sk-test-key",
            "ROUSE_LLM_MODEL": "gpt-test",
            "ROUSE_LLM_PRICES": '{"gpt-test": {"input": 0.5, "output": 1.5}}',
        },
        HANDLERS,
    )
    yield rt
    rt.stop()


def post(rt: RunningRuntime, type_: str, id_: str, data: object) -> httpx.Response:
    return httpx.post(
        rt.url,
        headers={
            "ce-specversion": "1.0",
            "ce-id": id_,
            "ce-source": "/tests/sdk",
            "ce-type": type_,
            "ce-traceparent": TRACEPARENT,
            "content-type": "application/json",
        },
        content=json.dumps(data),
    )


def test_fan_out_reaches_the_broker_sink(runtime: RunningRuntime, sink: HttpSink) -> None:
    response = post(runtime, "test.fanout", "fan-1", {"n": 3})
    ids = [derived_id("support", "draft", "/tests/sdk", "fan-1", "emit", str(i)) for i in (1, 2, 3)]
    assert (response.status_code, response.json()) == (200, {"emitted": ids})
    received = []
    for got in sink.received:
        ce = {k: v for k, v in got.headers.items() if k.startswith("ce-") or k == "content-type"}
        assert ce.pop("ce-time")
        received.append((got.path, ce, json.loads(got.body)))
    assert received == [
        (
            "/",
            {
                "content-type": "application/json",
                "ce-specversion": "1.0",
                "ce-id": ids[i],
                "ce-source": "/agents/support/draft",
                "ce-type": "test.fanned",
                "ce-subject": f"item-{i}",
                "ce-traceparent": TRACEPARENT,
                "ce-rouserun": root_run_id("/tests/sdk", "fan-1"),  # the fan-out's run
            },
            {"i": i},
        )
        for i in range(3)
    ]


def test_llm_call_counts_tokens_and_cost(runtime: RunningRuntime, llm: FakeLLM) -> None:
    response = post(runtime, "test.llm", "llm-1", {})
    cost = (1200 * 0.5 + 300 * 1.5) / 1_000_000
    assert (response.status_code, response.json()) == (
        200,
        {
            "content": "triaged: urgent",
            "usage": {
                "steps": 0,
                "tool_calls": 0,
                "input_tokens": 1200,
                "output_tokens": 300,
                "cost_usd": cost,
            },
        },
    )
    assert llm.requests == [
        {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    ]
    assert llm.headers[0]["authorization"] == "Bearer sk-test-key"
    text = httpx.get(f"{runtime.url}/metrics").text
    wanted = {
        'rouse_tokens_total{agent="support",kind="input",model="gpt-test",skill="draft"} 1200.0',
        'rouse_tokens_total{agent="support",kind="output",model="gpt-test",skill="draft"} 300.0',
        f'rouse_cost_usd_total{{agent="support",model="gpt-test",skill="draft"}} {cost}',
    }
    assert wanted <= set(text.splitlines())


def test_emit_without_broker_fails_the_invocation_clearly(tmp_path: Path) -> None:
    rt = start_runtime({"ROUSE_HANDLER": "rouse_test_skills:skill"}, HANDLERS)
    try:
        response = post(rt, "test.fanout", "nob-1", {"n": 1})
        assert (response.status_code, response.json()) == (
            500,
            {
                "error": "skill failed",
                "detail": "EmitError: ctx.emit needs ROUSE_BROKER_URL (where extra events go)",
            },
        )
    finally:
        rt.stop()


def test_handler_that_cannot_be_imported(tmp_path: Path) -> None:
    (tmp_path / "broken_skills.py").write_text("import does_not_exist_anywhere\n")
    rt = start_runtime({"ROUSE_HANDLER": "broken_skills:run"}, tmp_path)
    try:
        reason = (
            "cannot import module 'broken_skills' (ROUSE_HANDLER=broken_skills:run): "
            "ModuleNotFoundError: No module named 'does_not_exist_anywhere'"
        )
        ready = httpx.get(f"{rt.url}/readyz")
        assert (ready.status_code, ready.json()) == (
            503,
            {"error": "handler not loaded", "detail": reason},
        )
        assert httpx.get(f"{rt.url}/healthz").status_code == 200
        event = post(rt, "test.echo", "b-1", {})
        assert (event.status_code, event.json()) == (
            503,
            {"error": "handler not loaded", "detail": reason},
        )
        httpx.get(f"{rt.url}/readyz")
        errors = [json.loads(line) for line in rt.logs().splitlines() if '"level": "error"' in line]
        assert [(e["logger"], e["msg"]) for e in errors] == [
            ("rouse.runtime", f"handler not loaded: {reason}")
        ]
        assert "Traceback" not in rt.logs()
        assert rt.proc.poll() is None
    finally:
        rt.stop()


def test_missing_attribute_in_handler_module(tmp_path: Path) -> None:
    (tmp_path / "few_skills.py").write_text("def other(event, ctx):\n    return None\n")
    rt = start_runtime({"ROUSE_HANDLER": "few_skills:run"}, tmp_path)
    try:
        assert httpx.get(f"{rt.url}/readyz").json() == {
            "error": "handler not loaded",
            "detail": "module 'few_skills' has no attribute 'run' (ROUSE_HANDLER=few_skills:run)",
        }
    finally:
        rt.stop()
