"""Daily budget policy over tables of usage histories: crossing, reset, raise, gaps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from rouse_runtime.policies.budget import (
    BudgetDecision,
    BudgetSpec,
    Usage,
    decide,
    next_reset,
    period_start,
    replay_due,
    resumed,
)

DAY = datetime(2026, 1, 5, tzinfo=UTC)
TOMORROW = DAY + timedelta(days=1)
SPEC = BudgetSpec(daily_tokens=1_000_000, daily_cost_usd=10.0, on_exhausted="park")


def at(hours: float, base: datetime = DAY) -> datetime:
    return base + timedelta(hours=hours)


def run(
    history: Sequence[tuple[datetime, Usage | None]], spec: BudgetSpec = SPEC
) -> list[BudgetDecision]:
    previous: BudgetDecision | None = None
    decisions = []
    for now, usage in history:
        previous = decide(spec, usage, previous, now)
        decisions.append(previous)
    return decisions


def within(tokens: float, cost: float, reason: str, message: str) -> BudgetDecision:
    return BudgetDecision(
        within_budget=True,
        suspended=False,
        nearly_spent=reason == "NearlySpent",
        action="none",
        tokens_today=tokens,
        cost_today_usd=cost,
        resets_at=TOMORROW,
        reason=reason,
        message=message,
    )


def test_budget_crossing_mid_day_then_reset_at_midnight() -> None:
    history = [
        (at(9), Usage(200_000, 2.0)),
        (at(13), Usage(920_000, 8.0)),
        (at(14.5), Usage(1_000_100, 8.5)),
        (at(20), Usage(1_000_100, 8.5)),  # nothing spent while suspended
        (at(0.05, TOMORROW), Usage(0, 0.0)),
        (at(1, TOMORROW), Usage(5_000, 0.05)),
    ]
    spent = BudgetDecision(
        within_budget=False,
        suspended=True,
        nearly_spent=True,
        action="park",
        tokens_today=1_000_100,
        cost_today_usd=8.5,
        resets_at=TOMORROW,
        reason="TokensExhausted",
        message=(
            "daily budget spent (1000100/1000000 tokens, $8.5/$10); "
            "park until 2026-01-06T00:00:00+00:00"
        ),
    )
    next_day = TOMORROW + timedelta(days=1)
    decisions = run(history)
    assert decisions == [
        within(200_000, 2.0, "WithinBudget", "200000/1000000 tokens, $2/$10"),
        within(920_000, 8.0, "NearlySpent", "over 90% used (920000/1000000 tokens, $8/$10)"),
        spent,
        spent,
        replace(
            within(0, 0.0, "BudgetReset", "resumed (0/1000000 tokens, $0/$10)"),
            resets_at=next_day,
        ),
        replace(
            within(5_000, 0.05, "WithinBudget", "5000/1000000 tokens, $0.05/$10"),
            resets_at=next_day,
        ),
    ]
    assert [resumed(a, b) for a, b in zip([None, *decisions], decisions, strict=False)] == [
        False,
        False,
        False,
        False,
        True,
        False,
    ]


def test_cost_limit_alone_suspends_and_reject_is_the_action() -> None:
    spec = BudgetSpec(daily_tokens=None, daily_cost_usd=5.0, on_exhausted="reject")
    assert decide(spec, Usage(10, 5.0), None, at(12)) == BudgetDecision(
        within_budget=False,
        suspended=True,
        nearly_spent=True,
        action="reject",
        tokens_today=10,
        cost_today_usd=5.0,
        resets_at=TOMORROW,
        reason="CostExhausted",
        message=(
            "daily budget spent (10/unlimited tokens, $5/$5); reject until 2026-01-06T00:00:00+00:00"
        ),
    )


def test_raising_the_limit_mid_day_resumes_at_once() -> None:
    spent = decide(SPEC, Usage(1_200_000, 3.0), None, at(10))
    raised = BudgetSpec(daily_tokens=2_000_000, daily_cost_usd=10.0)
    after = decide(raised, Usage(1_200_000, 3.0), spent, at(11))
    assert after == within(
        1_200_000, 3.0, "BudgetRaised", "resumed (1200000/2000000 tokens, $3/$10)"
    )
    assert resumed(spent, after)


def test_prometheus_gap_holds_the_last_decision_never_resumes_or_suspends() -> None:
    spent = decide(SPEC, Usage(1_000_000, 1.0), None, at(10))
    history_gap = decide(SPEC, None, spent, at(0.1, TOMORROW))  # gap across midnight
    assert history_gap == replace(
        spent,
        stale=True,
        reason="MetricsUnavailable",
        message="no usage figures: holding the last decision (TokensExhausted)",
    )
    assert not resumed(spent, history_gap)
    back = decide(SPEC, Usage(0, 0.0), history_gap, at(0.2, TOMORROW))
    assert (back.suspended, back.reason, back.stale) == (False, "BudgetReset", False)


def test_nothing_recorded_is_said_apart_from_a_recorded_zero() -> None:
    """No ledger line today (e.g. runtimes writing under another namespace) is not "spent 0"."""
    none = decide(SPEC, Usage(0, 0.0, recorded=False), None, at(9))
    assert none == within(
        0,
        0.0,
        "NoSpendRecorded",
        "no ledger line for this agent today: 0 spent or not recorded (0/1000000 tokens, $0/$10)",
    )
    assert decide(SPEC, Usage(0, 0.0), None, at(9)).reason == "WithinBudget"


def test_gap_before_any_figure_does_not_suspend() -> None:
    assert decide(SPEC, None, None, at(3)) == BudgetDecision(
        within_budget=True,
        suspended=False,
        nearly_spent=False,
        action="none",
        tokens_today=0.0,
        cost_today_usd=0.0,
        resets_at=TOMORROW,
        reason="MetricsUnavailable",
        message="no usage figures yet: not suspending without data",
        stale=True,
    )


def test_no_daily_limits_never_suspend() -> None:
    assert decide(BudgetSpec(), Usage(10**12, 10**6), None, at(1)) == within(
        10**12, 10**6, "NoDailyBudget", "no daily limits set"
    )


@pytest.mark.parametrize(
    ("now", "start", "reset"),
    [
        (at(0), DAY, TOMORROW),
        (at(23.999), DAY, TOMORROW),
        (datetime(2026, 1, 5, 1, 0, tzinfo=UTC).astimezone(), DAY, TOMORROW),
    ],
)
def test_period_is_the_utc_day(now: datetime, start: datetime, reset: datetime) -> None:
    assert (period_start(now), next_reset(now)) == (start, reset)


def test_from_agent() -> None:
    spec = {"budget": {"daily": {"tokens": 2_000_000, "costUSD": 50}, "onExhausted": "reject"}}
    assert BudgetSpec.from_agent(spec) == BudgetSpec(2_000_000, 50.0, "reject")
    assert BudgetSpec.from_agent({}) == BudgetSpec(None, None, "park")


def test_replay_due_whenever_the_agent_may_spend_and_something_is_parked() -> None:
    may_spend = decide(SPEC, Usage(tokens=10, cost_usd=0.0), None, DAY)
    spent = decide(SPEC, Usage(tokens=2_000_000, cost_usd=0.0), None, DAY)
    assert [
        replay_due(decision, parked, owed)
        for decision, parked, owed in [
            (may_spend, 3, False),  # parked events while the agent may spend
            (None, 3, False),  # the budget removed while events were parked
            (may_spend, 0, True),  # resumed from park, the count not scraped yet
            (may_spend, None, False),  # nothing known parked, nothing owed
            (may_spend, 0, False),
            (spent, 3, True),  # suspended: never while the budget is spent
        ]
    ] == [True, True, True, False, False, False]
