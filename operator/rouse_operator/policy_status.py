"""The policies' part of an Agent's status, from decisions. Pure: agent and figures in.

The warm-pool and budget policies (rouse_runtime.policies) decide; this module
reads their previous state back from the Agent's status (so a restarted
operator carries on where it stopped), runs them, and says what to write:
`status.warmPool`, `status.budget`, the WithinBudget and WarmPoolApplied
conditions, and the Kubernetes Events worth telling. The reconciler builds the
children (Service min-scale, Trigger subscribers) from `status.warmPool` and
`status.budget.exhausted`; it never fights these fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from rouse_runtime.policies import budget as budget_policy
from rouse_runtime.policies import warm_pool
from rouse_runtime.policies.budget import Action, BudgetDecision, BudgetSpec, Usage
from rouse_runtime.policies.warm_pool import SkillWindow, Tuning, WarmPoolDecision, WarmPoolSpec

from rouse_operator.conditions import condition, stamp

Obj = dict[str, Any]
WITHIN_BUDGET = "WithinBudget"
WARM_POOL_APPLIED = "WarmPoolApplied"
POLICY_CONDITIONS = (WITHIN_BUDGET, WARM_POOL_APPLIED)
DEFAULT_TUNING = Tuning()


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Evaluation:
    """What to write (policy-owned status fields only) and what to tell."""

    status: Obj
    events: list[Event] = field(default_factory=list)
    # The budget allows spending again but parked events still wait: restore, then replay.
    replay_due: bool = False
    budget: BudgetDecision | None = None


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def has_daily_budget(spec: Obj) -> bool:
    daily = (spec.get("budget") or {}).get("daily") or {}
    return daily.get("tokens") is not None or daily.get("costUSD") is not None


def previous_budget(status: Obj) -> BudgetDecision | None:
    """The last budget decision as written to status (None before the first)."""
    saved = status.get("budget") or {}
    resets_at = parse_time(saved.get("resetsAt"))
    if resets_at is None:
        return None
    exhausted = bool(saved.get("exhausted"))
    action: Action = "reject" if saved.get("action") == "reject" else "park"
    return BudgetDecision(
        within_budget=not exhausted,
        suspended=exhausted,
        nearly_spent=bool(saved.get("nearlySpent")),
        action=action if exhausted else "none",
        tokens_today=float(saved.get("tokensToday") or 0),
        cost_today_usd=float(saved.get("costTodayUSD") or 0),
        resets_at=resets_at,
        reason=str(saved.get("reason") or ""),
        message=str(saved.get("message") or ""),
        stale=bool(saved.get("stale")),
    )


def warm_state(status: Obj, skill: str, floor: int) -> warm_pool.WarmPoolState:
    """A skill's applied min-scale and last change, from status (floor before the first)."""
    for saved in (status.get("warmPool") or {}).get("skills") or []:
        if isinstance(saved, dict) and saved.get("name") == skill:
            value = saved.get("minScale")
            return warm_pool.WarmPoolState(
                int(value) if isinstance(value, int) else floor, parse_time(saved.get("changedAt"))
            )
    return warm_pool.WarmPoolState(floor, None)


def used_ratio(spec: BudgetSpec, decision: BudgetDecision) -> float:
    """The larger share of the daily limits that are set (0 when none is; 1 = spent)."""
    shares = [
        used / limit
        for used, limit in (
            (decision.tokens_today, spec.daily_tokens),
            (decision.cost_today_usd, spec.daily_cost_usd),
        )
        if limit
    ]
    return max(shares, default=0.0)


def used_share(spec: BudgetSpec, decision: BudgetDecision) -> str:
    return f"{round(used_ratio(spec, decision) * 100)}%"


def budget_status(spec: BudgetSpec, decision: BudgetDecision, replay_pending: bool) -> Obj:
    return {
        "tokensToday": round(decision.tokens_today),
        "costTodayUSD": round(decision.cost_today_usd, 6),
        "resetsAt": rfc3339(decision.resets_at),
        "used": used_share(spec, decision),
        "exhausted": decision.suspended,
        "nearlySpent": decision.nearly_spent,
        "action": decision.action,
        "reason": decision.reason,
        "message": decision.message,
        "stale": decision.stale,
        "replayPending": replay_pending,
    }


def evaluate(
    agent: Obj,
    *,
    windows: Mapping[str, SkillWindow | None],
    usage: Usage | None,
    gap: str | None,
    now: datetime,
    tuning: Tuning = DEFAULT_TUNING,
    parked: float | None = None,
    gap_detail: str | None = None,
) -> Evaluation:
    """Run both policies for one Agent and say what its status should hold.

    `gap`: why figures are missing, short (it goes into conditions); `gap_detail`: the
    whole story (query, server), for the Event.

    `parked`: events the parking service holds for the agent (None: unknown). While
    the agent may spend, any parked event makes a replay due, whatever parked it
    and whatever the budget says now (limits removed, park switched to reject):
    nothing parked is left without a way out.
    """
    spec, meta = agent["spec"], agent["metadata"]
    status = agent.get("status") or {}
    events: list[Event] = []
    result: Obj = {}
    conditions: list[Obj] = []

    previous = previous_budget(status)
    saved_budget = status.get("budget") or {}
    decision: BudgetDecision | None = None
    replay_due = False
    if has_daily_budget(spec):
        bspec = BudgetSpec.from_agent(spec)
        decision = budget_policy.decide(bspec, usage, previous, now)
        if gap and decision.stale:
            decision = _with_gap(decision, gap)
        resumed = budget_policy.resumed(previous, decision)
        owed = _replay_owed(saved_budget, previous, resumed)
        replay_due = pending = budget_policy.replay_due(decision, parked, owed)
        result["budget"] = budget_status(bspec, decision, pending)
        conditions.append(
            condition(
                WITHIN_BUDGET,
                "True" if decision.within_budget else "False",
                decision.reason,
                decision.message,
            )
        )
        if decision.suspended and (previous is None or not previous.suspended):
            events.append(Event("Warning", "BudgetExhausted", decision.message))
        elif resumed:
            events.append(Event("Normal", decision.reason, decision.message))
    else:
        conditions.append(condition(WITHIN_BUDGET, "True", "NoDailyBudget", "no daily limits"))
        # Limits removed while events were parked, or while suspended (which resumes it).
        owed = _replay_owed(saved_budget, previous, previous is not None and previous.suspended)
        if budget_policy.replay_due(None, parked, owed):
            replay_due = True
            result["budget"] = {"exhausted": False, "replayPending": True}

    if spec.get("warmPool") is not None:
        decisions: dict[str, WarmPoolDecision] = {}
        cold_down = decision is not None and (decision.nearly_spent or decision.suspended)
        for skill in spec["skills"]:
            pool = WarmPoolSpec.from_agent(spec, skill)
            state = warm_state(status, skill["name"], pool.scaling_min)
            made = warm_pool.decide(
                pool,
                windows.get(skill["name"]),
                state,
                now,
                budget_nearly_spent=cold_down,
                tuning=tuning,
            )
            decisions[skill["name"]] = made
            if made.changed:
                events.append(
                    Event(
                        "Normal",
                        "WarmPoolChanged",
                        f"{skill['name']}: min-scale {state.min_scale} -> {made.min_scale} "
                        f"({made.reason}: {made.message})",
                    )
                )
        result["warmPool"] = {
            "skills": [
                {
                    "name": name,
                    "minScale": d.min_scale,
                    "reason": d.reason,
                    "message": d.message,
                    **({"changedAt": rfc3339(d.last_change)} if d.last_change else {}),
                }
                for name, d in decisions.items()
            ]
        }
        summary = "; ".join(f"{n}: {d.min_scale} ({d.reason})" for n, d in decisions.items())
        if gap is not None or any(d.reason == "MetricsUnavailable" for d in decisions.values()):
            conditions.append(
                condition(
                    WARM_POOL_APPLIED,
                    "Unknown",
                    "MetricsUnavailable",
                    f"{gap or 'no metrics'}: holding the last min-scale ({summary})",
                )
            )
        else:
            conditions.append(condition(WARM_POOL_APPLIED, "True", "Applied", summary))

    before = [c for c in status.get("conditions") or [] if c.get("type") in POLICY_CONDITIONS]
    if gap and not any(c.get("reason") == "MetricsUnavailable" for c in before):
        detail = gap_detail or gap
        events.append(Event("Warning", "MetricsUnavailable", f"holding policy decisions: {detail}"))
    stamp(conditions, before, int(meta.get("generation") or 0), rfc3339(now))
    result["conditions"] = conditions
    return Evaluation(status=result, events=events, replay_due=replay_due, budget=decision)


def _replay_owed(saved_budget: Obj, previous: BudgetDecision | None, resumed: bool) -> bool:
    """A replay still owed: recorded as pending (failed, busy or unfinished), or the agent
    resuming from park, whatever the parked count says. Prometheus may not have scraped the
    events parked just before, and once status.budget is gone the count is not read again."""
    return bool(saved_budget.get("replayPending")) or (
        resumed and previous is not None and previous.action == "park"
    )


def _with_gap(decision: BudgetDecision, gap: str) -> BudgetDecision:
    return replace(decision, message=f"{decision.message}: {gap}")


def policy_fields_changed(agent: Obj, wanted: Obj) -> bool:
    """Whether writing `wanted` would change the Agent's policy-owned status."""
    status = agent.get("status") or {}
    current_conditions = {
        c.get("type"): c
        for c in status.get("conditions") or []
        if c.get("type") in POLICY_CONDITIONS
    }
    for cond in wanted.get("conditions") or []:
        if current_conditions.get(cond["type"]) != cond:
            return True
    return any(status.get(k) != v for k, v in wanted.items() if k != "conditions")


def with_last_write(agent: Obj, written: tuple[str, Obj] | None) -> Obj:
    """`agent` with the policy loop's last write laid over its status when the copy predates it.

    The loop reads copies the watch keeps, which can lag its own writes (at 10,000 Agents by
    more than a round): judged on such a copy, a written decision looks unwritten and is
    written again, unchanged (3078 writes in one resync round once). `written`: the Agent's
    resourceVersion after that write, and the fields it wrote.
    """
    if written is None:
        return agent
    version, fields = written
    seen = str((agent.get("metadata") or {}).get("resourceVersion") or "")
    if not (seen.isdigit() and version.isdigit() and int(seen) < int(version)):
        return agent  # the copy is as new as the write, or versions are not comparable
    status = dict(agent.get("status") or {})
    others = [c for c in status.get("conditions") or [] if c.get("type") not in POLICY_CONDITIONS]
    status.update({k: v for k, v in fields.items() if k != "conditions"})
    status["conditions"] = others + list(fields.get("conditions") or [])
    return {**agent, "status": status}
