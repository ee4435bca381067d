"""Local mode's policy loop over a real SQLite ledger: the same decisions, no Prometheus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rouse_runtime.ledger import Entry, open_ledger, utc_day
from rouse_runtime.policies.budget import BudgetDecision
from rouse_runtime.policies.warm_pool import Tuning
from rouse_runtime.policy_loop import LocalPolicyLoop

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def agent() -> dict[str, Any]:
    return {
        "metadata": {"name": "local"},
        "spec": {
            "skills": [{"name": "work", "scaling": {"min": 0, "max": 3}}],
            "warmPool": {"max": 2, "window": "5m"},
            "budget": {"daily": {"tokens": 100}, "onExhausted": "park"},
        },
    }


async def test_cold_starts_warm_then_spending_parks(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path}/state.db")
    scaled: list[tuple[str, int]] = []
    budgets: list[BudgetDecision] = []
    loop = LocalPolicyLoop(
        agent(),
        ledger,
        on_min_scale=lambda skill, n: scaled.append((skill, n)),
        on_budget=budgets.append,
        tuning=Tuning(min_dwell_seconds=60),
        interval=60,
    )
    day = utc_day(T0)
    await loop.evaluate_once(T0)  # baseline snapshot: nothing yet
    for n in range(8):  # 8 invocations, 4 cold, 5 tokens each
        entry = Entry(cold_starts=n % 2, input_tokens=4, output_tokens=1)
        await ledger.add("", "local", "work", entry, day=day)
    decisions, budget = await loop.evaluate_once(T0 + timedelta(minutes=1))
    assert scaled == [("work", 1)]
    assert decisions["work"].reason == "ColdStartsAboveTarget"
    assert budget is not None and budget.tokens_today == 40 and not budget.suspended
    assert [b.suspended for b in budgets] == [False]

    for _ in range(12):
        await ledger.add("", "local", "work", Entry(input_tokens=4, output_tokens=1), day=day)
    decisions, budget = await loop.evaluate_once(T0 + timedelta(minutes=2))
    assert budget is not None and budget.suspended and budget.action == "park"
    assert [b.suspended for b in budgets] == [False, True]
    assert scaled == [("work", 1), ("work", 0)]  # nearly spent: not kept warm, at once
    assert decisions["work"].reason == "BudgetNearlySpent"

    # Next day: the ledger's day figures start at zero, the loop resumes.
    _, budget = await loop.evaluate_once(T0 + timedelta(days=1))
    assert budget is not None and budget.reason == "BudgetReset"
    assert [b.suspended for b in budgets] == [False, True, False]
    await ledger.close()
