"""Local mode's side of the budget decision: park events, close the 429 gate, replay at reset.

The cluster re-points a suspended agent's Triggers at the parking service; here
the broker asks ``LocalParking.parking`` before delivering and, while it is set,
stores each routed event in the same parking queue (``rouse_runtime.parking``,
in the same state store) instead. When the agent may spend again (the daily
reset, or a restart with a raised budget) the parked events are sent back into
their skills in order by the parking service's own replayer (``parking/replay.py``),
each to the skill it was parked for; schedule ticks parked meanwhile are
coalesced to one per skill. Every decision is written to the runtime's budget
gate (``budget_gate.sync_gate``), so with ``onExhausted: reject`` the skill
processes answer 429, and with ``park`` a front door answers 503, as in a cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
from cloudevents.http import CloudEvent

from rouse_runtime.budget_gate import sync_gate
from rouse_runtime.events import dump_event
from rouse_runtime.parking.queue import Filter, open_queue
from rouse_runtime.parking.replay import Replayer, ReplayResult, Target
from rouse_runtime.policies import budget as budget_policy
from rouse_runtime.policies.budget import BudgetDecision
from rouse_runtime.store import StoreError, open_store

# Local mode's namespace: skill processes get it as ROUSE_NAMESPACE, so the
# ledger lines, the budget gate and the parked events all carry it, and
# `rouse parked replay default <agent>` reads as it would in a cluster.
LOCAL_NAMESPACE = "default"

Log = Callable[[str], None]


def skill_url(broker_url: str, skill: str) -> str:
    """A skill's own address on the local broker (`POST /skills/<skill>`, as a Trigger's
    subscriber URI in a cluster): where replays of parked events deliver."""
    return f"{broker_url.rstrip('/')}/skills/{skill}"


class LocalParking:
    """Whether the agent's events are parked now, and the queue that holds them."""

    def __init__(
        self,
        agent: str,
        state_url: str,
        *,
        broker_url: Callable[[], str],
        log: Log,
        namespace: str = LOCAL_NAMESPACE,
    ) -> None:
        self.agent = agent
        self.namespace = namespace
        self.queue = open_queue(state_url)
        self.store = open_store(state_url)
        self.decision: BudgetDecision | None = None
        self.counts: dict[str, int] = {}
        # Held while the budget state changes or a replay runs: a replay never
        # overlaps the start of a suspension (it would park its own events again).
        self.lock = asyncio.Lock()
        self._broker_url = broker_url
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()
        # While a replay drains the queue: newcomers are parked behind it.
        self._draining = False

    @property
    def parking(self) -> bool:
        """Events are stored instead of delivered (budget spent, onExhausted: park)."""
        return (
            self.decision is not None and self.decision.suspended and self.decision.action == "park"
        )

    @property
    def phase(self) -> str:
        """The agent's phase as the cluster's status would show it."""
        return "Suspended" if self.decision is not None and self.decision.suspended else "Running"

    def holds(self, event: CloudEvent) -> bool:
        """Whether the broker must park this event instead of delivering it.

        While the budget is spent, every event. While a replay drains the queue,
        every event: a newcomer goes to the back of the queue, so nothing
        overtakes an older parked event (the replay sends to the skills
        directly, never through this check).
        """
        if self._draining:
            return True
        return self.parking

    def where(self) -> Filter:
        return Filter(namespace=self.namespace, agent=self.agent, kind="park")

    async def park(self, event: CloudEvent, skills: list[str]) -> int:
        """Store the event once per skill it was routed to; how many copies are new."""
        text = dump_event(event)
        stored = 0
        for skill in skills:
            new = await self.queue.append(
                "park",
                self.namespace,
                self.agent,
                skill,
                str(event["source"]),
                str(event["id"]),
                text,
            )
            if new:  # a redelivery of a parked event is held once
                stored += 1
                self.counts[skill] = self.counts.get(skill, 0) + 1
        return stored

    async def refresh_counts(self) -> dict[str, int]:
        """Parked events per skill, read from the queue (``rouse parked drop`` changes it too)."""
        counts: dict[str, int] = {}
        for (namespace, agent, skill, kind), n in (await self.queue.counts()).items():
            if (namespace, agent, kind) == (self.namespace, self.agent, "park"):
                counts[skill] = n
        self.counts = counts
        return counts

    async def on_budget(self, decision: BudgetDecision) -> None:
        """The policy loop's callback: called with the first decision and on every change."""
        async with self.lock:
            was_suspended = self.decision is not None and self.decision.suspended
            self.decision = decision
            try:
                await sync_gate(self.store, self.namespace, self.agent, decision)
            except StoreError as exc:
                self._log(f"budget: cannot write the 429 gate: {exc}")
            if decision.suspended:
                verb = "parking its events" if self.parking else "skills answer 429"
                self._log(f"budget: agent {self.agent} SUSPENDED ({decision.message}); {verb}")
                return
            if was_suspended:
                self._log(
                    f"budget: agent {self.agent} resumed ({decision.reason}: {decision.message})"
                )
        self.replay_soon()

    async def settle(self, decision: BudgetDecision | None) -> None:
        """The operator's rules at each evaluation: without a daily budget the 429 gate is open
        (one closed in an earlier run is opened); while the agent may spend, anything parked is
        replayed (`budget.replay_due`), whatever parked it (a replay that failed or stopped
        early, a budget removed or switched to reject before a restart)."""
        if decision is None:
            await sync_gate(self.store, self.namespace, self.agent, None)
        if self._tasks:  # a replay is running or queued behind the lock
            return
        parked = sum((await self.refresh_counts()).values())
        if budget_policy.replay_due(decision, parked):
            self.replay_soon()

    def replay_soon(self) -> None:
        """Replay in the background (the broker may not be serving yet when this is called)."""
        task = asyncio.create_task(self.replay())
        self._tasks.add(task)
        task.add_done_callback(self._replay_done)

    def _replay_done(self, task: asyncio.Task[ReplayResult]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log(f"replay of parked events failed: {task.exception()!r}")

    async def replay(self) -> ReplayResult:
        """Send every parked event of the agent to its skill, oldest first."""
        async with self.lock:
            return await self._replay_locked()

    async def _replay_locked(self) -> ReplayResult:
        """The cluster's replay (parking/replay.py): each event to its skill's own address.

        While it runs, newcomers are parked behind it (``holds``), so none
        overtakes an older parked event; the replayer drains them too.
        """
        replayed = coalesced = 0
        try:
            async with httpx.AsyncClient(timeout=None) as client:
                replayer = Replayer(self.queue, self.store, client)
                while True:
                    self._draining = True
                    result = await replayer.replay(
                        self.namespace,
                        self.agent,
                        self._target,
                        reply_to=None,  # the local broker routes the skills' replies itself
                    )
                    replayed += result.replayed
                    coalesced += result.coalesced
                    # Newcomers go straight to their skills from here on; one parked behind
                    # the replay after its last read is caught by the count (never stranded).
                    self._draining = False
                    if result.error is not None or result.busy or self.parking:
                        break
                    if not result.more and await self.queue.count(self.where()) == 0:
                        break
        except StoreError as exc:
            self._log(f"cannot replay parked events: {exc}")
            return ReplayResult(replayed, 0, remaining=-1, error=str(exc))
        finally:
            self._draining = False
        result = replace(result, replayed=replayed, coalesced=coalesced)
        if result.replayed or result.error or result.coalesced:
            self._log(
                f"replayed {result.replayed} parked event(s) in order to their skills"
                + (f", {result.coalesced} schedule tick(s) coalesced" if result.coalesced else "")
                + f", {result.remaining} left"
                + (f": {result.error}" if result.error else "")
            )
        with contextlib.suppress(StoreError):
            await self.refresh_counts()
        return result

    def _target(self, skill: str) -> Target:
        """A skill's own address on the local broker; its delivery spec applies there."""
        return Target(skill_url(self._broker_url(), skill))

    def as_json(self) -> dict[str, Any]:
        """The budget part of GET /skills."""
        decision = self.decision
        if decision is None:
            return {"phase": self.phase, "parked": sum(self.counts.values())}
        return {
            "phase": self.phase,
            "parked": sum(self.counts.values()),
            "withinBudget": decision.within_budget,
            "action": decision.action,
            "tokensToday": decision.tokens_today,
            "costTodayUSD": decision.cost_today_usd,
            "resetsAt": decision.resets_at.isoformat(),
            "reason": decision.reason,
            "message": decision.message,
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.queue.close()
        await self.store.close()
