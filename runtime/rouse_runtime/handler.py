"""Import the skill named by ROUSE_HANDLER (`module:function`), reporting failure as text.

A handler that cannot be imported must not crash-loop the pod: the server starts,
readiness fails with this message, and the log says it once.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LoadedHandler:
    function: Callable[..., Any] | None
    is_async: bool = False
    error: str | None = None
    # An `async def` with `yield`: a front door streams what it yields (Server-Sent Events).
    is_stream: bool = False


def load_handler(spec: str) -> LoadedHandler:
    """The function spec names, or the reason it cannot be used."""
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:
        return LoadedHandler(
            None,
            error=f"cannot import module {module_name!r} (ROUSE_HANDLER={spec}): {type(exc).__name__}: {exc}",
        )
    for part in attr.split("."):
        if not hasattr(obj, part):
            return LoadedHandler(
                None,
                error=f"module {module_name!r} has no attribute {attr!r} (ROUSE_HANDLER={spec})",
            )
        obj = getattr(obj, part)
    if not callable(obj):
        return LoadedHandler(
            None, error=f"ROUSE_HANDLER={spec} is a {type(obj).__name__}, not a function"
        )
    is_async = inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004 - async callable objects
    )
    return LoadedHandler(obj, is_async=is_async, is_stream=inspect.isasyncgenfunction(obj))
