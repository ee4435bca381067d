"""Skills the runtime tests serve: one async skill dispatching on the event type, one sync skill.

Side effects that tests count (runs of an event) are appended to the file named by
ROUSE_TEST_RUNS, one line per run, so duplicates are visible across processes.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from rouse_runtime import BudgetExceeded, CloudEvent, Context


def _record_run(event: CloudEvent) -> int:
    path = os.environ["ROUSE_TEST_RUNS"]
    with open(path, "a") as f:
        f.write(f"{event['source']} {event['id']}\n")
    with open(path) as f:
        return sum(1 for _ in f)


async def skill(event: CloudEvent, ctx: Context) -> Any:
    kind = event["type"].removeprefix("test.")
    data = event.data
    if kind == "echo":
        return {"echo": data}
    if kind == "none":
        return None
    if kind == "inspect":
        return {
            "python_type": type(data).__name__,
            "hex": data.hex() if isinstance(data, bytes) else None,
            "value": None if isinstance(data, bytes) else data,
        }
    if kind == "bytes":
        return bytes(data)
    if kind == "cloudevent":
        return CloudEvent(
            {"type": "custom.made", "source": "/custom", "id": "custom-1", "subject": "s1"},
            {"custom": True},
        )
    if kind == "echo_counted":  # a side effect, then data echoed inside JSON
        n = _record_run(event)
        await asyncio.sleep(0.3 if n == 1 else 0)  # room for a concurrent duplicate
        return {"echo": data}
    if kind == "bytes_event":
        return CloudEvent({"type": "custom.blob", "source": "/custom", "id": "blob-1"}, data)
    if kind == "typed_extensions":  # attributes no header carries as they are
        attrs = {"type": "custom.typed", "source": "/custom", "id": "typed-1"}
        return CloudEvent({**attrs, "priority": 5, "urgent": True, "subject": "naïve ✓"}, data)
    if kind == "bytes_partial":
        ctx.partial = {"raw": data}
        while True:
            ctx.step()
    if kind == "unserializable":
        return {"a set": {1, 2}}
    if kind == "fail":
        raise ValueError("the skill failed on purpose")
    if kind == "steps":
        done: list[int] = []
        while True:
            ctx.step()
            done.append(len(done) + 1)
            ctx.partial = {"done": list(done)}
    if kind == "tools":
        calls: list[str] = []
        while True:
            ctx.tool("search", query=f"q{len(calls)}")
            calls.append(f"q{len(calls)}")
            ctx.partial = {"calls": list(calls)}
    if kind == "tokens":
        answers: list[str] = []
        while True:
            result = await ctx.llm.chat([{"role": "user", "content": f"part {len(answers)}"}])
            answers.append(result.content)
            ctx.partial = {"answers": list(answers)}
    if kind == "slow":
        await ctx.state.checkpoint({"stage": "before sleep"})
        await asyncio.sleep(60)
        return {"never": True}
    if kind == "count":
        n = _record_run(event)
        await asyncio.sleep(float((data or {}).get("sleep", 0)))
        return {"runs_so_far": n}
    if kind == "fanout":
        sent = [
            await ctx.emit("test.fanned", {"i": i}, subject=f"item-{i}")
            for i in range(int(data["n"]))
        ]
        return {"emitted": [e["id"] for e in sent]}
    if kind == "llm":
        result = await ctx.llm.chat([{"role": "user", "content": "hi"}], temperature=0)
        return {"content": result.content, "usage": ctx.usage}
    if kind == "resume":
        previous = await ctx.state.restore(key="job-1")
        progress = {"n": (previous or {"n": 0})["n"] + 1}
        await ctx.state.checkpoint(progress, key="job-1")
        return {"previous": previous, "now": progress, "own_checkpoint": await ctx.state.restore()}
    if kind == "state":
        await ctx.state.set("greeting", data)
        return {"stored": await ctx.state.get("greeting")}
    return {"unknown": kind}


def sync_skill(event: CloudEvent, ctx: Context) -> Any:
    """A plain def skill: runs in a worker thread; I/O helpers go through ctx.run."""
    kind = event["type"].removeprefix("test.")
    if kind == "echo":
        ctx.step()
        ctx.run(ctx.state.set("last", event.data))
        return {"sync_echo": event.data, "stored": ctx.run(ctx.state.get("last"))}
    if kind == "slow":
        ctx.partial = {"stage": "sync before sleep"}
        time.sleep(float(event.data["sleep"]))
        ctx.step()  # raises: the invocation already timed out
        return {"never": True}
    if kind == "slow-state":
        # After the timeout: is the late write refused? The test reads the marker file.
        ctx.partial = {"stage": "sync before sleep"}
        time.sleep(float(event.data["sleep"]))
        try:
            ctx.run(ctx.state.set("late", True))
            seen = "written"
        except BudgetExceeded as exc:
            seen = f"refused: {exc.limit}"
        Path(event.data["marker"]).write_text(seen)
        return None
    if kind == "steps":
        for i in range(100):
            ctx.step()
            ctx.partial = {"done": i + 1}
    return None
