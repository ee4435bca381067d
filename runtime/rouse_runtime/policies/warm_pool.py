"""Warm pool: how many instances of a skill to keep warm (`min-scale`).

A change starts or stops pods (the operator puts min-scale on the Revisions, so
it rolls out no new Revision; before issue 13 each change did), so the policy
moves rarely: it needs enough traffic before warming (hysteresis between the
raise and idle thresholds), keeps a value for at least the minimum dwell time
and never changes more than once per `window`. Only two things bypass that
rate limit, because both stop spending or obey the user: a budget that is
nearly spent (drop to `scaling.min`) and a current value outside the spec's
bounds. Without metrics (Prometheus gap) it holds: never flap to zero or max.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from croniter import croniter

from rouse_runtime.policies.durations import parse_duration

DEFAULT_WINDOW = "15m"
DEFAULT_COLD_START_TARGET = 0.05
DEFAULT_POOL_MAX = 1  # the CRD default when spec.warmPool is present


@dataclass(frozen=True)
class Schedule:
    """Keep at least `min` warm for `duration_seconds` after each `cron` tick (UTC)."""

    cron: str
    duration_seconds: float
    min: int

    def active(self, now: datetime) -> bool:
        """Whether `now` falls inside a period opened by the latest cron tick."""
        # get_prev excludes its start, so look back from just after `now`: a tick at `now` counts.
        ticked: datetime = croniter(self.cron, now + timedelta(seconds=1)).get_prev(datetime)
        return now < ticked + timedelta(seconds=self.duration_seconds)


@dataclass(frozen=True)
class WarmPoolSpec:
    """The parts of an Agent spec the warm pool reads, for one skill."""

    scaling_min: int
    pool_max: int
    cold_start_target: float
    window_seconds: float
    schedules: tuple[Schedule, ...] = ()

    @classmethod
    def from_agent(cls, spec: dict[str, Any], skill: dict[str, Any]) -> WarmPoolSpec:
        """Read `spec.warmPool` and the skill's `scaling.min` (no warmPool: nothing kept warm)."""
        pool = spec.get("warmPool")
        if pool is None:
            pool = {"max": 0}
        scaling = skill.get("scaling") or {}
        return cls(
            scaling_min=int(scaling.get("min", 0)),
            pool_max=int(pool.get("max", DEFAULT_POOL_MAX)),
            cold_start_target=float(pool.get("coldStartTarget", DEFAULT_COLD_START_TARGET)),
            window_seconds=parse_duration(pool.get("window", DEFAULT_WINDOW)),
            schedules=tuple(
                Schedule(
                    cron=str(item["cron"]),
                    duration_seconds=parse_duration(item["duration"]),
                    min=int(item["min"]),
                )
                for item in pool.get("schedules") or []
            ),
        )


@dataclass(frozen=True)
class Tuning:
    """Thresholds that give the policy its hysteresis; defaults suit most agents."""

    # Fewer invocations than this in a window never justify warm capacity.
    raise_min_invocations: int = 5
    # At most this many invocations in a window is idle: release the warm pool.
    idle_max_invocations: int = 1
    # A value stays at least this long even when the window is shorter.
    min_dwell_seconds: float = 300.0


@dataclass(frozen=True)
class SkillWindow:
    """A skill's traffic over the last `window` (exact counts from the ledger)."""

    invocations: float
    cold_starts: float

    @property
    def cold_share(self) -> float:
        """Share of invocations that started a cold process (0 when idle)."""
        return self.cold_starts / self.invocations if self.invocations > 0 else 0.0


@dataclass(frozen=True)
class WarmPoolState:
    """What is applied now and when it last changed (None: never by the policy)."""

    min_scale: int
    last_change: datetime | None = None


@dataclass(frozen=True)
class WarmPoolDecision:
    """The min-scale to apply, whether it differs from the current one, and why."""

    min_scale: int
    changed: bool
    reason: str
    message: str
    last_change: datetime | None = field(default=None)


def schedule_floor(spec: WarmPoolSpec, now: datetime) -> int:
    """The largest `min` among schedules active at `now` (0 when none is)."""
    return max((item.min for item in spec.schedules if item.active(now)), default=0)


def _demand(
    spec: WarmPoolSpec, metrics: SkillWindow, current: int, tuning: Tuning
) -> tuple[int, str, str]:
    share = metrics.cold_share
    seen = f"{metrics.cold_starts:g} cold of {metrics.invocations:g} invocations"
    if metrics.invocations >= tuning.raise_min_invocations and share > spec.cold_start_target:
        return (
            current + 1,
            "ColdStartsAboveTarget",
            f"cold-start share {share:.1%} > target {spec.cold_start_target:.1%} ({seen})",
        )
    if metrics.invocations <= tuning.idle_max_invocations:
        return 0, "Idle", f"idle: {seen} in the window"
    return current, "Steady", f"cold-start share {share:.1%} within target ({seen})"


def decide(
    spec: WarmPoolSpec,
    metrics: SkillWindow | None,
    state: WarmPoolState,
    now: datetime,
    *,
    budget_nearly_spent: bool = False,
    tuning: Tuning = Tuning(),
) -> WarmPoolDecision:
    """Choose a skill's min-scale within `[scaling.min, warmPool.max]`."""
    floor = spec.scaling_min
    ceiling = max(spec.pool_max, floor)
    current = state.min_scale
    hold = WarmPoolDecision(current, False, "", "", state.last_change)

    def change(target: int, reason: str, message: str) -> WarmPoolDecision:
        return WarmPoolDecision(target, True, reason, message, now)

    if budget_nearly_spent:
        message = f"budget nearly spent: not kept warm (min-scale {floor})"
        if current != floor:
            return change(floor, "BudgetNearlySpent", message)
        return replace(hold, reason="BudgetNearlySpent", message=message)
    if not floor <= current <= ceiling:
        target = min(max(current, floor), ceiling)
        return change(target, "OutOfBounds", f"min-scale {current} outside [{floor}, {ceiling}]")
    if metrics is None:
        return replace(
            hold,
            reason="MetricsUnavailable",
            message=f"no metrics: holding min-scale {current}",
        )

    wanted, reason, message = _demand(spec, metrics, current, tuning)
    scheduled = min(schedule_floor(spec, now), ceiling)
    target = min(max(wanted, floor, scheduled), ceiling)
    if target > wanted and scheduled > floor:
        reason, message = "Schedule", f"schedule keeps {scheduled} warm; {message}"
    elif target < wanted:
        reason, message = "AtMaximum", f"warmPool.max {ceiling} reached; {message}"
    if target == current:
        return replace(hold, reason=reason, message=message)

    dwell = timedelta(seconds=max(spec.window_seconds, tuning.min_dwell_seconds))
    if state.last_change is not None and now < state.last_change + dwell:
        allowed = (state.last_change + dwell).isoformat()
        return replace(
            hold,
            reason="RateLimited",
            message=f"wants {target} ({reason}: {message}); next change allowed at {allowed}",
        )
    return change(target, reason, message)
