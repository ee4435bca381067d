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
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from cloudevents.http import CloudEvent

from rouse_runtime.budget import Budget
from rouse_runtime.config import Config
from rouse_runtime.events import derived_id, new_event, to_http, trace_attributes
from rouse_runtime.logs import EventLog
from rouse_runtime.metrics import Metrics
from rouse_runtime.store import Store
from rouse_runtime.suspend import Resumed, suspend

if TYPE_CHECKING:
    import httpx

    from rouse_runtime.llm import LLMClient, SpendRecorder

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

    # A class attribute: invocations that resume nothing pay nothing for it.
    resumed: Resumed | None = None

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
        self._llm: LLMClient | None = None
        self._record_spend = record_spend

    # Built on first use: most invocations never touch them, and every event pays __init__.
    @functools.cached_property
    def state(self) -> State:
        """Durable key/value and checkpoints in ROUSE_STATE_URL (survive scale to zero)."""
        return State(self, self._store)

    @functools.cached_property
    def trace(self) -> dict[str, str]:
        """The event's W3C `traceparent`/`tracestate`, copied onto replies and emitted events."""
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
    def usage(self) -> dict[str, float]:
        """Steps, tool calls, tokens and cost used so far."""
        return self.budget.usage.as_dict()

    def step(self, name: str | None = None) -> int:
        """Count one step of the skill's loop; raises BudgetExceeded past ROUSE_MAX_STEPS."""
        n = self.budget.step()
        self.metrics.steps.inc()
        self.log.debug("step", step=n, **({"name": name} if name else {}))
        return n

    def tool(self, name: str, **fields: Any) -> int:
        """Count one tool call; raises BudgetExceeded past ROUSE_MAX_TOOL_CALLS."""
        n = self.budget.tool_call()
        self.metrics.tool_calls.inc()
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
                before=self.budget.before_llm_call,
                charge=self._charge,
                record=self._record_spend,
                streaming=self.budget.streaming,
            )
        return self._llm

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
            **extensions,
        }
        if subject is not None:
            attrs["subject"] = subject
        event = new_event(attrs, data, cause=self.event)
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
        return event

    async def wait_for(
        self, type: str, *, key: str, data: Any = None, ttl: float | None = None
    ) -> NoReturn:
        """Suspend until an event of `type` with extension attribute `rousekey` = key arrives.

        Checkpoints data (default: `ctx.partial`) and ends this invocation with 202
        (no reply, no retry). The skill must list `type` among its events; when that
        event arrives, the handler runs for it with `ctx.resumed.checkpoint` = data.
        ttl (seconds) forgets the wait; None keeps it until resumed. Never returns.
        """
        self.budget.check()
        checkpoint = self.partial if data is None else data
        await suspend(self._store, self.config, self.event, type, key, checkpoint, ttl)

    def run(self, awaitable: Awaitable[T]) -> T:
        """Wait for a ctx coroutine from a plain `def` skill (runs it on the server's loop).

        Raises BudgetExceeded once the invocation is over budget: a timed-out `def`
        skill's thread cannot be killed, so it is stopped here, before it writes
        state or spends after the server has already answered.
        """
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("ctx.run() is for plain def skills; in async def skills use await")
        if self.budget.breach is not None:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never run: no "coroutine was never awaited" warning
            raise self.budget.breach

        async def wrapper() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result()
