"""One skill: greet whoever the event names."""

from __future__ import annotations

from typing import Any


def greet(event: Any, ctx: Any) -> dict[str, str]:
    """Reply with a greeting; a plain ``def`` works as well as ``async def``."""
    data = event.data if isinstance(event.data, dict) else {}
    name = str(data.get("name") or "world")
    return {"greeting": f"Hello, {name}!"}
