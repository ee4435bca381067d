"""The live view's text: the table of an idle agent, the budget line, plain log lines off a TTY."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

from rouse_runtime.local.dev import DevOptions, LocalMode
from rouse_runtime.local.view import View, budget_line
from rouse_runtime.policies import budget
from rouse_runtime.policies.budget import BudgetSpec, Usage

REPO = Path(__file__).resolve().parents[2]
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def test_table_of_an_agent_with_no_processes(tmp_path: Path) -> None:
    view = View(stream=io.StringIO(), tty=True)
    options = DevOptions(agent_file=REPO / "examples/support-triage/agent.yaml", state_dir=tmp_path)
    LocalMode.create(options, view)  # builds the pools and the broker, starts nothing
    view.log("hello")
    lines = [ANSI.sub("", line).rstrip() for line in view.render().splitlines()]
    assert lines[:8] == [
        "SKILL     READY  START  INFLIGHT  COLD  DONE  RETRY  DEAD  TOKENS  COST $  WARM  PARKED",
        "triage    0      0      0         0     0     0      0     0       0.0000  0     0",
        "draft     0      0      0         0     0     0      0     0       0.0000  0     0",
        "escalate  0      0      0         0     0     0      0     0       0.0000  0     0",
        "refund    0      0      0         0     0     0      0     0       0.0000  0     0",
        "digest    0      0      0         0     0     0      0     0       0.0000  0     0",
        "ask       0      0      0         0     0     0      0     0       0.0000  0     0",
        "budget (since start): 0/500000 tokens, $0.0000/$5.00",
    ]
    assert lines[8] == "--- log ---"
    assert lines[9].endswith(" hello")
    assert view.stream.getvalue() == ""  # on a TTY lines wait for the redraw


def test_plain_log_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    view = View(stream=out, tty=False)
    view.log("one")
    view.log("two")
    assert [line.split(" ", 1)[1] for line in out.getvalue().splitlines()] == ["one", "two"]


def test_budget_line_without_a_daily_budget() -> None:
    assert budget_line({"spec": {}}, 12, 0.5) == "budget (since start): 12 tokens, $0.5000"


def test_budget_line_says_when_the_daily_budget_is_spent() -> None:
    agent = {"spec": {"budget": {"daily": {"tokens": 100, "costUSD": 1}}}}
    spec = BudgetSpec.from_agent(agent["spec"])
    now = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    within = budget.decide(spec, Usage(tokens=50, cost_usd=0.5), None, now)
    assert budget_line(agent, 99, 0.5, within) == "budget today: 50/100 tokens, $0.5000/$1.00"
    spent = budget.decide(spec, Usage(tokens=120, cost_usd=0.5), within, now)
    assert budget_line(agent, 99, 0.5, spent, parked=3) == (
        "budget today: 120/100 tokens, $0.5000/$1.00"
        " - SUSPENDED (TokensExhausted): 3 event(s) parked until 2026-01-06 00:00 UTC"
    )
    rejecting = budget.decide(
        BudgetSpec.from_agent({"budget": {"daily": {"tokens": 100}, "onExhausted": "reject"}}),
        Usage(tokens=100, cost_usd=0),
        None,
        now,
    )
    assert budget_line(agent, 0, 0, rejecting) == (
        "budget today: 100/100 tokens, $0.0000/$1.00"
        " - SUSPENDED (TokensExhausted): skills answer 429 until 2026-01-06 00:00 UTC"
    )
