"""The notes MCP server of the tools example: FastMCP over streamable HTTP, notes in memory.

With NOTES_TOKEN set, every call must carry `Authorization: Bearer <token>`
(the Agent sends it from a Secret). delete_note is annotated destructive, so a
Rouse skill waits for a person's approval before calling it.

    python -m notes.server --port 8765
"""

from __future__ import annotations

import argparse
import itertools
import os

from mcp.server.fastmcp import Context, FastMCP
from mcp.types import ToolAnnotations

notes: dict[str, str] = {}
ids = itertools.count(1)


def authorize(ctx: Context) -> None:  # type: ignore[type-arg]
    token = os.environ.get("NOTES_TOKEN")
    request = ctx.request_context.request
    sent = request.headers.get("authorization") if request is not None else None
    if token and sent != f"Bearer {token}":
        raise PermissionError("missing or wrong Authorization header")


def add_note(text: str, ctx: Context) -> dict[str, str]:  # type: ignore[type-arg]
    """Store a note; returns it with its id."""
    authorize(ctx)
    note_id = f"n{next(ids)}"
    notes[note_id] = text
    return {"id": note_id, "text": text}


def search(query: str, ctx: Context) -> dict[str, list[dict[str, str]]]:  # type: ignore[type-arg]
    """Notes whose text contains query (case-insensitive)."""
    authorize(ctx)
    found = [{"id": i, "text": t} for i, t in notes.items() if query.lower() in t.lower()]
    return {"notes": found}


def delete_note(id: str, ctx: Context) -> dict[str, str]:  # type: ignore[type-arg]
    """Delete a note for good."""
    authorize(ctx)
    if notes.pop(id, None) is None:
        raise KeyError(f"no note {id}")
    return {"deleted": id}


def build(host: str, port: int) -> FastMCP:  # type: ignore[type-arg]
    """The server; built for its host, as FastMCP guards loopback against DNS rebinding."""
    mcp = FastMCP("notes", host=host, port=port, log_level="WARNING")
    mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False))(add_note)
    mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))(search)
    mcp.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))(delete_note)
    return mcp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a pod")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    build(args.host, args.port).run(transport="streamable-http")


if __name__ == "__main__":
    main()
