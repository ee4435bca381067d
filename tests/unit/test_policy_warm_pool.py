"""Warm-pool policy over tables of metric histories: decisions and rate limiting."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from rouse_runtime.policies.durations import parse_duration
from rouse_runtime.policies.warm_pool import (
    Schedule,
    SkillWindow,
    Tuning,
    WarmPoolDecision,
    WarmPoolSpec,
    WarmPoolState,
    decide,
)

MONDAY = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday, 00:00 UTC
SPEC = WarmPoolSpec(scaling_min=0, pool_max=2, cold_start_target=0.05, window_seconds=900)
TUNING = Tuning(raise_min_invocations=5, idle_max_invocations=1, min_dwell_seconds=300)

STEADY = SkillWindow(invocations=300, cold_starts=1)  # 0.3 % cold
BURSTY = SkillWindow(invocations=40, cold_starts=12)  # 30 % cold
SPARSE_COLD = SkillWindow(invocations=3, cold_starts=3)  # every one cold, but too few
IDLE = SkillWindow(invocations=0, cold_starts=0)
GAP = None


def at(minutes: float, base: datetime = MONDAY) -> datetime:
    return base + timedelta(minutes=minutes)


def run(
    history: Sequence[tuple[float, SkillWindow | None]],
    *,
    spec: WarmPoolSpec = SPEC,
    start: WarmPoolState | None = None,
    base: datetime = MONDAY,
    nearly_spent_from: float | None = None,
) -> list[WarmPoolDecision]:
    """Feed a metric history to the policy the way the operator does: state carried over."""
    state, decisions = start or WarmPoolState(0), []
    for minute, metrics in history:
        nearly = nearly_spent_from is not None and minute >= nearly_spent_from
        decision = decide(
            spec, metrics, state, at(minute, base), budget_nearly_spent=nearly, tuning=TUNING
        )
        decisions.append(decision)
        state = WarmPoolState(decision.min_scale, decision.last_change)
    return decisions


def changes(decisions: Sequence[WarmPoolDecision]) -> list[tuple[datetime | None, int]]:
    return [(d.last_change, d.min_scale) for d in decisions if d.changed]


def held(min_scale: int, reason: str, message: str, last: datetime | None) -> WarmPoolDecision:
    return WarmPoolDecision(min_scale, False, reason, message, last)


def moved(min_scale: int, reason: str, message: str, when: datetime) -> WarmPoolDecision:
    return WarmPoolDecision(min_scale, True, reason, message, when)


STEADY_MSG = "cold-start share 0.3% within target (1 cold of 300 invocations)"
BURSTY_MSG = "cold-start share 30.0% > target 5.0% (12 cold of 40 invocations)"
IDLE_MSG = "idle: 0 cold of 0 invocations in the window"


def test_steady_traffic_keeps_scale_to_zero() -> None:
    assert run([(0, STEADY), (15, STEADY), (30, STEADY)]) == [
        held(0, "Steady", STEADY_MSG, None),
        held(0, "Steady", STEADY_MSG, None),
        held(0, "Steady", STEADY_MSG, None),
    ]


def test_sparse_cold_starts_do_not_warm_below_the_raise_threshold() -> None:
    # 3 invocations, all cold: above target, but too few to pay for a warm instance.
    assert run([(0, SPARSE_COLD)]) == [
        held(0, "Steady", "cold-start share 100.0% within target (3 cold of 3 invocations)", None)
    ]


def test_bursts_raise_one_step_per_window_up_to_max() -> None:
    decisions = run([(0, BURSTY), (5, BURSTY), (14, BURSTY), (15, BURSTY), (30, BURSTY)])
    limited = (
        f"wants 2 (ColdStartsAboveTarget: {BURSTY_MSG}); next change allowed at "
        "2026-01-05T00:15:00+00:00"
    )
    assert decisions == [
        moved(1, "ColdStartsAboveTarget", BURSTY_MSG, at(0)),
        held(1, "RateLimited", limited, at(0)),
        held(1, "RateLimited", limited, at(0)),
        moved(2, "ColdStartsAboveTarget", BURSTY_MSG, at(15)),
        held(2, "AtMaximum", f"warmPool.max 2 reached; {BURSTY_MSG}", at(15)),
    ]


def test_warm_pool_doing_its_job_is_kept() -> None:
    # Once warm, cold starts vanish; steady traffic must not lower it (that would flap).
    assert run([(0, STEADY), (60, STEADY)], start=WarmPoolState(2, at(-60))) == [
        held(2, "Steady", STEADY_MSG, at(-60)),
        held(2, "Steady", STEADY_MSG, at(-60)),
    ]


def test_idle_night_releases_the_pool_after_the_dwell_time() -> None:
    decisions = run([(0, IDLE), (10, IDLE), (16, IDLE), (60, IDLE)], start=WarmPoolState(2, at(1)))
    limited = f"wants 0 (Idle: {IDLE_MSG}); next change allowed at 2026-01-05T00:16:00+00:00"
    assert decisions == [
        held(2, "RateLimited", limited, at(1)),
        held(2, "RateLimited", limited, at(1)),
        moved(0, "Idle", IDLE_MSG, at(16)),
        held(0, "Idle", IDLE_MSG, at(16)),
    ]


def test_dwell_time_longer_than_the_window_wins() -> None:
    short = WarmPoolSpec(scaling_min=0, pool_max=2, cold_start_target=0.05, window_seconds=60)
    decisions = run([(0, BURSTY), (2, BURSTY), (5, BURSTY)], spec=short)
    assert changes(decisions) == [(at(0), 1), (at(5), 2)]


SCHEDULED = WarmPoolSpec(
    scaling_min=0,
    pool_max=2,
    cold_start_target=0.05,
    window_seconds=900,
    schedules=(Schedule(cron="0 8 * * 1-5", duration_seconds=parse_duration("10h"), min=1),),
)


def test_office_hours_schedule_warms_on_weekdays_only() -> None:
    monday_8 = 8 * 60
    saturday_8 = 5 * 24 * 60 + 8 * 60
    decisions = run(
        [
            (monday_8 - 1, IDLE),
            (monday_8, IDLE),
            (monday_8 + 9 * 60, IDLE),
            (monday_8 + 10 * 60, IDLE),
            (saturday_8, IDLE),
        ],
        spec=SCHEDULED,
    )
    scheduled = f"schedule keeps 1 warm; {IDLE_MSG}"
    assert decisions == [
        held(0, "Idle", IDLE_MSG, None),
        moved(1, "Schedule", scheduled, at(monday_8)),
        held(1, "Schedule", scheduled, at(monday_8)),
        moved(0, "Idle", IDLE_MSG, at(monday_8 + 10 * 60)),
        held(0, "Idle", IDLE_MSG, at(monday_8 + 10 * 60)),
    ]


def test_prometheus_gap_holds_the_last_value_never_flaps() -> None:
    decisions = run([(0, BURSTY), (15, GAP), (30, GAP), (45, BURSTY)])
    gap = held(1, "MetricsUnavailable", "no metrics: holding min-scale 1", at(0))
    assert decisions == [
        moved(1, "ColdStartsAboveTarget", BURSTY_MSG, at(0)),
        gap,
        gap,
        moved(2, "ColdStartsAboveTarget", BURSTY_MSG, at(45)),
    ]


def test_budget_nearly_spent_drops_at_once_even_inside_the_window() -> None:
    decisions = run([(0, BURSTY), (5, BURSTY), (6, BURSTY)], nearly_spent_from=5)
    message = "budget nearly spent: not kept warm (min-scale 0)"
    assert decisions == [
        moved(1, "ColdStartsAboveTarget", BURSTY_MSG, at(0)),
        moved(0, "BudgetNearlySpent", message, at(5)),
        held(0, "BudgetNearlySpent", message, at(5)),
    ]


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (0, moved(1, "OutOfBounds", "min-scale 0 outside [1, 3]", MONDAY)),
        (5, moved(3, "OutOfBounds", "min-scale 5 outside [1, 3]", MONDAY)),
    ],
)
def test_spec_bounds_apply_at_once(current: int, expected: WarmPoolDecision) -> None:
    spec = WarmPoolSpec(scaling_min=1, pool_max=3, cold_start_target=0.05, window_seconds=900)
    state = WarmPoolState(current, MONDAY - timedelta(minutes=1))
    assert decide(spec, STEADY, state, MONDAY, tuning=TUNING) == expected


def test_scaling_min_above_pool_max_is_the_floor() -> None:
    spec = WarmPoolSpec(scaling_min=2, pool_max=0, cold_start_target=0.05, window_seconds=900)
    assert decide(spec, IDLE, WarmPoolState(2), MONDAY, tuning=TUNING) == held(
        2, "Idle", IDLE_MSG, None
    )


def test_a_day_of_mixed_traffic_changes_at_most_once_per_window() -> None:
    """Evaluate every minute over a day of alternating bursts, steady traffic, gaps and idleness."""
    pattern = [BURSTY, BURSTY, STEADY, IDLE, IDLE, GAP, BURSTY, IDLE, STEADY, BURSTY, IDLE]
    history = [(float(minute), pattern[(minute // 7) % len(pattern)]) for minute in range(24 * 60)]
    decisions = run(history, spec=SCHEDULED)
    moments = [when for when, _ in changes(decisions) if when is not None]
    gaps = [later - earlier for earlier, later in pairwise(moments)]
    assert len(moments) > 10  # the history does move the pool
    assert min(gaps) >= timedelta(minutes=15)
    assert all(0 <= d.min_scale <= 2 for d in decisions)


def test_from_agent_reads_the_spec_with_defaults() -> None:
    spec = {
        "warmPool": {
            "max": 2,
            "coldStartTarget": 0.1,
            "window": "30m",
            "schedules": [{"cron": "0 8 * * 1-5", "duration": "10h", "min": 1}],
        }
    }
    skill = {"name": "triage", "scaling": {"min": 1, "max": 10}}
    assert WarmPoolSpec.from_agent(spec, skill) == WarmPoolSpec(
        scaling_min=1,
        pool_max=2,
        cold_start_target=0.1,
        window_seconds=1800,
        schedules=(Schedule("0 8 * * 1-5", 36000, 1),),
    )
    assert WarmPoolSpec.from_agent({}, {"name": "x"}) == WarmPoolSpec(0, 0, 0.05, 900)
    assert WarmPoolSpec.from_agent({"warmPool": {}}, {"name": "x"}) == WarmPoolSpec(0, 1, 0.05, 900)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15m", 900), ("10h", 36000), ("1h30m", 5400), ("90s", 90), ("0s", 0), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1d", "15 m", "-1s"])
def test_bad_durations_name_the_value(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)
