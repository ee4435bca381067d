"""Daily budget: is an agent still allowed to spend today (UTC)?

Usage is the agent's tokens and cost since the last reset at 00:00 UTC. When
either daily limit is reached the agent is suspended and `onExhausted` says
what happens to its events: `park` (stored, replayed at reset) or `reject`
(the runtime answers 429). It resumes at the next reset, or earlier when the
limits are raised. Without usage figures (Prometheus gap) the last decision is
held and marked stale: a gap never suspends nor resumes an agent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

OnExhausted = Literal["park", "reject"]
Action = Literal["none", "park", "reject"]

DEFAULT_NEARLY_SPENT = 0.9


@dataclass(frozen=True)
class BudgetSpec:
    """`spec.budget.daily` and `onExhausted`; a missing limit is unlimited."""

    daily_tokens: float | None = None
    daily_cost_usd: float | None = None
    on_exhausted: OnExhausted = "park"
    nearly_spent_fraction: float = DEFAULT_NEARLY_SPENT

    @classmethod
    def from_agent(cls, spec: dict[str, Any]) -> BudgetSpec:
        """Read the daily limits from an Agent spec (CRD defaults when absent)."""
        budget = spec.get("budget") or {}
        daily = budget.get("daily") or {}
        on_exhausted: OnExhausted = "reject" if budget.get("onExhausted") == "reject" else "park"
        tokens, cost = daily.get("tokens"), daily.get("costUSD")
        return cls(
            daily_tokens=None if tokens is None else float(tokens),
            daily_cost_usd=None if cost is None else float(cost),
            on_exhausted=on_exhausted,
        )


@dataclass(frozen=True)
class Usage:
    """Tokens and cost an agent spent since the last reset (00:00 UTC)."""

    tokens: float
    cost_usd: float
    # Whether the ledger holds any line of the agent today: "spent 0" vs "nothing recorded"
    # (e.g. runtimes keyed under another namespace), which a 0 alone cannot tell apart.
    recorded: bool = True
    # Tokens from models without a known price: counted at $0, so a cost limit misses them.
    unpriced_tokens: float = 0


@dataclass(frozen=True)
class BudgetDecision:
    """Whether the agent may spend, what to do with its events, and why."""

    within_budget: bool
    suspended: bool
    nearly_spent: bool
    action: Action
    tokens_today: float
    cost_today_usd: float
    resets_at: datetime
    reason: str
    message: str
    stale: bool = False


def period_start(now: datetime) -> datetime:
    """The last reset: 00:00 UTC of `now`'s day."""
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


def next_reset(now: datetime) -> datetime:
    """The next reset: 00:00 UTC of the following day."""
    return period_start(now) + timedelta(days=1)


def resumed(previous: BudgetDecision | None, decision: BudgetDecision) -> bool:
    """A suspended agent may spend again: replay its parked events, restore Triggers."""
    return previous is not None and previous.suspended and not decision.suspended


def replay_due(decision: BudgetDecision | None, parked: float | None, owed: bool = False) -> bool:
    """Whether the agent's parked events must be replayed now (the operator and `rouse dev`).

    While the agent may spend (no daily budget, or within it), any parked event
    (`parked`: how many the parking queue holds, None when unknown) or a replay
    still `owed` (resumed from park, a failed or unfinished replay) makes a replay
    due, whatever parked the events and whatever the budget says now: removing
    the budget or switching `onExhausted` to reject never strands them.
    """
    if decision is not None and decision.suspended:
        return False
    return owed or bool(parked)


def _share(used: float, limit: float | None) -> float:
    if limit is None:
        return 0.0
    return used / limit if limit > 0 else float("inf")


def _limit(limit: float | None, fmt: str) -> str:
    return "unlimited" if limit is None else fmt.format(limit)


def decide(
    spec: BudgetSpec,
    usage: Usage | None,
    previous: BudgetDecision | None,
    now: datetime,
) -> BudgetDecision:
    """Judge today's usage against the daily limits."""
    if usage is None:
        if previous is not None:
            return replace(
                previous,
                stale=True,
                reason="MetricsUnavailable",
                message=f"no usage figures: holding the last decision ({previous.reason})",
            )
        return BudgetDecision(
            within_budget=True,
            suspended=False,
            nearly_spent=False,
            action="none",
            tokens_today=0.0,
            cost_today_usd=0.0,
            resets_at=next_reset(now),
            reason="MetricsUnavailable",
            message="no usage figures yet: not suspending without data",
            stale=True,
        )

    resets_at = next_reset(now)
    token_share = _share(usage.tokens, spec.daily_tokens)
    cost_share = _share(usage.cost_usd, spec.daily_cost_usd)
    spent = token_share >= 1.0 or cost_share >= 1.0
    nearly = max(token_share, cost_share) >= spec.nearly_spent_fraction
    figures = (
        f"{usage.tokens:.0f}/{_limit(spec.daily_tokens, '{:.0f}')} tokens, "
        f"${usage.cost_usd:g}/{_limit(spec.daily_cost_usd, '${:g}')}"
    )
    if spent:
        reason = "TokensExhausted" if token_share >= 1.0 else "CostExhausted"
        message = (
            f"daily budget spent ({figures}); {spec.on_exhausted} until {resets_at.isoformat()}"
        )
    elif previous is not None and previous.suspended:
        reason = "BudgetReset" if now >= previous.resets_at else "BudgetRaised"
        message = f"resumed ({figures})"
    elif spec.daily_tokens is None and spec.daily_cost_usd is None:
        reason, message = "NoDailyBudget", "no daily limits set"
    elif not usage.recorded:
        reason = "NoSpendRecorded"
        message = f"no ledger line for this agent today: 0 spent or not recorded ({figures})"
    elif usage.unpriced_tokens and spec.daily_cost_usd is not None:
        reason = "UnpricedModel"
        message = (
            f"{usage.unpriced_tokens:.0f} tokens today came from models without a known price"
            f" (genai-prices, ROUSE_LLM_PRICES) and count $0 toward costUSD ({figures})"
        )
    elif nearly:
        reason, message = "NearlySpent", f"over {spec.nearly_spent_fraction:.0%} used ({figures})"
    else:
        reason, message = "WithinBudget", figures
    return BudgetDecision(
        within_budget=not spent,
        suspended=spent,
        nearly_spent=nearly,
        action=spec.on_exhausted if spent else "none",
        tokens_today=usage.tokens,
        cost_today_usd=usage.cost_usd,
        resets_at=resets_at,
        reason=reason,
        message=message,
    )
