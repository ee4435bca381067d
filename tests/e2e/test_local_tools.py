"""`rouse dev` with the tools example: skills call a real MCP server (the example's FastMCP
notes server, over streamable HTTP on loopback), and a destructive tool waits for approval."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from localdev import LocalDev, start_dev
from rouse_testing.process import stop_process
from rouse_testing.wait import free_port, wait_until

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tools"
TOKEN = "dev-token-e2e"


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[LocalDev]:
    agent_dir = tmp_path / "agent"
    shutil.copytree(EXAMPLE, agent_dir, ignore=shutil.ignore_patterns("__pycache__"))
    port = free_port()
    agent = yaml.safe_load((agent_dir / "agent.yaml").read_text())
    agent["spec"]["tools"][0]["url"] = f"http://127.0.0.1:{port}/mcp"
    (agent_dir / "agent.yaml").write_text(yaml.safe_dump(agent))
    server_log = (tmp_path / "notes.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "notes.server", "--port", str(port)],
        cwd=agent_dir,
        env={**os.environ, "NOTES_TOKEN": TOKEN},
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: server.poll() is None and httpx.get(f"http://127.0.0.1:{port}/mcp", timeout=2),
            what="the notes MCP server",
        )
        header = {"ROUSE_TOOL_NOTES__AUTHORIZATION": f"Bearer {TOKEN}"}
        running = start_dev(agent_dir / "agent.yaml", tmp_path / "state", env=header)
        yield running
        assert running.stop() == 0, running.logs()
        assert TOKEN not in running.logs()
    finally:
        stop_process(server, grace=5)


def reply(dev: LocalDev, event_type: str, data: Any, **attributes: str) -> dict[str, Any]:
    """The event the skill replied with to one sent event (the chain's second event)."""
    chain = dev.wait_chain(dev.post(event_type, data, **attributes).json()["chain"])
    assert len(chain["events"]) == 2, chain
    delivery = chain["events"][0]["deliveries"][0]
    assert delivery["outcome"] == "replied", (delivery, dev.logs()[-3000:])
    event: dict[str, Any] = chain["events"][1]
    return event


def test_skills_call_tools_and_a_destructive_one_waits_for_approval(dev: LocalDev) -> None:
    filed = reply(dev, "com.example.note.submitted", {"text": "call Ada back"})
    assert filed["type"] == "com.example.note.filed"
    assert filed["data"] == {"note": {"id": "n1", "text": "call Ada back"}, "related": []}
    second = reply(dev, "com.example.note.submitted", {"text": "call Bob"})
    assert second["data"]["related"] == ["n1"]

    asked = reply(dev, "com.example.notes.purge", {"id": "n1"})
    assert asked["type"] == "dev.rouse.tool.approval.requested"
    request = asked["data"]
    assert {k: request[k] for k in ("tool", "arguments", "reason")} == {
        "tool": "notes.delete_note",
        "arguments": {"id": "n1"},
        "reason": "destructive",
    }
    answer = request["answer"]
    assert answer["type"] == "dev.rouse.tools.purge.tool.approval"
    purged = reply(dev, answer["type"], {"approved": True}, rousekey=answer["rousekey"])
    assert purged["type"] == "com.example.notes.purged"
    assert purged["data"] == {"purged": True, "deleted": "n1"}
    assert reply(dev, "com.example.note.submitted", {"text": "call Cy"})["data"]["related"] == [
        "n2"
    ]

    asked = reply(dev, "com.example.notes.purge", {"id": "n2"})["data"]["answer"]
    kept = reply(
        dev,
        asked["type"],
        {"approved": False, "reason": "still needed"},
        rousekey=asked["rousekey"],
    )
    assert kept["data"] == {"purged": False, "id": "n2", "reason": "still needed"}
