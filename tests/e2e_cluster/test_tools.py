"""Issue 18 on the real node: a skill pod calls an MCP server pod through real Knative, and a
destructive tool waits for an approval event sent through the broker.

examples/tools is applied by hack/kind/example.sh (the script a kind user runs), which also
deploys the example's FastMCP notes server as a Deployment + Service with its token in a Secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from rouse_testing.node import Node, PortForward, display_events, example, script, send
from rouse_testing.wait import wait_until

ROUSE_NAMESPACE = "rouse-system"
AGENT = "tools"


@pytest.fixture(scope="module")
def tools(real_node: Node) -> Iterator[str]:
    """The chart, then the tools example, asserted by example.sh: a note filed through the notes
    server pod."""
    script(real_node, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    with example(real_node, AGENT) as namespace:
        yield namespace


def displayed(running: Node, namespace: str, event_type: str) -> list[Any]:
    """The data of every event of event_type the example's event display printed."""
    return [e["data"] for e in display_events(running, namespace) if e.get("type") == event_type]


def test_header_comes_from_the_secret_by_reference(real_node: Node, tools: str) -> None:
    ksvc = real_node.get("ksvc", "tools-file", tools)
    assert ksvc is not None
    env = {e["name"]: e for e in ksvc["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ROUSE_TOOL_NOTES__AUTHORIZATION"]["valueFrom"] == {
        "secretKeyRef": {"name": "notes-token", "key": "authorization"}
    }
    assert "Bearer" not in json.dumps(ksvc)
    filed = displayed(real_node, tools, "com.example.note.filed")
    assert filed and filed[0] == {"note": {"id": "n1", "text": "call Ada back"}, "related": []}


def test_destructive_tool_waits_for_approval_through_the_broker(
    real_node: Node, tools: str, broker: PortForward
) -> None:
    send(broker, tools, "com.example.notes.purge", {"id": "n1"})
    requests = wait_until(
        lambda: displayed(real_node, tools, "dev.rouse.tool.approval.requested"),
        timeout=180,
        interval=1,
        what="the approval request at the event display",
    )
    request = requests[0]
    assert isinstance(request, dict)
    assert (request["tool"], request["arguments"], request["reason"]) == (
        "notes.delete_note",
        {"id": "n1"},
        "destructive",
    )
    answer = request["answer"]
    assert isinstance(answer, dict) and answer["type"] == "dev.rouse.tools.purge.tool.approval"
    assert not displayed(real_node, tools, "com.example.notes.purged")  # nothing ran yet
    send(
        broker,
        tools,
        str(answer["type"]),
        {"approved": True, "by": "e2e"},
        extensions={"rousekey": str(answer["rousekey"])},
    )
    purged = wait_until(
        lambda: displayed(real_node, tools, "com.example.notes.purged"),
        timeout=180,
        interval=1,
        what="the purge's reply after the approval",
    )
    assert purged == [{"purged": True, "deleted": "n1"}]
    # the note is gone from the server: a new note that shares its first word relates to none
    send(broker, tools, "com.example.note.submitted", {"text": "call Bob"})
    wait_until(
        lambda: (
            {"note": {"id": "n2", "text": "call Bob"}, "related": []}
            in displayed(real_node, tools, "com.example.note.filed")
        ),
        timeout=180,
        interval=1,
        what="the second note, relating to no deleted note",
    )
