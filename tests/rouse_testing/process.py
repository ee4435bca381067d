"""Stopping the real server processes the fixtures start (one way for all of them)."""

from __future__ import annotations

import subprocess
from typing import Any


def stop_process(proc: subprocess.Popen[Any], *, grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited after `grace` seconds; reaps it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
