"""The operator's per-Agent gauges: what the alert rules read, set from status and decisions."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import REGISTRY, generate_latest
from rouse_operator import agent_metrics
from rouse_runtime.policies.budget import BudgetDecision

RULES = Path(__file__).resolve().parents[2] / "charts" / "rouse" / "files" / "alerts.yaml"
SPEC = {
    "skills": [{"name": "triage"}, {"name": "draft"}],
    "warmPool": {"coldStartTarget": 0.1},
    "budget": {"daily": {"tokens": 1000, "costUSD": 2.0}},
}


def samples() -> dict[str, float]:
    """The rouse_agent_* samples of agent shop/support, by metric name."""
    text = generate_latest(REGISTRY).decode()
    found = re.findall(r'^(rouse_agent_\w+)\{agent="support",namespace="shop"\} (\S+)$', text, re.M)
    return {name: float(value) for name, value in found}


def decision(tokens: float, cost: float, suspended: bool) -> BudgetDecision:
    return BudgetDecision(
        within_budget=not suspended,
        suspended=suspended,
        nearly_spent=False,
        action="park" if suspended else "none",
        tokens_today=tokens,
        cost_today_usd=cost,
        resets_at=datetime(2026, 1, 2, tzinfo=UTC),
        reason="",
        message="",
    )


def test_gauges_follow_decisions_and_status_and_go_with_the_agent() -> None:
    agent_metrics.record_policy("shop", "support", SPEC, decision(300, 1.5, False), False)
    agent_metrics.record_status("shop", "support", {"skills": [{"ready": True}, {"ready": False}]})
    assert samples() == {
        "rouse_agent_budget_used_ratio": 0.75,  # the larger share: cost 1.5 of 2
        "rouse_agent_budget_exhausted": 0.0,
        "rouse_agent_cold_start_target": 0.1,
        "rouse_agent_skills_not_ready": 1.0,
        "rouse_agent_policy_inputs_unavailable": 0.0,
    }
    agent_metrics.record_policy("shop", "support", SPEC, decision(1000, 1.5, True), True)
    assert samples()["rouse_agent_budget_exhausted"] == 1.0
    assert samples()["rouse_agent_policy_inputs_unavailable"] == 1.0
    agent_metrics.forget("shop", "support")
    assert samples() == {}


def test_every_operator_series_the_rules_read_is_exported() -> None:
    used = set(re.findall(r"\brouse_agent_\w+", RULES.read_text()))
    exported = {gauge._name for gauge in agent_metrics.ALL}
    assert used and used <= exported, used - exported
