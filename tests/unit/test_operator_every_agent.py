"""The operator's periodic per-Agent loop (the policy evaluations) survives a call that never
returns: without a deadline one stuck evaluation stopped the loop, and every replay, for all
Agents (seen on the real node: parked events stranded after the operator restarted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
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


async def wait_for(event: asyncio.Event, what: str) -> None:
    """Wait for `event` (10 s at most); fail naming `what`."""
    try:
        async with asyncio.timeout(10):
            await event.wait()
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}")


async def never_answers() -> None:
    await asyncio.Event().wait()


async def test_a_call_past_its_deadline_is_cancelled_and_the_loop_goes_on(
    two_agents: None, caplog: pytest.LogCaptureFixture
) -> None:
    calls: dict[str, int] = {"stuck": 0, "fine": 0}
    again = asyncio.Event()

    async def evaluate(*, body: kopf.Body, namespace: str, name: str) -> None:
        calls[name] += 1
        if calls["stuck"] >= 2:
            again.set()
        if name == "stuck" and calls[name] == 1:
            await never_answers()

    loop_task = asyncio.create_task(
        handlers._every_agent_forever(0, 0.01, handlers._bounded(evaluate, 16, deadline=0.2))
    )
    try:
        with caplog.at_level(logging.WARNING, logger=handlers.log.name):
            await wait_for(again, "a second round after the stuck call")
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
    assert calls["fine"] >= 2
    warnings = [r.getMessage() for r in caplog.records if "did not finish" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "evaluate for ns/stuck" in warnings[0]
    assert "never_answers@test_operator_every_agent.py" in warnings[0], warnings[0]


async def test_a_call_that_fails_is_logged_and_the_next_round_runs_it_again(
    two_agents: None, caplog: pytest.LogCaptureFixture
) -> None:
    calls: dict[str, int] = {"stuck": 0, "fine": 0}
    again = asyncio.Event()

    async def evaluate(*, body: kopf.Body, namespace: str, name: str) -> None:
        calls[name] += 1
        if calls["stuck"] >= 2:
            again.set()
        if name == "stuck":
            raise RuntimeError("Prometheus said no")

    loop_task = asyncio.create_task(
        handlers._every_agent_forever(0, 0.01, handlers._bounded(evaluate, 16, deadline=5))
    )
    try:
        with caplog.at_level(logging.WARNING, logger=handlers.log.name):
            await wait_for(again, "a second round after the failure")
    finally:
        loop_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await loop_task
    assert any(
        "evaluate for ns/stuck failed: RuntimeError: Prometheus said no" in r.getMessage()
        for r in caplog.records
    )
