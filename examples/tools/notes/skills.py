"""Skills of the tools example: each calls the notes MCP server through ctx.tools."""

from __future__ import annotations

from typing import Any

from rouse_runtime import CloudEvent, Context
from rouse_runtime.tools import ToolRejected


async def file(event: CloudEvent, ctx: Context) -> dict[str, Any]:
    """Add the note, and say which earlier notes share its first word."""
    text = str((event.data or {})["text"])
    note = await ctx.tools.call("notes.add_note", text=text)
    related = await ctx.tools.call("notes.search", query=text.split()[0])
    return {"note": note, "related": [n["id"] for n in related["notes"] if n["id"] != note["id"]]}


async def purge(event: CloudEvent, ctx: Context) -> dict[str, Any]:
    """Delete a note: the server marks delete_note destructive, so a person approves it first."""
    note_id = str((event.data or {})["id"])
    try:
        deleted = await ctx.tools.call("notes.delete_note", id=note_id)
    except ToolRejected as rejected:
        return {"purged": False, "id": note_id, "reason": rejected.decision.get("reason")}
    return {"purged": True, **deleted}
