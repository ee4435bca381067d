"""What `ctx.tools.call` raises: one base class a skill can catch, one subclass per cause.

Unhandled, any of them fails the invocation like another exception (500, retried
per the skill's delivery spec). Messages name the server and tool, never a header.
"""

from __future__ import annotations


class ToolError(Exception):
    """A tool call did not produce a result; `tool` is `<server>.<tool>`."""

    def __init__(self, tool: str, message: str) -> None:
        super().__init__(f"{tool}: {message}")
        self.tool = tool


class ToolNotAllowed(ToolError):  # noqa: N818 - the name users catch and read
    """The server is not in spec.tools, or the tool is not in its allow-list (no call was made)."""


class ToolUnavailable(ToolError):  # noqa: N818
    """The server cannot be reached, went away during the call, or did not answer in time."""


class ToolFailed(ToolError):  # noqa: N818
    """The server ran the tool and it reported an error (`isError`); `content` is what it said."""

    def __init__(self, tool: str, message: str, content: list[dict[str, object]]) -> None:
        super().__init__(tool, message)
        self.content = content


class ToolRejected(ToolError):  # noqa: N818
    """A person rejected the call when asked for approval; `decision` is the event's data."""

    def __init__(self, tool: str, message: str, decision: dict[str, object]) -> None:
        super().__init__(tool, message)
        self.decision = decision
