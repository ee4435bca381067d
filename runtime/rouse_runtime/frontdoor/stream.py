"""An async generator handler under its per-invocation budget, as Server-Sent Events.

Each value the handler yields is one `chunk` event (JSON); the stream opens
with `run` (the run it started and where to follow it) and ends with exactly
one of `done`, `budget.exceeded` (the limit, as the event path's
dev.rouse.budget.exceeded data, partial result checkpointed) or `error`.
A limit is enforced between chunks and inside the helpers (`ctx.step`,
`ctx.llm.stream` counts tokens as they arrive), and the wall clock bounds
the wait for each next chunk. A client that leaves stops the handler
(its generator is closed); the invocation is still metered and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

from cloudevents.http import CloudEvent

from rouse_runtime.budget import Budget, BudgetExceeded
from rouse_runtime.ledger import Entry
from rouse_runtime.runs.ids import RUN_ATTRIBUTE
from rouse_runtime.store import StoreError
from rouse_runtime.suspend import Suspended

if TYPE_CHECKING:
    from rouse_runtime.context import Context
    from rouse_runtime.server import Runtime

Sse = dict[str, str]
# Bookkeeping of streams whose client left: kept referenced until it is done.
_finishing: set[asyncio.Future[None]] = set()


def sse(name: str, data: Any) -> Sse:
    """One event for sse-starlette: a name and JSON data."""
    return {"event": name, "data": json.dumps(data, separators=(",", ":"))}


class Invocation:
    """One streamed invocation: its ctx, budget and the bookkeeping done whatever happens."""

    def __init__(self, runtime: Runtime, event: CloudEvent) -> None:
        self.runtime = runtime
        self.event = event
        self.budget = Budget(runtime.config.limits)
        self.ctx: Context = runtime.context(event, self.budget)
        self.kind = "ok"
        self.cold = runtime.served()
        self.started = time.perf_counter()
        runtime.metrics.inflight.inc()

    async def record(self, kind: str, fields: dict[str, Any]) -> None:
        """A run record of this invocation, durable before going on: the run's first step, so
        a client following the run at once (`GET /runs/<run>`) finds it before any hand-off
        is delivered. A store failure is logged by the recorder, never raised."""
        staged = self.runtime.runs.stage(self.event, str(self.event[RUN_ATTRIBUTE]), kind, fields)
        if staged is not None:
            with contextlib.suppress(StoreError):
                await staged

    async def finish(self, items: AsyncGenerator[Any, None]) -> None:
        """Close the handler, then meter, record and count the invocation (shielded from the
        client)."""
        try:
            await items.aclose()
        except Exception as exc:  # the handler's cleanup failed; the stream is over anyway
            self.ctx.log.warning("stream cleanup failed", error=f"{type(exc).__name__}: {exc}")
        metrics = self.runtime.metrics
        metrics.inflight.dec()
        seconds = time.perf_counter() - self.started
        metrics.duration.observe(seconds)
        metrics.invocations[self.kind].inc()
        fields: dict[str, Any] = {"outcome": self.kind, "status": 200, "seconds": round(seconds, 5)}
        if any(self.budget.usage.as_dict().values()):
            fields["usage"] = self.budget.usage.as_dict()
        await self.record("finished", fields)
        await self.runtime.count(Entry.invocation(cold_start=self.cold))


async def events(
    runtime: Runtime, event: CloudEvent, opening: dict[str, Any]
) -> AsyncIterator[Sse]:
    """The SSE events of one streamed invocation of the handler for `event`."""
    yield sse("run", opening)
    call = Invocation(runtime, event)
    await call.record("started", {"root": True, **({"cold": True} if call.cold else {})})
    function = runtime.handler.function
    assert function is not None
    items: AsyncGenerator[Any, None] = function(event, call.ctx)
    loop = asyncio.get_running_loop()
    deadline = None if runtime.deadline is None else loop.time() + runtime.deadline
    started = loop.time()
    budget = call.budget
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline) as scope:
                    item = await anext(items)
            except StopAsyncIteration:
                break
            except TimeoutError as exc:
                if not scope.expired():
                    yield call_failed(call, exc)
                    return
                budget.timed_out(loop.time() - started)
                break
            except BudgetExceeded:
                break
            except Suspended:
                call.kind = "error"
                yield sse(
                    "error",
                    {
                        "error": "skill failed",
                        "detail": "a streaming front door cannot ctx.wait_for",
                    },
                )
                return
            except Exception as exc:
                if budget.breach is not None:
                    break
                yield call_failed(call, exc)
                return
            if budget.breach is not None:  # the skill caught BudgetExceeded and went on
                break
            try:
                chunk = sse("chunk", item)
            except (TypeError, ValueError) as exc:
                yield call_failed(call, exc, "a streamed value must be JSON-serializable")
                return
            yield chunk
        if budget.breach is not None:
            call.kind = "budget_exceeded"
            stop = await runtime._budget_stop(event, call.ctx, budget, None)  # as on the event path
            assert stop.event is not None
            yield sse("budget.exceeded", {"run": opening["run"], **stop.event.data})
            return
        yield sse("done", {"run": opening["run"], "usage": budget.usage.as_dict()})
    finally:
        finishing = asyncio.ensure_future(call.finish(items))
        _finishing.add(finishing)
        finishing.add_done_callback(_finishing.discard)
        await asyncio.shield(finishing)


def call_failed(call: Invocation, exc: BaseException, why: str = "") -> Sse:
    """The `error` event of a handler that raised (logged with its usage)."""
    call.kind = "error"
    call.ctx.log.error("skill failed", exc_info=exc, usage=call.budget.usage.as_dict())
    detail = f"{why + ': ' if why else ''}{type(exc).__name__}: {exc}"[:500]
    return sse("error", {"error": "skill failed", "detail": detail})
