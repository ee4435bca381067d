"""The operator's periodic per-Agent loop (the policy evaluations) survives a call that never
returns: without a deadline one stuck evaluation stopped the loop, and every replay, for all
Agents (seen on the real node: parked events stranded after the operator restarted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import kopf
import pytest
from rouse_operator import handlers


@pytest.fixture
def two_agents() -> Iterator[None]:
    """Two known Agents, as kopf's watch would have recorded them."""
    saved = dict(handlers.STATE.bodies)
    handlers.STATE.bodies.clear()
    for name in ("stuck", "fine"):
        raw: Any = {"metadata": {"namespace": "ns", "name": name}}
        handlers.STATE.bodies[("ns", name)] = kopf.Body(raw)
    yield
    handlers.STATE.bodies.clear()
    handlers.STATE.bodies.update(saved)


class Rounds:
    """Runs the loop over the two Agents with `first_stuck` as the "stuck" Agent's first call
    (the "fine" one's calls return at once), until the stuck Agent is called a second time."""

    def __init__(self, first_stuck: Callable[[], Awaitable[None]], deadline: float) -> None:
        self.calls = {"stuck": 0, "fine": 0}
        self.first_stuck = first_stuck
        self.deadline = deadline
        self.again = asyncio.Event()

    async def evaluate(self, *, body: kopf.Body, namespace: str, name: str) -> None:
        self.calls[name] += 1
        if self.calls["stuck"] >= 2:
            self.again.set()
        if name == "stuck" and self.calls[name] == 1:
            await self.first_stuck()

    async def run(self, caplog: pytest.LogCaptureFixture) -> list[str]:
        """The loop's warnings until the stuck Agent's second call (10 s at most)."""
        bounded = handlers._bounded(self.evaluate, 16, self.deadline)
        loop_task = asyncio.create_task(handlers._every_agent_forever(0, 0.01, bounded))
        try:
            with caplog.at_level(logging.WARNING, logger=handlers.log.name):
                async with asyncio.timeout(10):
                    await self.again.wait()
        except TimeoutError:
            pytest.fail(f"no second round after the stuck Agent's first call: {self.calls}")
        finally:
            loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop_task
        return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def never_answers() -> None:
    await asyncio.Event().wait()


async def fails() -> None:
    raise RuntimeError("Prometheus said no")


async def test_a_call_past_its_deadline_is_cancelled_and_the_loop_goes_on(
    two_agents: None, caplog: pytest.LogCaptureFixture
) -> None:
    rounds = Rounds(never_answers, deadline=0.2)
    warnings = await rounds.run(caplog)
    assert rounds.calls["fine"] >= 2
    assert len(warnings) == 1, warnings
    assert "evaluate for ns/stuck did not finish in 0.2s" in warnings[0], warnings[0]
    assert "never_answers@test_operator_every_agent.py" in warnings[0], warnings[0]


async def test_a_call_that_fails_is_logged_and_the_next_round_runs_it_again(
    two_agents: None, caplog: pytest.LogCaptureFixture
) -> None:
    warnings = await Rounds(fails, deadline=5).run(caplog)
    assert warnings == ["evaluate for ns/stuck failed: RuntimeError: Prometheus said no"]
