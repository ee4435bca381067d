"""What the operator keeps per Agent stays small (issue 14: memory grew with every Agent)."""

from __future__ import annotations

from collections.abc import Iterator

import kopf
import pytest
from rouse_operator import handlers


def agent_body(name: str) -> dict[str, object]:
    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {
            "name": name, "namespace": "ns", "uid": "u1", "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:image": {}}}}],
        },
        "spec": {"image": "i:1", "skills": [{"name": "s", "handler": "m:f"}]},
        "status": {"phase": "Pending"},
    }  # fmt: skip


@pytest.fixture
def fresh_state() -> Iterator[None]:
    saved = handlers.STATE
    handlers.STATE = handlers._State()
    yield
    handlers.STATE = saved


@pytest.mark.usefixtures("fresh_state")
async def test_the_policy_loop_keeps_each_agent_without_its_managed_fields() -> None:
    """The body kept for every Agent (the policy loop's input) drops managedFields, the
    larger half of it in memory, and keeps all the policy loop and Events read."""
    raw = agent_body("bot")
    await handlers.agent_event(
        event={"type": "ADDED", "object": raw}, body=kopf.Body(raw), namespace="ns", name="bot"
    )
    kept = handlers.STATE.bodies[("ns", "bot")]
    assert "managedFields" not in kept["metadata"]
    assert kept["spec"] == raw["spec"] and kept["status"] == raw["status"]
    assert {k: v for k, v in kept["metadata"].items()} == {
        "name": "bot", "namespace": "ns", "uid": "u1", "resourceVersion": "7",
    }  # fmt: skip
    assert "managedFields" in raw["metadata"]  # kopf's own copy is not changed
