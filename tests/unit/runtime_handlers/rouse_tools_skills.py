"""Skills that call MCP tools through ctx.tools, for test_runtime_tools.py.

`call` makes the calls the event lists (`{"calls": [[name, {args}], ...]}`) and
replies with each result, or with the error a call raised (`{"error": class, "message"}`);
`{"raise": true}` leaves the error unhandled. `plain` is the same from a plain
`def` skill. `modules` says whether the mcp SDK was imported.
"""

from __future__ import annotations

import sys
from typing import Any

from rouse_runtime import CloudEvent, Context
from rouse_runtime.tools import ToolError


async def call(event: CloudEvent, ctx: Context) -> Any:
    data = event.data or {}
    loaded = "mcp" in sys.modules  # before any call: a skill that calls no tool never loads it
    results: list[Any] = []
    for name, arguments in data.get("calls", []):
        try:
            results.append(await ctx.tools.call(name, **arguments))
        except ToolError as exc:
            if data.get("raise"):
                raise
            results.append({"error": type(exc).__name__, "message": str(exc)})
    return {"results": results, "mcpLoaded": loaded}


def plain(event: CloudEvent, ctx: Context) -> Any:
    name, arguments = (event.data or {})["calls"][0]
    return {"results": [ctx.run(ctx.tools.call(name, **arguments))]}


async def listing(event: CloudEvent, ctx: Context) -> Any:
    return {"tools": await ctx.tools.list()}
