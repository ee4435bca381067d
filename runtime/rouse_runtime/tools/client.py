"""One MCP session per tool server, opened on first use and kept for the process's life.

Built on the official SDK's streamable-HTTP client (`mcp.client.streamable_http`)
and `ClientSession`. The SDK's transport is an anyio task group that must be
entered and left by the same task, while calls come from many invocations'
tasks; so each connection lives in a task of its own (open, list the tools,
wait until closed), and calls go through its session. A connection that breaks
(server gone, session expired) is dropped and the next call opens a new one:
a warm process pays the handshake once, not per invocation.

Errors become `ToolUnavailable` (nothing reached the tool, or the answer never
came back) or `ToolFailed` (the tool ran and said `isError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from rouse_runtime.tools.errors import ToolFailed, ToolUnavailable
from rouse_runtime.tools.spec import ToolServer

if TYPE_CHECKING:
    from mcp import ClientSession
    from mcp.types import CallToolResult, Tool

log = logging.getLogger("rouse.tools")

CONNECT_TIMEOUT_SECONDS = 10.0
# What the SDK answers when the server forgot the session (restarted): reconnect and resend.
SESSION_GONE = "Session terminated"


@dataclass(frozen=True)
class ToolInfo:
    """What the server says about one tool (`tools/list`)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    destructive: bool  # annotations: destructiveHint true and not readOnlyHint

    def as_dict(self, server: str) -> dict[str, Any]:
        return {
            "name": f"{server}.{self.name}",
            "description": self.description,
            "inputSchema": self.input_schema,
            "destructive": self.destructive,
        }


def tool_info(tool: Tool) -> ToolInfo:
    hints = tool.annotations
    destructive = bool(
        hints is not None and hints.destructiveHint is True and hints.readOnlyHint is not True
    )
    return ToolInfo(tool.name, tool.description or "", dict(tool.inputSchema), destructive)


def _reason(exc: BaseException) -> str:
    """The innermost error of an anyio task group's exception group, as one line."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def result_value(result: CallToolResult) -> Any:
    """The tool's structured content when it gives one (FastMCP wraps a non-object return
    value as {"result": value}), else its text (one text block: a str), else its blocks."""
    if result.structuredContent is not None:
        return result.structuredContent
    blocks = [block.model_dump(mode="json", exclude_none=True) for block in result.content]
    texts = [b["text"] for b in blocks if b.get("type") == "text"]
    if len(texts) == len(blocks) == 1:
        return texts[0]
    return blocks


class Connection:
    """A live MCP session to one server, owned by its own task."""

    def __init__(self, server: ToolServer) -> None:
        self.server = server
        self.session: ClientSession | None = None
        self.tools: dict[str, ToolInfo] = {}
        self._ready = asyncio.Event()
        self._closing = asyncio.Event()
        self._error: str | None = None
        self._task = asyncio.create_task(self._run(), name=f"mcp:{server.name}")

    @property
    def alive(self) -> bool:
        return not self._task.done() and self._error is None

    async def _run(self) -> None:
        import httpx
        from mcp import ClientSession
        from mcp.client.streamable_http import streamable_http_client

        server = self.server
        try:
            async with (
                httpx.AsyncClient(
                    headers=dict(server.headers),
                    timeout=httpx.Timeout(server.timeout_seconds, connect=CONNECT_TIMEOUT_SECONDS),
                ) as http,
                streamable_http_client(server.url, http_client=http) as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                self.tools = await self._list(session)
                self.session = session
                self._ready.set()
                await self._closing.wait()
        except BaseException as exc:
            self._error = _reason(exc)
            if not isinstance(exc, asyncio.CancelledError):
                log.warning("tool server %s: connection ended: %s", server.name, self._error)
        finally:
            self.session = None
            self._ready.set()

    @staticmethod
    async def _list(session: ClientSession) -> dict[str, ToolInfo]:
        tools: dict[str, ToolInfo] = {}
        cursor: str | None = None
        while True:
            page = await session.list_tools(cursor=cursor)
            tools.update((t.name, tool_info(t)) for t in page.tools)
            cursor = page.nextCursor
            if not cursor:
                return tools

    async def ready(self, tool: str) -> ClientSession:
        """The session once initialized, or ToolUnavailable naming why not."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS + self.server.timeout_seconds):
                await self._ready.wait()
        except TimeoutError:
            raise ToolUnavailable(
                tool, f"tool server {self.server.name} at {self.server.url} did not answer in time"
            ) from None
        if self.session is None:
            raise ToolUnavailable(
                tool,
                f"cannot reach tool server {self.server.name} at {self.server.url}: {self._error}",
            )
        return self.session

    async def call(self, tool: str, name: str, arguments: dict[str, Any]) -> CallToolResult:
        """Call one tool; ToolUnavailable when the connection ends before the answer."""
        from mcp.shared.exceptions import McpError

        session = await self.ready(tool)
        request = asyncio.ensure_future(
            session.call_tool(
                name, arguments, read_timeout_seconds=timedelta(seconds=self.server.timeout_seconds)
            )
        )
        try:
            done, _ = await asyncio.wait({request, self._task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the invocation timed out: stop waiting for the answer
            request.cancel()
            raise
        if request not in done:  # the connection ended first: the answer will never come
            request.cancel()
            with contextlib.suppress(BaseException):
                await request
            raise ToolUnavailable(
                tool, f"tool server {self.server.name} went away during the call: {self._error}"
            )
        try:
            return request.result()
        except McpError as exc:
            if "Timed out" in str(exc):  # the SDK's read timeout: no answer, or the server died
                # A dead server leaves the session waiting forever: start afresh next time.
                self._error = "a call timed out"
                self._closing.set()
                raise ToolUnavailable(
                    tool,
                    f"no answer from tool server {self.server.name} within"
                    f" {self.server.timeout_seconds:g}s (spec.tools[].timeoutSeconds): it is"
                    " slow or went away during the call",
                ) from exc
            raise ToolUnavailable(tool, f"tool server {self.server.name}: {exc}") from exc

    async def close(self) -> None:
        self._closing.set()
        with contextlib.suppress(BaseException):
            async with asyncio.timeout(5):
                await asyncio.shield(self._task)
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class Connections:
    """The process's connections, by server name: shared by every invocation of a warm process."""

    def __init__(self, servers: Mapping[str, ToolServer]) -> None:
        self.servers = servers
        self._open: dict[str, Connection] = {}
        self._lock = asyncio.Lock()

    async def get(self, server: ToolServer) -> Connection:
        async with self._lock:
            connection = self._open.get(server.name)
            if connection is None or not connection.alive:
                if connection is not None:
                    await connection.close()
                connection = Connection(server)
                self._open[server.name] = connection
            return connection

    async def call(self, server: ToolServer, tool: str, name: str, args: dict[str, Any]) -> Any:
        """The tool's result value; one reconnect when the server forgot the session."""
        connection = await self.get(server)
        try:
            result = await connection.call(tool, name, args)
        except ToolUnavailable as exc:
            if SESSION_GONE not in str(exc):
                raise
            await connection.close()  # the server restarted: nothing ran, resend on a new session
            result = await (await self.get(server)).call(tool, name, args)
        if result.isError:
            content = [b.model_dump(mode="json", exclude_none=True) for b in result.content]
            text = " ".join(str(b.get("text", "")) for b in content).strip()
            raise ToolFailed(tool, f"the tool reported an error: {text[:500]}", content)
        return result_value(result)

    async def tools(self, server: ToolServer, tool: str) -> dict[str, ToolInfo]:
        connection = await self.get(server)
        await connection.ready(tool)
        return connection.tools

    async def close(self) -> None:
        for connection in list(self._open.values()):
            await connection.close()
        self._open.clear()
