"""Skills that suspend with ctx.wait_for until an approval event, for test_runtime_suspend.py.

Each resumed run appends a line to the file named by ROUSE_TEST_RUNS, so a test
can count resumes across processes.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from rouse_runtime import CloudEvent, Context

APPROVED = "test.approved"


def _record_resume(event: CloudEvent) -> None:
    with open(os.environ["ROUSE_TEST_RUNS"], "a") as f:
        f.write(f"resumed {event['id']}\n")


def _resumed_reply(event: CloudEvent, ctx: Context) -> dict[str, Any]:
    assert ctx.resumed is not None
    data = event.data or {}
    if data.get("fail"):
        raise RuntimeError("approval handling failed")
    _record_resume(event)
    for _ in range(int(data.get("steps", 0))):
        ctx.step()
    return {
        "checkpoint": ctx.resumed.checkpoint,
        "origin": ctx.resumed.origin,
        "approval": data,
    }


async def escalate(event: CloudEvent, ctx: Context) -> Any:
    if ctx.resumed is not None:
        if (event.data or {}).get("sleep"):
            await asyncio.sleep(float(event.data["sleep"]))  # room for a concurrent approval
        return _resumed_reply(event, ctx)
    if event["type"] == "test.ticket":
        ticket = event.data["ticket"]
        ctx.partial = {"ticket": ticket, "stage": "awaiting approval"}
        try:
            await ctx.wait_for(APPROVED, key=ticket)
        except Exception:  # a broad except in a skill must not swallow the suspension
            return {"swallowed": True}
    return {"ordinary": event["type"], "rousekey": event.get("rousekey")}


def escalate_sync(event: CloudEvent, ctx: Context) -> Any:
    if ctx.resumed is not None:
        time.sleep(0)
        return _resumed_reply(event, ctx)
    if event["type"] == "test.ticket":
        ctx.run(ctx.wait_for(APPROVED, key=event.data["ticket"], data={"sync": True}))
    return {"ordinary": event["type"]}
