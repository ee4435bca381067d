"""`rouse dev`: a skill suspends until an approval event, scales to zero, and resumes in a new process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from localdev import LocalDev, start_dev
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.e2e

AGENT: dict[str, Any] = {
    "apiVersion": "rouse.dev/v1alpha1",
    "kind": "Agent",
    "metadata": {"name": "approvals"},
    "spec": {
        "image": "example.invalid/approvals:1",
        "skills": [
            {
                "name": "escalate",
                "handler": "suspend_skills:escalate",
                # The approval type is one of the skill's events: the broker brings it back here.
                "events": [{"type": "e2e.urgent"}, {"type": "e2e.approved"}],
                "reply": {"type": "e2e.escalated"},
                "scaling": {"max": 1, "retention": "1s"},
            }
        ],
    },
}


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[LocalDev]:
    agent_dir = tmp_path / "agent"
    agent_dir.mkdir()
    shutil.copy(Path(__file__).parent / "agents" / "suspend_skills.py", agent_dir)
    (agent_dir / "agent.yaml").write_text(yaml.safe_dump(AGENT))
    running = start_dev(agent_dir / "agent.yaml", tmp_path / "state")
    yield running
    assert running.stop() == 0, running.logs()


def test_suspend_scale_to_zero_and_resume_on_approval(dev: LocalDev) -> None:
    urgent = dev.wait_chain(dev.post("e2e.urgent", {"ticket": "T-1"}).json()["chain"])
    assert [e["type"] for e in urgent["events"]] == ["e2e.urgent"]  # 202: no reply yet
    assert urgent["events"][0]["deliveries"][0]["cold"] is True
    wait_until(
        lambda: dev.skill("escalate")["processes"] == [],
        timeout=30,
        what="the suspended skill to scale to zero",
    )

    answer = dev.post("e2e.approved", {"by": "alice"}, rousekey="T-1")
    approved = dev.wait_chain(answer.json()["chain"])
    assert approved["events"][0]["deliveries"][0]["cold"] is True
    reply = approved["events"][1]
    assert reply["type"] == "e2e.escalated"
    data = reply["data"]
    assert {k: data[k] for k in ("ticket", "approvedBy")} == {
        "ticket": "T-1",
        "approvedBy": "alice",
    }
    assert data["suspendedIn"] != data["resumedIn"]  # resumed from the store, not from memory

    # The same ticket approved again: nothing waits any more, an ordinary event (no reply).
    again = dev.wait_chain(dev.post("e2e.approved", {"by": "bob"}, rousekey="T-1").json()["chain"])
    assert [e["type"] for e in again["events"]] == ["e2e.approved"]
