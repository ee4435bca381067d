"""An escalation that waits for a human approval (ctx.wait_for), for test_local_suspend.py."""

from __future__ import annotations

import os
from typing import Any


async def escalate(event: Any, ctx: Any) -> Any:
    if ctx.resumed is not None:
        return {
            "ticket": ctx.resumed.checkpoint["ticket"],
            "approvedBy": event.data["by"],
            "suspendedIn": ctx.resumed.checkpoint["pid"],
            "resumedIn": os.getpid(),
        }
    if event["type"] == "e2e.urgent":
        ticket = event.data["ticket"]
        await ctx.wait_for("e2e.approved", key=ticket, data={"ticket": ticket, "pid": os.getpid()})
    return None  # an approval nobody waits for
