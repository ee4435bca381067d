"""Wait for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def wait_until(
    check: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.05, what: str
) -> T:
    """Poll `check` until it returns a truthy value; fail naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception as exc:  # the condition may raise until it holds
            last_error = exc
        else:
            if value:
                return value
        time.sleep(interval)
    detail = f" (last error: {last_error!r})" if last_error else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}{detail}")


def free_port() -> int:
    """A free TCP port on loopback (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_tool(name: str, hint: str) -> str:
    """Path of a tool the test needs; a missing tool fails the test, never skips it."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {hint}")
    return path
