"""A skill whose handler cannot be imported: what its process does, in and out of Knative."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
from rouse_testing.runtime import start_runtime


def test_under_knative_a_bad_handler_exits_with_one_line_naming_it(tmp_path: Path) -> None:
    """Knative shows an exited container's message in the Revision; a never-ready one times out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUSE_")}
    env.update(
        ROUSE_HANDLER="hello:nope", ROUSE_AGENT="demo", ROUSE_SKILL="greet",
        K_SERVICE="demo-greet", PORT="0", PYTHONPATH=str(tmp_path),
        ROUSE_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}",
    )  # fmt: skip
    (tmp_path / "hello.py").write_text("def greet(event, ctx):\n    return None\n")
    proc = subprocess.run(
        [sys.executable, "-m", "rouse_runtime"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert [line["msg"] for line in lines if line["level"] == "error"] == [
        "rouse-runtime: module 'hello' has no attribute 'nope' (ROUSE_HANDLER=hello:nope)"
    ]


def test_outside_knative_a_bad_handler_serves_not_ready_with_the_reason(tmp_path: Path) -> None:
    """Local mode reads the reason from /readyz of a process that stays up."""
    (tmp_path / "hello.py").write_text("def greet(event, ctx):\n    return None\n")
    rt = start_runtime(
        {"ROUSE_HANDLER": "hello:nope", "ROUSE_AGENT": "demo", "ROUSE_SKILL": "greet"}, tmp_path
    )
    try:
        ready = httpx.get(f"{rt.url}/readyz", timeout=10)
        assert ready.status_code == 503
        assert "has no attribute 'nope'" in ready.json()["detail"]
    finally:
        rt.stop()
