"""The operator's policy evaluation over a day of figures: status, conditions, events, replay."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from rouse_operator.policy_status import (
    Evaluation,
    Event,
    evaluate,
    policy_fields_changed,
    previous_budget,
    with_last_write,
)
from rouse_runtime.policies.budget import Usage
from rouse_runtime.policies.warm_pool import SkillWindow, Tuning

T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
TUNING = Tuning(min_dwell_seconds=60)
BURSTY = SkillWindow(invocations=20, cold_starts=10)
IDLE = SkillWindow(invocations=0, cold_starts=0)


def agent() -> dict[str, Any]:
    return {
        "metadata": {"name": "shop", "namespace": "ns", "generation": 3},
        "spec": {
            "skills": [{"name": "work", "scaling": {"min": 0, "max": 5}}],
            "warmPool": {"max": 2, "coldStartTarget": 0.05, "window": "5m"},
            "budget": {"daily": {"tokens": 1000}, "onExhausted": "park"},
        },
    }


def write(obj: dict[str, Any], evaluation: Evaluation) -> None:
    """Apply the policy-owned fields as the API server's server-side apply would."""
    status = obj.setdefault("status", {})
    for key, value in evaluation.status.items():
        if key == "conditions":
            kept = [
                c
                for c in status.get("conditions", [])
                if c["type"] not in {"WithinBudget", "WarmPoolApplied"}
            ]
            status["conditions"] = kept + copy.deepcopy(value)
        else:
            status[key] = copy.deepcopy(value)


def step(
    obj: dict[str, Any],
    minutes: float,
    window: SkillWindow | None,
    usage: Usage | None,
    gap: str | None = None,
) -> Evaluation:
    result = evaluate(
        obj,
        windows={"work": window},
        usage=usage,
        gap=gap,
        now=T0 + timedelta(minutes=minutes),
        tuning=TUNING,
    )
    write(obj, result)
    return result


def test_a_day_warm_up_spend_gap_and_raise() -> None:
    obj = agent()
    first = step(obj, 0, BURSTY, Usage(100, 0.0))
    assert first.events == [
        Event(
            "Normal",
            "WarmPoolChanged",
            "work: min-scale 0 -> 1 (ColdStartsAboveTarget: cold-start share 50.0% > target "
            "5.0% (10 cold of 20 invocations))",
        )
    ]
    assert first.status["warmPool"] == {
        "skills": [
            {
                "name": "work",
                "minScale": 1,
                "reason": "ColdStartsAboveTarget",
                "message": "cold-start share 50.0% > target 5.0% (10 cold of 20 invocations)",
                "changedAt": "2026-01-05T10:00:00Z",
            }
        ]
    }
    assert first.status["budget"] == {
        "tokensToday": 100,
        "costTodayUSD": 0.0,
        "resetsAt": "2026-01-06T00:00:00Z",
        "used": "10%",
        "exhausted": False,
        "nearlySpent": False,
        "action": "none",
        "reason": "WithinBudget",
        "message": "100/1000 tokens, $0/unlimited",
        "stale": False,
        "replayPending": False,
    }
    assert first.status["conditions"] == [
        {
            "type": "WithinBudget",
            "status": "True",
            "reason": "WithinBudget",
            "message": "100/1000 tokens, $0/unlimited",
            "lastTransitionTime": "2026-01-05T10:00:00Z",
            "observedGeneration": 3,
        },
        {
            "type": "WarmPoolApplied",
            "status": "True",
            "reason": "Applied",
            "message": "work: 1 (ColdStartsAboveTarget)",
            "lastTransitionTime": "2026-01-05T10:00:00Z",
            "observedGeneration": 3,
        },
    ]
    assert not first.replay_due

    # Within the window: wanted 2, rate limited; nothing to tell.
    second = step(obj, 1, BURSTY, Usage(200, 0.0))
    assert second.events == []
    assert second.status["warmPool"]["skills"][0]["minScale"] == 1
    assert second.status["warmPool"]["skills"][0]["reason"] == "RateLimited"

    # Spent: suspended, park, pool to scaling.min at once, a Warning event.
    spent = step(obj, 2, BURSTY, Usage(1000, 0.0))
    assert [(e.type, e.reason) for e in spent.events] == [
        ("Warning", "BudgetExhausted"),
        ("Normal", "WarmPoolChanged"),
    ]
    assert spent.status["budget"]["exhausted"] is True
    assert spent.status["budget"]["action"] == "park"
    assert spent.status["warmPool"]["skills"][0]["minScale"] == 0
    within = spent.status["conditions"][0]
    assert (within["status"], within["reason"]) == ("False", "TokensExhausted")

    # Prometheus gap: hold everything, conditions say so, one Warning event.
    gap = step(obj, 3, None, None, gap="Prometheus at http://p unreachable")
    assert [(e.type, e.reason) for e in gap.events] == [("Warning", "MetricsUnavailable")]
    assert gap.status["budget"]["exhausted"] is True
    assert gap.status["budget"]["stale"] is True
    assert gap.status["warmPool"]["skills"][0]["minScale"] == 0
    assert [(c["type"], c["status"], c["reason"]) for c in gap.status["conditions"]] == [
        ("WithinBudget", "False", "MetricsUnavailable"),
        ("WarmPoolApplied", "Unknown", "MetricsUnavailable"),
    ]
    assert gap.status["conditions"][0]["lastTransitionTime"] == "2026-01-05T10:02:00Z"
    again = step(obj, 4, None, None, gap="Prometheus at http://p unreachable")
    assert again.events == []  # told once

    # The budget is raised: resumed, replay due until the operator reports it done.
    obj["spec"]["budget"]["daily"]["tokens"] = 5000
    raised = step(obj, 5, IDLE, Usage(1000, 0.0))
    assert [(e.type, e.reason) for e in raised.events] == [("Normal", "BudgetRaised")]
    assert raised.replay_due
    assert raised.status["budget"]["exhausted"] is False
    assert raised.status["budget"]["replayPending"] is True
    still = step(obj, 6, IDLE, Usage(1000, 0.0))
    assert still.replay_due  # a failed replay is retried at the next evaluation
    obj["status"]["budget"]["replayPending"] = False  # the operator's write after replaying
    done = step(obj, 7, IDLE, Usage(1000, 0.0))
    assert not done.replay_due


def test_previous_budget_is_read_back_after_a_restart() -> None:
    obj = agent()
    step(obj, 0, IDLE, Usage(2000, 0.0))
    held = previous_budget(obj["status"])
    assert held is not None
    assert (held.suspended, held.action, held.resets_at) == (
        True,
        "park",
        datetime(2026, 1, 6, tzinfo=UTC),
    )
    # Next day, a restarted operator resets and asks for the replay.
    reset = evaluate(
        obj,
        windows={"work": IDLE},
        usage=Usage(0, 0.0),
        gap=None,
        now=datetime(2026, 1, 6, 0, 1, tzinfo=UTC),
        tuning=TUNING,
    )
    assert reset.replay_due
    assert [(e.type, e.reason) for e in reset.events] == [("Normal", "BudgetReset")]


def test_no_budget_and_no_warm_pool() -> None:
    obj = agent()
    del obj["spec"]["warmPool"]
    del obj["spec"]["budget"]
    result = evaluate(obj, windows={}, usage=None, gap=None, now=T0, tuning=TUNING)
    assert result == Evaluation(
        status={
            "conditions": [
                {
                    "type": "WithinBudget",
                    "status": "True",
                    "reason": "NoDailyBudget",
                    "message": "no daily limits",
                    "lastTransitionTime": "2026-01-05T10:00:00Z",
                    "observedGeneration": 3,
                }
            ]
        }
    )


def test_parked_events_are_never_stranded() -> None:
    """Any parked event makes a replay due once the agent may spend, whatever parked it."""
    # park -> reject while spent: no replay while suspended (the skills answer 429) ...
    obj = agent()
    step(obj, 0, IDLE, Usage(2000, 0.0))
    obj["spec"]["budget"]["onExhausted"] = "reject"
    rejecting = evaluate(
        obj, windows={"work": IDLE}, usage=Usage(2000, 0.0), gap=None, now=T0, parked=3
    )
    assert (rejecting.budget is not None and rejecting.budget.action) == "reject"
    assert not rejecting.replay_due
    write(obj, rejecting)
    # ... and at the reset the events parked before the switch are replayed.
    reset = evaluate(
        obj,
        windows={"work": IDLE},
        usage=Usage(0, 0.0),
        gap=None,
        now=datetime(2026, 1, 6, 0, 1, tzinfo=UTC),
        parked=3,
    )
    assert reset.replay_due
    # The budget removed while events are parked (and no replayPending recorded): replayed.
    bare = agent()
    del bare["spec"]["budget"]
    removed = evaluate(bare, windows={"work": IDLE}, usage=None, gap=None, now=T0, parked=2)
    assert removed.replay_due
    assert removed.status["budget"] == {"exhausted": False, "replayPending": True}
    # Nothing parked, nothing pending: no replay.
    assert not evaluate(
        bare, windows={"work": IDLE}, usage=None, gap=None, now=T0, parked=0
    ).replay_due


def test_the_budget_removed_while_parking_replays_whatever_the_count_says() -> None:
    """Seen on the real node: the budget removed seconds after tickets were parked, before
    Prometheus scraped them (0 parked). A replay is owed all the same; without it the write
    drops status.budget, and with it every later read of the parked count."""
    obj = agent()
    spent = step(obj, 0, IDLE, Usage(2000, 0.0))
    assert spent.budget is not None and spent.budget.suspended and spent.budget.action == "park"
    del obj["spec"]["budget"]
    removed = evaluate(obj, windows={"work": IDLE}, usage=None, gap=None, now=T0, parked=0)
    assert removed.replay_due
    assert removed.status["budget"] == {"exhausted": False, "replayPending": True}
    write(obj, removed)
    # Still owed at the next evaluation (e.g. the Triggers not yet restored, no replay yet).
    again = evaluate(obj, windows={"work": IDLE}, usage=None, gap=None, now=T0, parked=0)
    assert again.replay_due
    # Once replayed (the loop writes replayPending False, status.budget's other fields gone),
    # nothing more is owed; what is parked later is still found by the count.
    obj["status"]["budget"] = {"exhausted": False, "replayPending": False}
    done = evaluate(obj, windows={"work": IDLE}, usage=None, gap=None, now=T0, parked=0)
    assert not done.replay_due
    assert evaluate(obj, windows={"work": IDLE}, usage=None, gap=None, now=T0, parked=1).replay_due


def test_a_copy_older_than_the_last_write_is_judged_with_that_write() -> None:
    """The loop's copy lags its own write: the written fields stand in for the stale ones."""
    within = {"type": "WithinBudget", "status": "True", "reason": "Within"}
    ready = {"type": "Ready", "status": "True", "reason": "Ready"}
    written = ("12", {"budget": {"used": "1"}, "conditions": [within]})
    stale = {"metadata": {"resourceVersion": "9"}, "status": {"conditions": [ready]}}
    seen = with_last_write(stale, written)
    assert seen["status"] == {"budget": {"used": "1"}, "conditions": [ready, within]}
    assert not policy_fields_changed(seen, written[1])
    fresh = {"metadata": {"resourceVersion": "13"}, "status": {"conditions": [ready]}}
    assert with_last_write(fresh, written) is fresh  # someone wrote after us: judge what is there
    assert with_last_write(stale, None) is stale
