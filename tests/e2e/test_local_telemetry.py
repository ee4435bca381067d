"""OpenTelemetry in local mode: the support-triage chain is one trace at a real OTLP receiver.

The receiver (rouse_testing.otlp) decodes the OTLP protobuf the SDK's exporter sends;
the model is the fake OpenAI-compatible server. Every skill process is a real
`rouse-runtime`, so the trace crosses three processes through the local broker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from localdev import rouse, start_dev
from rouse_testing.openai_server import start_openai_server
from rouse_testing.otlp import start_otlp_receiver
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
AGENT = REPO / "examples/support-triage/agent.yaml"
ANSWER = '{"category": "billing", "priority": "urgent"}'  # urgent: draft emits, escalate runs
TICKET = {"id": "T-9", "customer": "Ada", "subject": "Hello", "body": "Just saying hi"}
SCHEMA = "https://opentelemetry.io/schemas/1.41.0"


def send_ticket(url: str) -> dict[str, Any]:
    sent = rouse(
        "send", "com.example.ticket.created", "--data", json.dumps(TICKET),
        "--broker", url, "--wait", "--json",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr
    answer: dict[str, Any] = json.loads(sent.stdout)
    return answer


def test_the_chain_is_one_trace_with_genai_spans_and_metrics(tmp_path: Path) -> None:
    llm = start_openai_server(prompt_tokens=100, completion_tokens=20, content=ANSWER)
    receiver = start_otlp_receiver()
    env = {
        "ROUSE_LLM_BASE_URL": llm.url,
        "ROUSE_LLM_MODEL": "test-model",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: spans leave soon, not after 5 s
        "OTEL_METRIC_EXPORT_INTERVAL": "500",
    }
    running = start_dev(AGENT, tmp_path / "state", env=env)
    try:
        chain = send_ticket(running.url)
        types = [e["type"] for e in chain["events"]]
        assert "com.example.ticket.escalated" in types, types

        def spans() -> dict[str, dict[str, Any]] | None:
            with receiver.lock:
                found = {s["name"]: s for s in receiver.spans}
            wanted = (
                "process com.example.ticket.created",
                "process com.example.ticket.triaged",
                "process com.example.ticket.urgent",
                "execute_tool oncall.page",
            )
            chats = [s for s in receiver.spans if s["name"] == "chat test-model"]
            return found if all(w in found for w in wanted) and len(chats) == 2 else None

        found = wait_until(spans, timeout=30, what=f"the chain's spans\n{running.logs()[-3000:]}")
    finally:
        assert running.stop() == 0
        llm.stop()
    receiver.stop()

    triage = found["process com.example.ticket.created"]
    draft = found["process com.example.ticket.triaged"]
    escalate = found["process com.example.ticket.urgent"]
    tool = found["execute_tool oncall.page"]
    chats = [s for s in receiver.spans if s["name"] == "chat test-model"]

    # One trace, the chain's: the broker's trace id, through replies and ctx.emit.
    trace_id = chain["chain"]
    assert {s["trace_id"] for s in receiver.spans} == {trace_id}
    assert draft["parent_span_id"] == triage["span_id"]  # triage's reply carried its span
    assert escalate["parent_span_id"] == draft["span_id"]  # draft's ctx.emit carried its span
    assert tool["parent_span_id"] == escalate["span_id"]
    assert sorted(c["parent_span_id"] for c in chats) == sorted(
        [triage["span_id"], draft["span_id"]]
    )
    assert {triage["resource"]["service.name"], escalate["resource"]["service.name"]} == {
        "support-triage-triage",
        "support-triage-escalate",
    }

    # One run: the ticket's, carried on by the reply and the emitted event.
    assert len({s["attributes"]["rouse.run.id"] for s in (triage, draft, escalate)}) == 1
    for span, skill in ((triage, "triage"), (draft, "draft"), (escalate, "escalate")):
        assert span["kind"] == "CONSUMER"
        assert span["schema_url"] == SCHEMA
        attrs = span["attributes"]
        assert (attrs["rouse.agent"], attrs["rouse.skill"], attrs["rouse.namespace"]) == (
            "support-triage",
            skill,
            "default",
        )
        assert attrs["rouse.cold_start"] is True
        assert (attrs["rouse.outcome"], attrs["rouse.budget.outcome"]) == ("ok", "within")
        assert attrs["cloudevents.event_type"] == span["name"].removeprefix("process ")
        assert attrs["messaging.operation.type"] == "process"

    for chat in chats:
        attrs = chat["attributes"]
        assert chat["kind"] == "CLIENT"
        assert {k: attrs[k] for k in attrs if k.startswith("gen_ai.")} == {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "test-model",
            "gen_ai.response.model": "test-model",
            "gen_ai.response.id": attrs["gen_ai.response.id"],
            "gen_ai.response.finish_reasons": ["stop"],
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
        }
        assert attrs["gen_ai.response.id"].startswith("chatcmpl-")
        assert (attrs["server.address"], attrs["server.port"]) == (
            "127.0.0.1",
            int(llm.url.rsplit(":", 1)[1].split("/")[0]),
        )
    assert tool["attributes"]["gen_ai.operation.name"] == "execute_tool"
    assert tool["attributes"]["gen_ai.tool.name"] == "oncall.page"

    # The GenAI histograms, exported when each skill process stopped (if not before).
    usage = [p for p in receiver.points if p["name"] == "gen_ai.client.token.usage"]
    by_kind: dict[str, float] = {}
    for point in usage:
        kind = point["attributes"]["gen_ai.token.type"]
        by_kind[kind] = max(by_kind.get(kind, 0), point["sum"])  # cumulative: the last is largest
    assert by_kind == {"input": 100, "output": 20}  # per process: triage and draft each one call
    assert {p["resource"]["rouse.skill"] for p in usage} == {"triage", "draft"}
    assert usage[0]["unit"] == "{token}" and usage[0]["bounds"][:3] == [1, 4, 16]
    durations = [p for p in receiver.points if p["name"] == "gen_ai.client.operation.duration"]
    assert durations and all(p["unit"] == "s" and p["count"] >= 1 for p in durations)
    assert durations[0]["attributes"]["gen_ai.request.model"] == "test-model"


def test_without_otel_variables_nothing_is_sent(tmp_path: Path) -> None:
    llm = start_openai_server(prompt_tokens=100, completion_tokens=20, content=ANSWER)
    # On the SDK's default endpoint (localhost:4318): an exporter left on would reach it.
    receiver = start_otlp_receiver(port=4318)
    env = {
        "ROUSE_LLM_BASE_URL": llm.url,
        "ROUSE_LLM_MODEL": "test-model",
        "OTEL_SERVICE_NAME": "not-an-endpoint",  # other OTEL_* variables do not switch it on
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    running = start_dev(AGENT, tmp_path / "state", env=env)
    try:
        chain = send_ticket(running.url)
        assert "com.example.ticket.escalated" in [e["type"] for e in chain["events"]]
    finally:
        # Stopped: every skill process has exited, so whatever it would export is out.
        assert running.stop() == 0
        llm.stop()
    receiver.stop()
    assert receiver.requests == {"traces": 0, "metrics": 0}
    assert receiver.spans == []
