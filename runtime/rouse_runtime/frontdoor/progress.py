"""Where a run's progress is read from, and how a client follows it (`GET /runs/<run>`).

A run is everything one front-door request caused: its id is the trace id the
request started, which `ctx.emit` carries onto every event it hands off, and
the broker onto every reply. `ProgressSource` is the one thing a follower needs:
the run's steps so far and whether it is over. Today's source is what the
platform records of a chain (`BrokerChains`: local mode's broker, `GET
/chains/<run>`); the event-sourced run history of the runs work is the source to
put behind the same interface where it exists.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import httpx

POLL_SECONDS = 0.2
# Outcomes of a delivery that end it (the broker's Delivery.outcome).
FINAL = frozenset({"replied", "accepted", "dead_lettered", "failed"})
FAILED = frozenset({"dead_lettered", "failed"})


@dataclass(frozen=True)
class Step:
    """One thing that happened in a run; `key` is stable, so a follower sends each once."""

    key: str
    kind: str  # event | delivery
    data: dict[str, Any]


@dataclass(frozen=True)
class RunState:
    """A run as a source sees it now."""

    steps: list[Step] = field(default_factory=list)
    over: bool = False
    state: str = "running"  # running | done | failed | parked


class ProgressSource(Protocol):
    """Reads a run; None when the source knows no such run."""

    async def read(self, run: str) -> RunState | None: ...


def chain_state(chain: dict[str, Any]) -> RunState:
    """A run from the broker's record of its chain (`GET /chains/<id>`)."""
    steps: list[Step] = []
    failed = parked = False
    for i, event in enumerate(chain.get("events") or []):
        steps.append(
            Step(
                f"e{i}",
                "event",
                {
                    "id": event["id"],
                    "type": event["type"],
                    "via": event["via"],
                    "routedTo": event.get("routedTo") or [],
                    "parked": bool(event.get("parked")),
                },
            )
        )
        parked = parked or bool(event.get("parked"))
        for j, delivery in enumerate(event.get("deliveries") or []):
            if delivery.get("outcome") not in FINAL:
                continue
            failed = failed or delivery["outcome"] in FAILED
            steps.append(
                Step(
                    f"d{i}.{j}",
                    "delivery",
                    {
                        "event": event["id"],
                        "type": event["type"],
                        "skill": delivery["skill"],
                        "outcome": delivery["outcome"],
                        "attempts": delivery.get("attempts"),
                        "cold": delivery.get("cold"),
                        "seconds": delivery.get("seconds"),
                        "reply": delivery.get("replyType"),
                        "error": delivery.get("error"),
                    },
                )
            )
    over = int(chain.get("pending") or 0) == 0
    state = "running" if not over else "failed" if failed else "parked" if parked else "done"
    return RunState(steps, over, state)


class BrokerChains:
    """Progress from the broker's chain records (local mode): `url` has a `{run}` placeholder."""

    def __init__(self, url: str, http: Callable[[], httpx.AsyncClient]) -> None:
        self.url = url
        self._http = http
        # A follower polls five times a second: httpx's line per request would drown the
        # front door's log (its own lines say what it emitted and spent).
        logging.getLogger("httpx").setLevel(logging.WARNING)

    async def read(self, run: str) -> RunState | None:
        response = await self._http().get(self.url.format(run=run))
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return chain_state(response.json())


async def follow(
    source: ProgressSource, run: str, first: RunState, poll: float = POLL_SECONDS
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event name, data) for each new step of the run, then `end` with its state."""
    seen: set[str] = set()
    state: RunState | None = first
    while True:
        if state is not None:
            for step in state.steps:
                if step.key not in seen:
                    seen.add(step.key)
                    yield step.kind, step.data
            if state.over:
                yield "end", {"run": run, "state": state.state, "steps": len(seen)}
                return
        await asyncio.sleep(poll)
        state = await source.read(run)


# Run-history states (runs/history.py) a follower stops at, and the names it reports them by.
_OVER_NAMES = {
    "completed": "done",
    "failed": "failed",
    "cancelled": "cancelled",
    "budget_stopped": "budget_stopped",
}


class RunHistory:
    """A run from the event-sourced run history (runs/): the source in a cluster, where no
    broker keeps chains. Each finished step is sent once (its place in the run is its key)."""

    def __init__(self, runlog: Callable[[], Any], namespace: str, agent: str) -> None:
        self._runlog = runlog  # the runtime's own RunLog, opened on first use
        self._namespace = namespace
        self._agent = agent

    async def read(self, run: str) -> RunState | None:
        from rouse_runtime.runs.history import fold

        view = fold(await self._runlog().history(self._namespace, self._agent, run))
        if view is None:
            return None
        steps = [
            Step(f"s{i}", "delivery", step.as_json())
            for i, step in enumerate(view.steps)
            if step.outcome != "running"
        ]
        state = _OVER_NAMES.get(view.state, view.state)
        return RunState(steps, view.state in _OVER_NAMES, state)
