"""Tools over MCP: `ctx.tools`, the MCP servers an Agent lists in `spec.tools`.

Cheap to import on purpose (the skill server imports it only when a skill
touches `ctx.tools` or an approval comes back): the `mcp` SDK is imported by
`client.py` when the first connection opens, so a skill that calls no tool
pays nothing for it at a cold start.

Modules: `spec` (the Agent's `spec.tools` → env → `ToolServer`), `errors`,
`client` (one MCP session per server, kept across invocations), `calls`
(`ctx.tools`: allow-list, budget, metrics, journal), `approval` (suspend and
resume around a tool that needs a human's yes).
"""

from __future__ import annotations

from rouse_runtime.tools.errors import (
    ToolError,
    ToolFailed,
    ToolNotAllowed,
    ToolRejected,
    ToolUnavailable,
)

__all__ = ["ToolError", "ToolFailed", "ToolNotAllowed", "ToolRejected", "ToolUnavailable"]
