"""`ctx`, the second argument of every skill: budget-metered helpers for one invocation.

Sync helpers (`step`, `tool`, `log`, setting `partial`) work from `async def` and
plain `def` skills alike. I/O helpers (`emit`, `state`, `llm`) are coroutines;
a plain `def` skill runs in a worker thread and calls them through
`ctx.run(...)`, which hands the coroutine to the server's event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from cloudevents.http import CloudEvent

from rouse_runtime.budget import Budget
from rouse_runtime.config import Config
from rouse_runtime.events import derived_id, new_event, to_http, trace_attributes
from rouse_runtime.logs import EventLog
from rouse_runtime.metrics import Metrics
from rouse_runtime.runs.ids import RUN_ATTRIBUTE, run_of
from rouse_runtime.store import Store
from rouse_runtime.suspend import Resumed, suspend

if TYPE_CHECKING:
    import httpx

    from rouse_runtime.llm import LLMClient, SpendRecorder
    from rouse_runtime.runs.join import Joined
    from rouse_runtime.runs.recorder import RunHandle
    from rouse_runtime.telemetry import Invocation
    from rouse_runtime.tools.approval import Decision
    from rouse_runtime.tools.calls import ToolCallObserver, Tools
    from rouse_runtime.tools.client import Connections

T = TypeVar("T")


class EmitError(RuntimeError):
    """An extra event could not be delivered to the broker."""


class State:
    """`ctx.state`: durable key/value (shared by the agent's skills) and checkpoints."""

    def __init__(self, ctx: Context, store: Store) -> None:
        self._ctx = ctx
        self._store = store

    def _key(self, key: str) -> str:
        return self._ctx.config.scope.path(key)

    async def get(self, key: str, default: Any = None) -> Any:
        """The value stored under key by any skill of this agent, or default."""
        value = await self._store.get(self._key(key))
        return default if value is None else value

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store a JSON-serializable value for the agent's skills (ttl in seconds; None: keep)."""
        await self._store.set(self._key(key), value, ttl=ttl)

    async def delete(self, key: str) -> bool:
        """Remove key; False when it was not there."""
        return await self._store.delete(self._key(key))

    async def checkpoint(self, value: Any, *, key: str | None = None) -> None:
        """Persist progress now (default key: this event's) and make it the partial result."""
        self._ctx.partial = value
        await self._store.save_checkpoint(key or self._ctx.checkpoint_key, value)

    async def restore(self, *, key: str | None = None) -> Any:
        """The checkpoint saved under key (default: this event's), or None."""
        return await self._store.load_checkpoint(key or self._ctx.checkpoint_key)


class Context:
    """Everything a skill may use during one invocation.

    `event` is the incoming CloudEvent; set `partial` to what should be
    checkpointed if a budget stops the skill. `resumed` is set when this event
    resumes a skill that suspended with `wait_for` (see suspend.py).
    """

    # Class attributes: invocations that resume or join nothing pay nothing for them, nor
    # for tracing while it is off. `span`: this invocation's (telemetry.py).
    resumed: Resumed | None = None
    tool_decision: Decision | None = None  # the answer to a tool approval (tools/approval.py)
    joined: Joined | None = None  # set when this invocation runs a fan-in join (runs/join.py)
    span: Invocation | None = None

    def __init__(
        self,
        *,
        event: CloudEvent,
        config: Config,
        budget: Budget,
        store: Store,
        metrics: Metrics,
        http: Callable[[], httpx.AsyncClient],
        loop: asyncio.AbstractEventLoop,
        record_spend: SpendRecorder | None = None,
        connections: Callable[[], Connections] | None = None,
        tool_observers: tuple[ToolCallObserver, ...] = (),
        run: RunHandle | None = None,
    ) -> None:
        self.event = event
        self.config = config
        self.budget = budget
        self.metrics = metrics
        self.partial: Any = None
        self._store = store
        self._http = http
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._emitted = 0
        self._fanned_out = 0
        self._llm: LLMClient | None = None
        self._record_spend = record_spend
        self._connections = connections
        self._tool_observers = tool_observers
        self.run_handle = run

    # Built on first use: most invocations never touch them, and every event pays __init__.
    @functools.cached_property
    def state(self) -> State:
        """Durable key/value and checkpoints in ROUSE_STATE_URL (survive scale to zero)."""
        return State(self, self._store)

    @functools.cached_property
    def tools(self) -> Tools:
        """The MCP tools of spec.tools: `await ctx.tools.call("<server>.<tool>", **arguments)`."""
        from rouse_runtime.tools.calls import Tools
        from rouse_runtime.tools.client import Connections

        connections = self._connections() if self._connections else Connections(self.config.tools)
        return Tools(self, self._store, connections, self.tool_decision, self._tool_observers)

    @functools.cached_property
    def trace(self) -> dict[str, str]:
        """The W3C `traceparent`/`tracestate` that replies and emitted events carry.

        The event's own, or with tracing on this invocation's span (same trace).
        """
        if self.span is not None:
            return self.span.trace_attributes()
        return trace_attributes(self.event)

    @functools.cached_property
    def log(self) -> EventLog:
        """JSON log lines carrying the event id and source, agent, skill and traceparent."""
        event, config = self.event, self.config
        fields = {
            "event_id": event["id"],
            "event_source": event["source"],
            "agent": config.agent,
            "skill": config.skill,
        }
        if "traceparent" in self.trace:
            fields["traceparent"] = self.trace["traceparent"]
        return EventLog(fields)

    @functools.cached_property
    def checkpoint_key(self) -> str:
        """Where this event's checkpoint lives: a redelivery of the event finds it again."""
        config, event = self.config, self.event
        return config.scope.path(config.skill, event["source"], event["id"])

    @property
    def run_id(self) -> str:
        """The run this invocation belongs to (`rouse runs show <run_id>`); carried onto
        replies and emitted events as the `rouserun` extension attribute."""
        return self.run_handle.id if self.run_handle is not None else run_of(self.event)

    @property
    def cancelled(self) -> bool:
        """True once the run is cancelled (or the agent's kill switch is on): stop soon.

        Every ctx helper then raises `Cancelled`; an `async def` skill is also
        cancelled at its next await. A long loop of plain code should check this.
        """
        return self.run_handle is not None and self.run_handle.stop_reason is not None

    def check_cancelled(self) -> None:
        """Raise `Cancelled` if the run was cancelled (what every ctx helper does first)."""
        if self.run_handle is not None:
            self.run_handle.check()

    def note(self, kind: str, **fields: Any) -> None:
        """Append a record of `kind` (e.g. `tool_call`) with JSON fields to the run's history.

        Staged into this invocation's own store write: no extra round trip.
        """
        if self.run_handle is not None:
            self.run_handle.note(kind, fields)

    @property
    def usage(self) -> dict[str, float]:
        """Steps, tool calls, tokens and cost used so far."""
        return self.budget.usage.as_dict()

    def step(self, name: str | None = None) -> int:
        """Count one step of the skill's loop; raises BudgetExceeded past ROUSE_MAX_STEPS."""
        self.check_cancelled()
        n = self.budget.step()
        self.metrics.steps.inc()
        self.log.debug("step", step=n, **({"name": name} if name else {}))
        return n

    def tool(self, name: str, **fields: Any) -> int:
        """Count one tool call; raises BudgetExceeded past ROUSE_MAX_TOOL_CALLS."""
        self.check_cancelled()
        n = self.budget.tool_call()
        self.metrics.tool_calls.inc()
        if self.span is not None:
            with self.span.tool_call(name):  # a counted call: the span marks when it was made
                pass
        self.log.debug("tool call", tool=name, call=n, **fields)
        return n

    @property
    def llm(self) -> LLMClient:
        """OpenAI-compatible chat client metered against this invocation's token budget."""
        if self._llm is None:
            from rouse_runtime.llm import LLMClient

            cfg = self.config
            self._llm = LLMClient(
                base_url=cfg.llm_base_url,
                api_key=cfg.llm_api_key,
                model=cfg.llm_model,
                prices=cfg.llm_prices,
                http=self._http,
                before=self._before_llm_call,
                charge=self._charge,
                record=self._record_spend,
                span=self.span,
                streaming=self.budget.streaming,
            )
        return self._llm

    def _before_llm_call(self) -> None:
        self.check_cancelled()
        self.budget.before_llm_call()

    def _charge(self, model: str, input_tokens: int, output_tokens: int, cost: float) -> None:
        self.metrics.tokens(model, input_tokens, output_tokens, cost)
        self.log.info(
            "llm call",
            model=model,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost_usd=cost,
        )
        self.budget.tokens(input_tokens, output_tokens, cost)

    async def emit(
        self,
        type: str,
        data: Any = None,
        *,
        source: str | None = None,
        subject: str | None = None,
        **extensions: Any,
    ) -> CloudEvent:
        """Send an extra event to ROUSE_BROKER_URL (fan-out); returns the event sent."""
        self.check_cancelled()
        self.budget.check()
        url = self.config.broker_url
        if not url:
            raise EmitError("ctx.emit needs ROUSE_BROKER_URL (where extra events go)")
        self._emitted += 1
        attrs: dict[str, Any] = {
            "type": type,
            "source": source or self.config.reply_source,
            "id": derived_id(
                self.config.agent,
                self.config.skill,
                self.event["source"],
                self.event["id"],
                "emit",
                str(self._emitted),
            ),
            RUN_ATTRIBUTE: self.run_id,
            **extensions,
        }
        if subject is not None:
            attrs["subject"] = subject
        event = new_event(attrs, data, trace=self.trace)
        headers, body = to_http(event, "binary")
        try:
            response = await self._http().post(url, headers=headers, content=body)
        except Exception as exc:
            raise EmitError(f"emit {type} to {url} failed: {exc!r}") from exc
        if response.status_code >= 300:
            raise EmitError(
                f"emit {type} to {url} answered {response.status_code}: {response.text[:200]}"
            )
        self.log.info("emitted", emitted_type=type, emitted_id=attrs["id"])
        if self.run_handle is not None:
            self.run_handle.record("emitted", {"emitted": {"type": type, "id": attrs["id"]}})
        return event

    async def fan_out(self, type: str, items: Sequence[Any], **extensions: Any) -> str:
        """Emit one `type` event per item, as the parts of one join; returns the join's id.

        Each event carries `rousejoin`, `rousepart` (its index) and `rouseparts`
        (len(items)); a worker's reply carries them on, and a skill declared
        `join` in the Agent runs once with all the results (`ctx.joined`). Ids are
        derived from this event, so a rerun sends the same events (duplicates
        downstream, never new parts).
        """
        from rouse_runtime.runs.join import MAX_PARTS

        if not 1 <= len(items) <= MAX_PARTS:
            raise ValueError(f"ctx.fan_out: 1 to {MAX_PARTS} items, got {len(items)}")
        self._fanned_out += 1
        cfg, event = self.config, self.event
        join = uuid.uuid5(
            uuid.NAMESPACE_URL,
            "\x1f".join((cfg.namespace, cfg.agent, cfg.skill, event["source"], event["id"],
                          "fan", str(self._fanned_out))),
        ).hex  # fmt: skip
        for index, item in enumerate(items):
            await self.emit(
                type, item, rousejoin=join, rousepart=index, rouseparts=len(items), **extensions
            )
        if self.run_handle is not None:
            self.run_handle.record("fanned_out", {"join": join, "parts": len(items), "type": type})
        return join

    async def wait_for(
        self, type: str, *, key: str, data: Any = None, ttl: float | None = None
    ) -> NoReturn:
        """Suspend until an event of `type` with extension attribute `rousekey` = key arrives.

        Checkpoints data (default: `ctx.partial`) and ends this invocation with 202
        (no reply, no retry). The skill must list `type` among its events; when that
        event arrives, the handler runs for it with `ctx.resumed.checkpoint` = data.
        ttl (seconds) forgets the wait; None keeps it until resumed. Never returns.
        """
        self.check_cancelled()
        self.budget.check()
        checkpoint = self.partial if data is None else data
        await suspend(
            self._store, self.config, self.event, type, key, checkpoint, ttl, run=self.run_id
        )

    def run(self, awaitable: Awaitable[T]) -> T:
        """Wait for a ctx coroutine from a plain `def` skill (runs it on the server's loop).

        Raises BudgetExceeded once the invocation is over budget: a timed-out `def`
        skill's thread cannot be killed, so it is stopped here, before it writes
        state or spends after the server has already answered.
        """
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("ctx.run() is for plain def skills; in async def skills use await")
        if self.budget.breach is not None or self.cancelled:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never run: no "coroutine was never awaited" warning
            self.check_cancelled()
            assert self.budget.breach is not None
            raise self.budget.breach

        async def wrapper() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result()
