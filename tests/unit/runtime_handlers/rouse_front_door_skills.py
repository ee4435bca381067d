"""Front-door handlers for tests/unit/test_front_door_http.py: what the request asks for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


async def stream(event: Any, ctx: Any) -> AsyncIterator[Any]:
    """Streams: words (a step each), a model's answer, a failure, or a wait past the timeout."""
    do = event.data["do"]
    if do == "words":
        for word in event.data["words"]:
            ctx.step()
            yield word
    elif do == "llm":
        async for text in ctx.llm.stream([{"role": "user", "content": "tell me"}]):
            yield text
    elif do == "fail":
        yield "first"
        raise RuntimeError("broken on purpose")
    elif do == "slow":
        yield "first"
        await asyncio.sleep(30)
        yield "never"
    elif do == "request":
        yield {"type": event["type"], "source": event["source"], "data": event.data}


async def answer(event: Any, ctx: Any) -> dict[str, Any]:
    """JSON in, JSON out: the request as the handler saw it, and a model's streamed answer joined."""
    data = event.data if isinstance(event.data, dict) else {"value": event.data}
    reply: dict[str, Any] = {"type": event["type"], "data": event.data}
    if data.get("llm"):
        reply["text"] = "".join(
            [t async for t in ctx.llm.stream([{"role": "user", "content": "hi"}])]
        )
        reply["usage"] = ctx.usage
    if data.get("steps"):
        for _ in range(int(data["steps"])):
            ctx.step()
    return reply
