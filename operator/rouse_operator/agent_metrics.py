"""Per-Agent gauges that the shipped alert rules read (charts/rouse/files/alerts.yaml).

What only the operator knows, as series: the share of the daily budget used and
whether it is spent, the warm pool's cold-start target, skills not ready, and
whether the policies are holding their last decision for want of figures. The
runtime's and the ledger's own series (cold starts, parked events, dead letters)
come from the skills and the parking service.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Gauge
from rouse_runtime.policies.budget import BudgetDecision, BudgetSpec

from rouse_operator.policy_status import used_ratio

LABELS = ["namespace", "agent"]
BUDGET_USED = Gauge(
    "rouse_agent_budget_used_ratio",
    "Share of the agent's daily budget used today: the larger of tokens and cost (1 = spent).",
    LABELS,
)
BUDGET_EXHAUSTED = Gauge(
    "rouse_agent_budget_exhausted",
    "1 while the agent's daily budget is spent (phase Suspended), else 0.",
    LABELS,
)
COLD_START_TARGET = Gauge(
    "rouse_agent_cold_start_target",
    "spec.warmPool.coldStartTarget: the acceptable share of invocations that start cold.",
    LABELS,
)
SKILLS_NOT_READY = Gauge(
    "rouse_agent_skills_not_ready",
    "Skills of the agent whose Knative Service is not Ready.",
    LABELS,
)
POLICY_INPUTS_UNAVAILABLE = Gauge(
    "rouse_agent_policy_inputs_unavailable",
    "1 while the policies hold their last decision because Prometheus gave no figures, else 0.",
    LABELS,
)
ALL = (
    BUDGET_USED,
    BUDGET_EXHAUSTED,
    COLD_START_TARGET,
    SKILLS_NOT_READY,
    POLICY_INPUTS_UNAVAILABLE,
)


def record_policy(
    namespace: str,
    agent: str,
    spec: dict[str, Any],
    decision: BudgetDecision | None,
    inputs_missing: bool,
) -> None:
    """After a policy evaluation: budget figures, cold-start target, inputs missing or not."""
    if decision is not None:
        ratio = used_ratio(BudgetSpec.from_agent(spec), decision)
        BUDGET_USED.labels(namespace, agent).set(ratio)
        BUDGET_EXHAUSTED.labels(namespace, agent).set(1 if decision.suspended else 0)
    pool = spec.get("warmPool")
    if pool is not None:
        COLD_START_TARGET.labels(namespace, agent).set(float(pool.get("coldStartTarget", 0.05)))
    POLICY_INPUTS_UNAVAILABLE.labels(namespace, agent).set(1 if inputs_missing else 0)


def record_status(namespace: str, agent: str, status: dict[str, Any]) -> None:
    """After a reconcile: how many skills are not ready."""
    skills = status.get("skills") or []
    SKILLS_NOT_READY.labels(namespace, agent).set(sum(not s.get("ready") for s in skills))


def forget(namespace: str, agent: str) -> None:
    """The Agent is gone: its series go too (no alert about a deleted Agent)."""
    for gauge in ALL:
        with contextlib.suppress(KeyError):  # never recorded for this Agent
            gauge.remove(namespace, agent)
