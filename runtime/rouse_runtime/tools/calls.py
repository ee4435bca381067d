"""`ctx.tools`: call a tool of a server in `spec.tools`, metered, journaled, approved.

Every `call` is checked against the server's allow-list, then counts against
`maxToolCalls` (BudgetExceeded past it, before anything reaches a server), and is
numbered within the run. A call that succeeded is journaled in the state store
under (event, number): when the same event runs again (a retry after a failure,
or the run an approval resumes) that call returns its recorded result instead of
reaching the tool twice. Real calls are timed into
`rouse_tool_call_duration_seconds{server,tool,outcome}` and `rouse_tool_calls_total`,
logged, and handed to the runtime's tool-call observers (run history and spans
hook in there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rouse_runtime.config import IDEMPOTENCY_TTL_SECONDS
from rouse_runtime.suspend import suspend
from rouse_runtime.tools.approval import Decision, Pending, arguments_digest, decision_type
from rouse_runtime.tools.errors import ToolError, ToolNotAllowed, ToolRejected, ToolUnavailable
from rouse_runtime.tools.spec import ToolServer

if TYPE_CHECKING:
    from rouse_runtime.context import Context
    from rouse_runtime.store import Store
    from rouse_runtime.tools.client import Connections


@dataclass(frozen=True)
class ToolCall:
    """One `ctx.tools.call` as observers see it (arguments are left out: they may be private)."""

    server: str
    tool: str
    call: int  # 1-based number within the run
    outcome: str  # ok, error, unavailable, rejected, replayed, approval_requested
    started: float  # Unix seconds
    seconds: float
    error: str | None = None


ToolCallObserver = Callable[["Context", ToolCall], None]


class Tools:
    """The tools one invocation may call (built on first use of `ctx.tools`)."""

    def __init__(
        self,
        ctx: Context,
        store: Store,
        connections: Connections,
        decision: Decision | None = None,
        observers: tuple[ToolCallObserver, ...] = (),
    ) -> None:
        self._ctx = ctx
        self._store = store
        self._connections = connections
        self._decision = decision
        self._observers = observers
        self._calls = 0

    def _server(self, name: str) -> tuple[ToolServer, str]:
        server_name, _, tool = name.partition(".")
        servers = self._ctx.config.tools
        server = servers.get(server_name)
        if not tool or server is None:
            known = ", ".join(sorted(servers)) or "none"
            raise ToolNotAllowed(
                name,
                f"expected <server>.<tool> with a server of spec.tools (servers: {known})",
            )
        if not server.allows(tool):
            allowed = ", ".join(sorted(server.allow or ()))
            raise ToolNotAllowed(
                name, f"not in the allow-list of tool server {server.name} ({allowed})"
            )
        return server, tool

    async def list(self) -> list[dict[str, Any]]:
        """The tools this skill may call: `name` (`server.tool`), description, input schema,
        and whether a call waits for approval. Opens each server's connection."""
        listed: list[dict[str, Any]] = []
        for server in self._ctx.config.tools.values():
            tools = await self._connections.tools(server, f"{server.name}.*")
            for info in tools.values():
                if server.allows(info.name):
                    entry = info.as_dict(server.name)
                    entry["approval"] = info.name in server.approval or info.destructive
                    listed.append(entry)
        return listed

    async def call(self, name: str, /, **arguments: Any) -> Any:
        """Call `<server>.<tool>` with arguments; returns its structured content (or its text).

        Raises BudgetExceeded past maxToolCalls, ToolNotAllowed, ToolUnavailable,
        ToolFailed, ToolRejected; may suspend the skill until a person approves.
        """
        ctx = self._ctx
        ctx.budget.check()
        server, tool = self._server(name)  # a refused call is no call: not counted
        ctx.budget.tool_call()
        self._calls += 1
        number = self._calls
        started, clock = time.time(), time.perf_counter()
        journal = self._journal_key(number)
        digest = arguments_digest(arguments)
        recorded = await self._store.get(journal)
        if isinstance(recorded, dict):
            if recorded.get("tool") != name or recorded.get("digest") != digest:
                raise ToolError(
                    name,
                    f"call #{number} of this event was {recorded.get('tool')} with other arguments"
                    " when it first ran: a skill must make the same calls when its event runs again",
                )
            self._observe(server, tool, number, "replayed", started, clock)
            return recorded.get("result")
        await self._approve(server, tool, name, number, digest, arguments, started, clock)
        outcome, error = "ok", None
        try:
            result = await self._connections.call(server, name, tool, arguments)
        except ToolError as exc:
            outcome = "unavailable" if isinstance(exc, ToolUnavailable) else "error"
            error = str(exc)
            raise
        finally:
            ctx.metrics.tool_calls.inc()
            self._observe(server, tool, number, outcome, started, clock, error)
        record = {"tool": name, "digest": digest, "result": result}
        await self._store.set(journal, record, ttl=IDEMPOTENCY_TTL_SECONDS)
        return result

    async def _approve(
        self,
        server: ToolServer,
        tool: str,
        name: str,
        number: int,
        digest: str,
        arguments: dict[str, Any],
        started: float,
        clock: float,
    ) -> None:
        """Return when the call may run; raise ToolRejected, or suspend to ask."""
        if tool in server.approval:
            reason = "declared"
        else:
            tools = await self._connections.tools(server, name)
            info = tools.get(tool)
            if info is None or not info.destructive:
                return
            reason = "destructive"
        decision = self._decision
        if decision is not None and decision.call == number:
            if decision.tool != name or decision.digest != digest:
                raise ToolError(
                    name,
                    f"the approval answered call #{number} of {decision.tool} with other arguments:"
                    " a skill must make the same calls when its event runs again",
                )
            if decision.approved:
                return
            self._observe(server, tool, number, "rejected", started, clock)
            why = decision.data.get("reason")
            raise ToolRejected(
                name, "the call was rejected" + (f": {why}" if why else ""), decision.data
            )
        ctx = self._ctx
        pending = Pending(number, name, arguments, reason)
        key = pending.key(ctx.config, ctx.event)
        self._observe(server, tool, number, "approval_requested", started, clock)
        ctx.log.info("tool call waits for approval", tool=name, call=number, reason=reason)
        await suspend(
            self._store,
            ctx.config,
            ctx.event,
            decision_type(ctx.config.agent, ctx.config.skill),
            key,
            pending.checkpoint(ctx.event),
            None,
            reply=pending.request(ctx.config, ctx.event, key),
        )

    def _journal_key(self, number: int) -> str:
        config, event = self._ctx.config, self._ctx.event
        return config.scope.tagged("tool", config.skill, event["source"], event["id"], str(number))

    def _observe(
        self,
        server: ToolServer,
        tool: str,
        number: int,
        outcome: str,
        started: float,
        clock: float,
        error: str | None = None,
    ) -> None:
        seconds = time.perf_counter() - clock
        ctx = self._ctx
        if outcome in ("ok", "error", "unavailable"):
            ctx.metrics.tool_call(server.name, tool, outcome, seconds)
        fields: dict[str, Any] = {"tool": f"{server.name}.{tool}", "call": number}
        fields.update(outcome=outcome, seconds=round(seconds, 6))
        if error is not None:
            fields["error"] = error[:300]
        ctx.log.info("tool call", **fields)
        record = ToolCall(server.name, tool, number, outcome, started, seconds, error)
        for observer in self._observers:
            try:
                observer(ctx, record)
            except Exception as exc:  # history or tracing must not fail the skill's call
                ctx.log.warning("tool call observer failed", error=f"{type(exc).__name__}: {exc}")
