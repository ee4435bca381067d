"""The support-triage example with a model configured: ctx.llm calls a real OpenAI-compatible server,
and the tokens and cost it reports show up in local mode's figures (the live view's budget line)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from localdev import rouse, start_dev
from rouse_testing.openai_server import start_openai_server
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
ANSWER = '{"category": "billing", "priority": "urgent"}'


def test_model_decides_the_triage_and_its_tokens_are_counted(tmp_path: Path) -> None:
    llm = start_openai_server(prompt_tokens=100, completion_tokens=20, content=ANSWER)
    env = {
        "ROUSE_LLM_BASE_URL": llm.url,
        "ROUSE_LLM_MODEL": "test-model",
        "ROUSE_LLM_PRICES": json.dumps({"test-model": {"input": 1.0, "output": 2.0}}),
    }
    running = start_dev(REPO / "examples/support-triage/agent.yaml", tmp_path / "state", env=env)
    try:
        ticket = {
            "id": "T-7",
            "subject": "Hello",
            "body": "Just saying hi",
        }  # the rules: general/normal
        sent = rouse(
            "send", "com.example.ticket.created", "--data", json.dumps(ticket),
            "--broker", running.url, "--wait", "--json",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr + running.logs()[-3000:]
        by_type = {e["type"]: e["data"] for e in json.loads(sent.stdout)["events"]}
        triaged = by_type["com.example.ticket.triaged"]
        assert (triaged["category"], triaged["priority"], triaged["method"]) == (
            "billing",
            "urgent",
            "model",
        )
        drafted = by_type["com.example.reply.drafted"]
        assert (drafted["reply"], drafted["method"]) == (ANSWER, "model")
        assert by_type["com.example.ticket.escalated"]["ticketId"] == "T-7"
        assert len(llm.requests) == 2
        assert "Just saying hi" in llm.requests[0]["messages"][1]["content"]

        def usage() -> dict[str, float] | None:
            skills = running.get("/skills")["skills"]
            tokens = sum(s["usage"].get("tokens", 0) for s in skills)
            cost = sum(s["usage"].get("costUSD", 0) for s in skills)
            return {"tokens": tokens, "cost": round(cost, 8)} if tokens >= 240 else None

        # two calls x (100 + 20) tokens; cost 2 x (100 x $1 + 20 x $2) / 1M
        assert wait_until(usage, timeout=30, what="token usage scraped from the skills") == {
            "tokens": 240,
            "cost": 0.00028,
        }
    finally:
        assert running.stop() == 0
        llm.stop()


def test_a_budget_stop_is_a_reply_and_is_not_retried(tmp_path: Path) -> None:
    llm = start_openai_server(prompt_tokens=100, completion_tokens=20, content=ANSWER)
    example = REPO / "examples/support-triage"
    shutil.copytree(example / "support_triage", tmp_path / "agent/support_triage")
    agent = yaml.safe_load((example / "agent.yaml").read_text())
    agent["spec"]["budget"]["perInvocation"]["maxTokens"] = 50  # one call spends 120
    (tmp_path / "agent/agent.yaml").write_text(yaml.safe_dump(agent))
    env = {"ROUSE_LLM_BASE_URL": llm.url, "ROUSE_LLM_MODEL": "test-model"}
    running = start_dev(tmp_path / "agent/agent.yaml", tmp_path / "state", env=env)
    try:
        ticket = {"id": "T-8", "subject": "Hello", "body": "Just saying hi"}
        sent = rouse(
            "send", "com.example.ticket.created", "--data", json.dumps(ticket),
            "--broker", running.url, "--wait", "--json",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr + running.logs()[-3000:]
        events = json.loads(sent.stdout)["events"]
        delivery = events[0]["deliveries"][0]
        assert (
            delivery["skill"],
            delivery["outcome"],
            delivery["attempts"],
            delivery["replyType"],
        ) == (
            "triage",
            "replied",
            1,
            "dev.rouse.budget.exceeded",
        )
        assert [e["type"] for e in events] == [
            "com.example.ticket.created",
            "dev.rouse.budget.exceeded",
        ]
        assert events[1]["routedTo"] == []  # nothing subscribes: the chain stops there
        assert len(llm.requests) == 1
    finally:
        assert running.stop() == 0
        llm.stop()
