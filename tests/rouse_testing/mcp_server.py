"""A real MCP server (FastMCP from the `mcp` SDK) over streamable HTTP, for the tools tests.

`start_mcp_server()` runs this file as its own process on a free loopback port,
so a test can stop it mid-call (the server going away). Its tools keep a count
of their runs, readable through the `runs` tool, so a test can prove that a call
ran exactly once. `whoami` answers the Authorization header it was sent.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from mcp.server.fastmcp import Context, FastMCP  # at top: FastMCP evaluates the annotations

HERE = Path(__file__).resolve()


@dataclass
class MCPServer:
    url: str  # the streamable-HTTP endpoint, .../mcp
    proc: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        from rouse_testing.process import stop_process

        stop_process(self.proc, grace=5)


def start_mcp_server(port: int | None = None) -> MCPServer:
    """The server on 127.0.0.1:<port> (a free one by default), once it answers."""
    import pytest

    from rouse_testing.wait import free_port, wait_until

    port = port or free_port()
    log_path = Path(tempfile.mkdtemp(prefix="rouse-mcp-")) / "mcp.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            # As a module: run as a file, its folder would shadow the stdlib's `operator`.
            [sys.executable, "-m", "rouse_testing.mcp_server", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = MCPServer(f"http://127.0.0.1:{port}/mcp", proc, log_path)

    def up() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"MCP server exited with {proc.returncode}:\n{server.logs()}")
        # Any HTTP answer means uvicorn listens (a GET without a session is refused).
        httpx.get(server.url, timeout=2)
        return True

    try:
        wait_until(up, timeout=30, what=f"MCP server on port {port}")
    except BaseException:
        server.stop()
        raise
    return server


def build(port: int) -> Any:
    import anyio
    from mcp.types import ToolAnnotations

    mcp = FastMCP("rouse-test-tools", host="127.0.0.1", port=port, log_level="WARNING")
    runs: Counter[str] = Counter()
    records = {"r1": {"id": "r1", "title": "first"}, "r2": {"id": "r2", "title": "second"}}

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def add(a: int, b: int) -> int:
        """Add two integers."""
        runs["add"] += 1
        return a + b

    @mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def lookup(id: str) -> dict[str, str]:
        """A record by id."""
        runs["lookup"] += 1
        if id not in records:
            raise ValueError(f"no record {id}")
        return records[id]

    @mcp.tool(annotations=ToolAnnotations(destructiveHint=True, readOnlyHint=False))
    def delete(id: str) -> dict[str, Any]:
        """Delete a record (the server says: destructive)."""
        runs["delete"] += 1
        records.pop(id, None)
        return {"deleted": id}

    @mcp.tool()
    def send_mail(to: str, body: str) -> str:
        """Send a mail (no annotation: the Agent declares that it needs approval)."""
        runs["send_mail"] += 1
        return f"sent to {to}"

    @mcp.tool()
    async def slow(seconds: float) -> str:
        """Answer after `seconds` (the test stops the server meanwhile)."""
        runs["slow"] += 1
        await anyio.sleep(seconds)
        return "done"

    @mcp.tool()
    def whoami(ctx: Context) -> str:  # type: ignore[type-arg]
        """The Authorization header of the request."""
        request = ctx.request_context.request
        return str(request.headers.get("authorization", "")) if request is not None else ""

    @mcp.tool()
    def session(ctx: Context) -> str:  # type: ignore[type-arg]
        """The MCP session id of the request: the same across calls on one connection."""
        request = ctx.request_context.request
        return str(request.headers.get("mcp-session-id", "")) if request is not None else ""

    @mcp.tool()
    def tool_runs(tool: str) -> int:
        """How many times tool ran in this server process."""
        return runs[tool]

    return mcp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    build(args.port).run(transport="streamable-http")


if __name__ == "__main__":
    main()
