"""OpenTelemetry in one real rouse-runtime process, exporting to a real OTLP receiver.

The span shapes of budget stops, failures, tool calls and request parameters; the
refusal of a transport the runtime does not ship; nothing imported when off.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rouse_runtime.runs.ids import root_run_id
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.otlp import Receiver, start_otlp_receiver
from rouse_testing.runtime import RunningRuntime, start_runtime
from rouse_testing.wait import wait_until

HANDLERS = Path(__file__).parent / "runtime_handlers"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def llm() -> Iterator[FakeLLM]:
    server = start_openai_server(prompt_tokens=120, completion_tokens=30)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = start_otlp_receiver()
    yield found
    found.stop()


@pytest.fixture(scope="module")
def runtime(llm: FakeLLM, receiver: Receiver) -> Iterator[RunningRuntime]:
    env = {
        "ROUSE_HANDLER": "rouse_test_skills:skill",
        "ROUSE_AGENT": "acme",
        "ROUSE_SKILL": "work",
        "ROUSE_MAX_TOOL_CALLS": "2",
        "ROUSE_MAX_TOKENS": "250",
        "ROUSE_LLM_BASE_URL": llm.url,
        "ROUSE_LLM_MODEL": "m1",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{receiver.url}/v1/traces",
        "OTEL_SERVICE_NAME": "acme-work-traced",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    rt = start_runtime(env, HANDLERS)
    yield rt
    rt.stop()


def send(rt: RunningRuntime, type_: str, id_: str) -> httpx.Response:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": id_,
        "ce-source": "/tests/otel",
        "ce-type": type_,
        "ce-traceparent": f"00-{TRACE_ID}-{PARENT}-01",
        "content-type": "application/json",
    }
    return httpx.post(rt.url, headers=headers, content=b"{}", timeout=30)


def spans_of(receiver: Receiver, event_id: str, count: int) -> list[dict[str, Any]]:
    """The invocation span of event_id and its children (count spans in all)."""

    def found() -> list[dict[str, Any]] | None:
        with receiver.lock:
            spans = list(receiver.spans)
        root = [s for s in spans if s["attributes"].get("cloudevents.event_id") == event_id]
        if not root:
            return None
        family = root + [s for s in spans if s["parent_span_id"] == root[0]["span_id"]]
        return family if len(family) >= count else None

    return wait_until(found, timeout=20, what=f"{count} spans of event {event_id}")


def test_a_budget_stop_is_on_the_span_and_the_reply_continues_it(
    runtime: RunningRuntime, receiver: Receiver
) -> None:
    response = send(runtime, "test.tokens", "tok-1")
    assert response.headers["ce-type"] == "dev.rouse.budget.exceeded"
    invocation, *calls = spans_of(receiver, "tok-1", 3)
    assert invocation["trace_id"] == TRACE_ID and invocation["parent_span_id"] == PARENT
    assert invocation["resource"]["service.name"] == "acme-work-traced"
    attrs = invocation["attributes"]
    assert (attrs["rouse.outcome"], attrs["rouse.budget.outcome"], attrs["rouse.budget.limit"]) == (
        "budget_exceeded",
        "exceeded",
        "tokens",
    )
    assert attrs["rouse.run.id"] == root_run_id("/tests/otel", "tok-1")  # the run it starts
    # The reply names this span as its parent, in the same trace.
    assert response.headers["ce-traceparent"] == f"00-{TRACE_ID}-{invocation['span_id']}-01"
    # Two calls of 150 tokens: the second crossed 250 after it had answered, so it is no error.
    assert [
        (c["name"], c["status"], c["attributes"]["gen_ai.usage.input_tokens"]) for c in calls
    ] == [
        ("chat m1", 0, 120),
        ("chat m1", 0, 120),
    ]


def test_a_failed_skill_marks_its_span(runtime: RunningRuntime, receiver: Receiver) -> None:
    assert send(runtime, "test.fail", "fail-1").status_code == 500
    (invocation,) = spans_of(receiver, "fail-1", 1)
    assert invocation["status"] == 2  # STATUS_CODE_ERROR
    assert invocation["attributes"]["error.type"] == "ValueError"
    assert invocation["attributes"]["rouse.outcome"] == "error"


def test_tool_calls_are_spans_until_the_limit(runtime: RunningRuntime, receiver: Receiver) -> None:
    assert send(runtime, "test.tools", "tools-1").headers["ce-type"] == "dev.rouse.budget.exceeded"
    invocation, *tools = spans_of(receiver, "tools-1", 3)
    assert [t["name"] for t in tools] == ["execute_tool search", "execute_tool search"]
    assert {t["attributes"]["gen_ai.operation.name"] for t in tools} == {"execute_tool"}
    assert invocation["attributes"]["rouse.budget.limit"] == "tool_calls"


def test_request_parameters_are_recorded(runtime: RunningRuntime, receiver: Receiver) -> None:
    assert send(runtime, "test.llm", "llm-1").status_code == 200
    _, call = spans_of(receiver, "llm-1", 2)
    assert call["attributes"]["gen_ai.request.temperature"] == 0
    assert call["kind"] == "CLIENT"


def test_a_transport_the_runtime_does_not_ship_is_refused() -> None:
    env = {
        "ROUSE_HANDLER": "rouse_test_skills:skill",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "PATH": "/usr/bin:/bin",
    }
    result = subprocess.run(
        [sys.executable, "-m", "rouse_runtime"],
        cwd=HANDLERS, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "OTEL_EXPORTER_OTLP_PROTOCOL='grpc' is not supported" in result.stderr


def test_nothing_of_opentelemetry_is_imported_when_off() -> None:
    code = (
        "import os, sys, rouse_runtime.__main__, rouse_runtime.server;"
        "from rouse_runtime.config import load_config;"
        "from rouse_runtime.telemetry import from_environ;"
        "env = {'ROUSE_HANDLER': 'm:f', 'OTEL_SERVICE_NAME': 'x'};"
        "assert from_environ(env, load_config(env)) is None;"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'google'))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, timeout=60, check=True, text=True
    )
    assert result.stdout.strip() == "[]"
