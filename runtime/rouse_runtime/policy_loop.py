"""The policies without Prometheus: local mode evaluates them straight from the ledger.

`rouse dev` has no Prometheus, but its runtime processes record every
invocation into the same ledger (the state store). `LocalPolicyLoop` snapshots
the ledger every `interval` seconds, derives each skill's exact window
(invocations and cold starts since the snapshot `window` ago) and today's
usage, runs the same pure policies as the operator, and hands the results to
callbacks: `on_min_scale(skill, n)` (keep n processes warm) and
`on_budget(decision)` (park while suspended; replay when it resumes).
"""

from __future__ import annotations

import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rouse_runtime.ledger import Ledger, Line, utc_day
from rouse_runtime.policies import budget as budget_policy
from rouse_runtime.policies import warm_pool
from rouse_runtime.policies.budget import BudgetDecision, BudgetSpec, Usage
from rouse_runtime.policies.warm_pool import SkillWindow, Tuning, WarmPoolDecision, WarmPoolSpec

MinScaleCallback = Callable[[str, int], Awaitable[None] | None]
BudgetCallback = Callable[[BudgetDecision], Awaitable[None] | None]


@dataclass
class LedgerWindows:
    """Exact windows from successive ledger snapshots (counters only grow)."""

    history: dict[str, deque[tuple[datetime, int, int]]] = field(default_factory=dict)

    def observe(self, lines: list[Line], skills: list[str], now: datetime, keep: timedelta) -> None:
        """Snapshot each skill; one with no ledger line has truly run 0 times so far."""
        totals = {line.skill: (line.invocations, line.cold_starts) for line in lines}
        for skill in skills:
            invocations, cold_starts = totals.get(skill, (0, 0))
            snapshots = self.history.setdefault(skill, deque())
            snapshots.append((now, invocations, cold_starts))
            while len(snapshots) > 1 and snapshots[1][0] <= now - keep:
                snapshots.popleft()

    def window(self, skill: str, now: datetime, seconds: float) -> SkillWindow:
        """Growth since the newest snapshot at least `seconds` old (else the oldest one)."""
        snapshots = self.history.get(skill)
        if not snapshots:
            return SkillWindow(invocations=0, cold_starts=0)
        edge = now - timedelta(seconds=seconds)
        base = snapshots[0]
        for snapshot in snapshots:
            if snapshot[0] <= edge:
                base = snapshot
        latest = snapshots[-1]
        return SkillWindow(invocations=latest[1] - base[1], cold_starts=latest[2] - base[2])


async def _call(callback: Callable[..., Any], *args: Any) -> None:
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


@dataclass
class LocalPolicyLoop:
    agent: dict[str, Any]
    ledger: Ledger
    on_min_scale: MinScaleCallback
    on_budget: BudgetCallback
    namespace: str = ""
    interval: float = 10.0
    tuning: Tuning = field(default_factory=Tuning)
    windows: LedgerWindows = field(default_factory=LedgerWindows)
    states: dict[str, warm_pool.WarmPoolState] = field(default_factory=dict)
    budget: BudgetDecision | None = None

    async def evaluate_once(
        self, now: datetime | None = None
    ) -> tuple[dict[str, WarmPoolDecision], BudgetDecision | None]:
        """One round: snapshot the ledger, decide, call back on every change."""
        now = now or datetime.now(UTC)
        spec, name = self.agent["spec"], self.agent["metadata"]["name"]
        lines = [
            line
            for line in await self.ledger.lines(day=utc_day(now))
            if line.namespace == self.namespace and line.agent == name
        ]
        pools = {s["name"]: WarmPoolSpec.from_agent(spec, s) for s in spec["skills"]}
        longest = max((p.window_seconds for p in pools.values()), default=0.0)
        self.windows.observe(lines, list(pools), now, timedelta(seconds=longest + self.interval))

        decision: BudgetDecision | None = None
        daily = (spec.get("budget") or {}).get("daily") or {}
        if daily.get("tokens") is not None or daily.get("costUSD") is not None:
            usage = Usage(
                tokens=sum(line.tokens_day for line in lines),
                cost_usd=sum(line.cost_nano_usd_day for line in lines) / 1e9,
                unpriced_tokens=sum(line.unpriced_tokens_day for line in lines),
            )
            previous = self.budget
            decision = budget_policy.decide(BudgetSpec.from_agent(spec), usage, previous, now)
            self.budget = decision
            if previous is None or previous.suspended != decision.suspended:
                await _call(self.on_budget, decision)

        cold_down = decision is not None and (decision.nearly_spent or decision.suspended)
        decisions: dict[str, WarmPoolDecision] = {}
        for skill, pool in pools.items():
            state = self.states.get(skill, warm_pool.WarmPoolState(pool.scaling_min))
            made = warm_pool.decide(
                pool,
                self.windows.window(skill, now, pool.window_seconds),
                state,
                now,
                budget_nearly_spent=cold_down,
                tuning=self.tuning,
            )
            decisions[skill] = made
            self.states[skill] = warm_pool.WarmPoolState(made.min_scale, made.last_change)
            if made.changed:
                await _call(self.on_min_scale, skill, made.min_scale)
        return decisions, decision
