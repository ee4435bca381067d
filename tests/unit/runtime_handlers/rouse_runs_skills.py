"""Skills for test_runtime_runs.py: one that notes a tool call, ones that run until cancelled.

Each run appends a line to the file named by ROUSE_TEST_RUNS (so a test counts
runs across processes); a skill told to `hold` writes `holding <id>` first and
then runs until its run is cancelled.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from rouse_runtime import CloudEvent, Context


def _mark(what: str, event: CloudEvent) -> None:
    with open(os.environ["ROUSE_TEST_RUNS"], "a") as f:
        f.write(f"{what} {event['id']}\n")


async def work(event: CloudEvent, ctx: Context) -> Any:
    data = event.data or {}
    _mark("ran", event)
    ctx.note("tool_call", tool="crm.lookup", ok=True)
    if data.get("hold"):
        _mark("holding", event)
        await asyncio.Event().wait()  # until the run is cancelled: the task is cancelled here
    if data.get("slow"):
        await asyncio.sleep(float(data["slow"]))
    return {"done": event["id"], "run": ctx.run_id}


def sync_work(event: CloudEvent, ctx: Context) -> Any:
    _mark("ran", event)
    _mark("holding", event)
    while True:  # a plain def: stopped at its next ctx call once cancelled
        time.sleep(0.05)
        ctx.step()
        if ctx.cancelled:  # never reached: ctx.step raised first
            _mark("saw cancelled", event)


def _first_failure() -> bool:
    marker = os.environ["ROUSE_TEST_RUNS"] + ".failed"
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True


async def joiner(event: CloudEvent, ctx: Context) -> Any:
    """A fan-in join: runs once per join with every result in part order."""
    joined = ctx.joined
    assert joined is not None, "a join skill runs only for a whole join"
    _mark("joined", event)
    data = event.data or {}
    if data.get("fail_once") and _first_failure():
        raise RuntimeError("the join fails once")
    return {"join": joined.id, "results": joined.results, "missing": joined.missing}


async def worker(event: CloudEvent, ctx: Context) -> Any:
    """A fan-out worker (no `join` of its own): says whether its process loaded runs/join.py."""
    return {"join_module_loaded": "rouse_runtime.runs.join" in sys.modules}
