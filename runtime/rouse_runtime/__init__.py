"""Rouse skill runtime: wraps a Python skill handler in a CloudEvents HTTP server.

This distribution is what the skill image installs, so it must never import
kopf or the Kubernetes client. Code the operator shares with local mode (reading
an Agent spec, names, the pure policies) lives here for that reason.

What a skill imports is re-exported here lazily (start-up time is a cold start):

    from rouse_runtime import CloudEvent, Context, BudgetExceeded

    async def triage(event: CloudEvent, ctx: Context) -> dict:
        ctx.step()
        return {"ok": True}
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "CloudEvent": "cloudevents.http",
    "Context": "rouse_runtime.context",
    "State": "rouse_runtime.context",
    "EmitError": "rouse_runtime.context",
    "BudgetExceeded": "rouse_runtime.budget",
    "ChatResult": "rouse_runtime.llm",
    "LLMError": "rouse_runtime.llm",
}

if TYPE_CHECKING:
    from cloudevents.http import CloudEvent

    from rouse_runtime.budget import BudgetExceeded
    from rouse_runtime.context import Context, EmitError, State
    from rouse_runtime.llm import ChatResult, LLMError

__all__ = [
    "BudgetExceeded",
    "ChatResult",
    "CloudEvent",
    "Context",
    "EmitError",
    "LLMError",
    "State",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rouse_runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
