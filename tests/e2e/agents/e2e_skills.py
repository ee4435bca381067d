"""Skills of the e2e test agent. E2E_WORK (from the agent's env) is the test's scratch dir."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

GATE_TIMEOUT = 60.0


def _work() -> Path:
    return Path(os.environ["E2E_WORK"])


def echo(event: Any, ctx: Any) -> dict[str, Any]:
    """Reply with the event's data and who served it."""
    return {"echo": event.data, "pid": os.getpid()}


_inflight = {"now": 0, "max": 0}


async def hold(event: Any, ctx: Any) -> dict[str, Any]:
    """Hold the event until the test creates the gate file, so a burst overlaps.

    Replies with the most events this process ever held at once (to check concurrency).
    """
    _inflight["now"] += 1
    _inflight["max"] = max(_inflight["max"], _inflight["now"])
    try:
        deadline = time.monotonic() + GATE_TIMEOUT
        while not (_work() / "gate").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the test never opened the gate")
            await asyncio.sleep(0.02)
    finally:
        _inflight["now"] -= 1
    return {"n": event.data["n"], "pid": os.getpid(), "maxInflight": _inflight["max"]}


def flaky(event: Any, ctx: Any) -> dict[str, Any]:
    """Fail (500) until the test creates the `fixed` file; record every attempt's time."""
    with (_work() / "attempts.jsonl").open("a") as stream:
        stream.write(json.dumps({"time": time.time(), "id": event["id"]}) + "\n")
    if not (_work() / "fixed").exists():
        raise RuntimeError("flaky is not fixed yet")
    return {"fixed": True, "data": event.data}


def tick(event: Any, ctx: Any) -> dict[str, Any]:
    """A scheduled skill: say which event woke it."""
    return {"woken_by": event["type"], "data": event.data}


def crashy(event: Any, ctx: Any) -> dict[str, Any]:
    """Kill its own process on the first event it ever sees (a crash mid-request), then work."""
    marker = _work() / "crashed-once"
    if not marker.exists():
        marker.touch()
        os._exit(3)
    return {"pid": os.getpid()}


async def spend(event: Any, ctx: Any) -> dict[str, Any]:
    """One call to the test's OpenAI-compatible server: its tokens go to the ledger."""
    answer = await ctx.llm.chat([{"role": "user", "content": "spend some tokens"}])
    return {"spent": True, "content": getattr(answer, "content", None)}


def record(event: Any, ctx: Any) -> dict[str, Any]:
    """Append the event's `n` and id to records.jsonl: what ran, in which order, how often."""
    line = {"n": event.data["n"], "id": event["id"], "pid": os.getpid()}
    with (_work() / "records.jsonl").open("a") as stream:
        stream.write(json.dumps(line) + "\n")
    return {"n": event.data["n"]}
