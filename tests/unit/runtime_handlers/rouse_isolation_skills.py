"""A skill touching every kind of stored data (state, checkpoint, waits), for test_runtime_isolation.py.

Each reply names the namespace that ran it, so a test sees whose run answered.
"""

from __future__ import annotations

import os
from typing import Any

from rouse_runtime import CloudEvent, Context


async def keeper(event: CloudEvent, ctx: Context) -> Any:
    namespace = os.environ["ROUSE_NAMESPACE"]
    kind = event["type"].removeprefix("iso.")
    if kind == "set":  # the reply of a first run is stored: a redelivery gets it back
        await ctx.state.set("k", namespace)
        return {"ran": namespace}
    if kind == "get":
        return {"ran": namespace, "value": await ctx.state.get("k")}
    if kind == "checkpoint":
        before = await ctx.state.restore()
        await ctx.state.checkpoint(namespace)
        return {"ran": namespace, "before": before}
    if kind == "wait":
        await ctx.wait_for("iso.approved", key="K-1", data=namespace)
    if kind == "approved":
        return {
            "ran": namespace,
            "resumed": None if ctx.resumed is None else ctx.resumed.checkpoint,
        }
    raise ValueError(f"unexpected event type {event['type']}")
