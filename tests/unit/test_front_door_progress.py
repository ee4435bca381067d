"""A run's progress from the broker's record of its chain: each step once, then its end state."""

from __future__ import annotations

import asyncio
from typing import Any

from rouse_runtime.frontdoor.progress import RunState, chain_state, follow


def chain(pending: int, outcome: str = "replied", parked: bool = False) -> dict[str, Any]:
    return {
        "pending": pending,
        "events": [
            {
                "id": "e-1",
                "type": "com.example.ticket.created",
                "via": "send",
                "routedTo": ["triage"],
                "parked": parked,
                "deliveries": [
                    {"skill": "triage", "outcome": outcome, "attempts": 1, "replyType": "t"}
                ],
            }
        ],
    }


def test_a_chain_becomes_steps_and_a_state() -> None:
    running = chain_state(chain(1, "pending"))
    assert [s.key for s in running.steps] == ["e0"] and not running.over
    assert running.state == "running"
    done = chain_state(chain(0))
    assert [s.kind for s in done.steps] == ["event", "delivery"]
    assert done.steps[1].data["skill"] == "triage" and (done.over, done.state) == (True, "done")
    assert chain_state(chain(0, "dead_lettered")).state == "failed"
    assert chain_state(chain(0, "pending", parked=True)).state == "parked"


class Source:
    """A source whose run advances by one state per read."""

    def __init__(self, states: list[RunState]) -> None:
        self.states = states

    async def read(self, run: str) -> RunState | None:
        return self.states.pop(0)


def test_follow_sends_each_step_once_then_the_end() -> None:
    later = [chain_state(chain(1, "pending")), chain_state(chain(0))]

    async def collect() -> list[tuple[str, dict[str, Any]]]:
        first = chain_state(chain(1, "pending"))
        return [x async for x in follow(Source(later), "r1", first, poll=0)]

    got = asyncio.run(collect())
    assert [name for name, _ in got] == ["event", "delivery", "end"]
    assert got[-1][1] == {"run": "r1", "state": "done", "steps": 2}
