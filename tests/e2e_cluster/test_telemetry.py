"""Issue 16 on the real node: the support-triage chain is one trace through the real Knative broker.

The skills export their spans over OTLP (the Agent's `spec.env` names the endpoint) to a
real OTLP receiver running as a pod (tests/rouse_testing/otlp.py, decoding the protobuf with
opentelemetry-proto, which the runtime image carries); the model is the OpenAI-protocol pod.
The ticket enters with a `traceparent` of ours: the broker hands it to triage unchanged, and
each skill's reply (and draft's `ctx.emit`) carries its own span's context through the broker,
so the three skills' spans are parent and child in that one trace. The event display (the
broker's other subscriber) shows the `traceparent` each event had in the broker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from rouse_testing.cluster import REPO_ROOT
from rouse_testing.node import (
    Node,
    PortForward,
    event_display_log,
    script,
    script_pod,
    send,
    skills_serve_with,
)
from rouse_testing.wait import wait_until

ROUSE_NAMESPACE = "rouse-system"
AGENT = "support-triage"
TRACE_ID = uuid.uuid4().hex
TRACEPARENT = f"00-{TRACE_ID}-{uuid.uuid4().hex[:16]}-01"
MODEL_ANSWER = json.dumps({"category": "outage", "priority": "urgent"})  # urgent: escalate runs
TESTING = REPO_ROOT / "tests" / "rouse_testing"
CHAIN = {
    "created": "process com.example.ticket.created",
    "triaged": "process com.example.ticket.triaged",
    "urgent": "process com.example.ticket.urgent",
}


@pytest.fixture(scope="module")
def rouse(real_node: Node) -> str:
    script(real_node, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    return ROUSE_NAMESPACE


@pytest.fixture(scope="module")
def traced(real_node: Node, rouse: str) -> Iterator[str]:
    """examples/support-triage by example.sh, then given a model and an OTLP endpoint."""
    namespace = f"otel-{uuid.uuid4().hex[:6]}"
    script(real_node, "example.sh", "--namespace", namespace, "--agent", AGENT, "--assert")
    model = script_pod(
        "model",
        TESTING / "openai_server.py",
        ["--host", "0.0.0.0", "--port", "8080", "--content", MODEL_ANSWER],
        8080,
    )
    receiver = script_pod(
        "otlp", TESTING / "otlp.py", ["--host", "0.0.0.0", "--port", "4318"], 4318
    )
    real_node.apply([*model, *receiver], namespace)
    for name in ("model", "otlp"):
        real_node.kubectl(
            "-n", namespace, "rollout", "status", f"deployment/{name}", "--timeout=120s"
        )
    agent = real_node.get("agent", AGENT, namespace)
    assert agent is not None
    env = [
        *agent["spec"]["env"],
        {"name": "ROUSE_LLM_BASE_URL", "value": f"http://model.{namespace}.svc.cluster.local/v1"},
        {"name": "ROUSE_LLM_MODEL", "value": "test-model"},
        {
            "name": "OTEL_EXPORTER_OTLP_ENDPOINT",
            "value": f"http://otlp.{namespace}.svc.cluster.local",
        },
        {"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "200"},
    ]
    # Without the warm pool: its weekday schedule would roll Revisions mid-test.
    # One pod per skill kept up: nothing scales to zero mid-test, so its log stays readable.
    skills = [{**s, "scaling": {**s.get("scaling", {}), "min": 1}} for s in agent["spec"]["skills"]]
    patch = {"spec": {"env": env, "warmPool": None, "skills": skills}}
    real_node.kubectl(
        "-n", namespace, "patch", "agent", AGENT, "--type=merge", "-p", json.dumps(patch)
    )
    wait_until(
        lambda: skills_serve_with(real_node, namespace, AGENT, "OTEL_EXPORTER_OTLP_ENDPOINT"),
        timeout=300,
        interval=2,
        what="every skill's latest Revision (with the OTLP endpoint) Ready",
    )
    yield namespace
    real_node.delete_namespace(namespace)


def diagnose(running: Node, namespace: str) -> str:
    """What the receiver got, what the broker carried and what the skills said."""
    got = [
        (s["trace_id"], s["name"], s["parent_span_id"]) for s in received_spans(running, namespace)
    ]
    parts = [f"our trace {TRACE_ID}; spans received: {got}"]
    parts.append("event display:\n" + event_display_log(running, namespace)[-4000:])
    for skill in ("triage", "draft", "escalate"):
        logs = running.kubectl(
            "-n", namespace, "logs", "--tail=30", "-c", "skill",
            "-l", f"serving.knative.dev/service={AGENT}-{skill}", check=False,
        )  # fmt: skip
        parts.append(f"{skill} log:\n{logs.stdout[-3000:]}{logs.stderr[-500:]}")
    receiver = running.kubectl("-n", namespace, "logs", "deployment/otlp", "--tail=20", check=False)
    parts.append(f"receiver log tail:\n{receiver.stdout[-2000:]}{receiver.stderr[-500:]}")
    return "\n".join(parts)


def received_spans(running: Node, namespace: str) -> list[dict[str, Any]]:
    out = running.kubectl("-n", namespace, "logs", "deployment/otlp").stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_the_chain_is_one_trace_through_the_knative_broker(
    real_node: Node, traced: str, broker: PortForward
) -> None:
    ticket = {"id": "T-otel", "customer": "Ada", "subject": "Site down", "body": "Checkout fails"}
    send(
        broker,
        traced,
        "com.example.ticket.created",
        ticket,
        extensions={"traceparent": TRACEPARENT},
    )

    def chain() -> dict[str, dict[str, Any]] | None:
        ours = [s for s in received_spans(real_node, traced) if s["trace_id"] == TRACE_ID]
        found = {name: s for s in ours for key, name in CHAIN.items() if s["name"] == name}
        tools = [s for s in ours if s["name"] == "execute_tool oncall.page"]
        if len(found) == len(CHAIN) and tools:
            return {**found, "tool": tools[0]}
        return None

    try:
        spans = wait_until(chain, timeout=240, interval=2, what="the chain's spans")
    except pytest.fail.Exception:
        pytest.fail(
            f"the chain's spans did not reach the OTLP receiver\n{diagnose(real_node, traced)}"
        )
    triage, draft, escalate = (spans[CHAIN[k]] for k in ("created", "triaged", "urgent"))
    # Our traceparent reached triage through the broker: its span is our span's child.
    assert triage["parent_span_id"] == TRACEPARENT.split("-")[2]
    assert draft["parent_span_id"] == triage["span_id"]  # triage's reply, through the broker
    assert escalate["parent_span_id"] == draft["span_id"]  # draft's ctx.emit, through the broker
    assert spans["tool"]["parent_span_id"] == escalate["span_id"]
    # One run: the ticket's, carried on by the reply and the emitted event.
    assert len({s["attributes"]["rouse.run.id"] for s in (triage, draft, escalate)}) == 1
    for span in (triage, draft, escalate):
        assert span["kind"] == "CONSUMER"
        assert span["attributes"]["rouse.namespace"] == traced
    chats = [s for s in received_spans(real_node, traced) if s["name"] == "chat test-model"]
    assert {c["parent_span_id"] for c in chats if c["trace_id"] == TRACE_ID} == {
        triage["span_id"],
        draft["span_id"],
    }
    # What the broker carried, as its other subscriber saw it: each event's traceparent names
    # the span of the skill that sent it.
    display = event_display_log(real_node, traced)
    assert f"traceparent: 00-{TRACE_ID}-{triage['span_id']}-01" in display
    assert f"traceparent: 00-{TRACE_ID}-{draft['span_id']}-01" in display
