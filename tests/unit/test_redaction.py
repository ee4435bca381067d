"""Credentials never appear in an answer or a log line: a state URL's password is masked.

Real runtime and parking processes given a Redis URL with a password where no Redis
listens: the store errors quote the URL, in 503 bodies and in the logs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from rouse_runtime.redact import redact
from rouse_testing.parking import start_parking
from rouse_testing.runtime import start_runtime
from rouse_testing.wait import free_port

HANDLERS = Path(__file__).parent / "runtime_handlers"
SECRET = "s3cret-Pa55"
EVENT = {
    "ce-specversion": "1.0",
    "ce-id": "r-1",
    "ce-source": "/redaction",
    "ce-type": "test.echo",
    "content-type": "application/json",
}


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"redis://:{SECRET}@h:6379/0 down", "redis://***@h:6379/0 down"),
        (f"'rediss://user:{SECRET}@h/1'", "'rediss://***@h/1'"),
        (f"redis://h:6379/0?password={SECRET}&db=1", "redis://h:6379/0?password=***&db=1"),
        ("redis://h:6379/0 and sqlite:///tmp/x.db", "redis://h:6379/0 and sqlite:///tmp/x.db"),
    ],
)
def test_redact(text: str, masked: str) -> None:
    assert redact(text) == masked


def test_store_errors_in_answers_and_logs_hold_no_password(tmp_path: Path) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"  # nothing listens there
    runtime = start_runtime(
        {"ROUSE_HANDLER": "rouse_test_skills:skill", "ROUSE_STATE_URL": url}, HANDLERS
    )
    parking = start_parking(tmp_path, url, extra_env={"ROUSE_PARKING_TOKEN": "t"})
    try:
        answer = httpx.post(runtime.url, headers=EVENT, content=b"{}", timeout=30)
        assert answer.status_code == 503
        assert "redis://***@127.0.0.1" in answer.text
        parked = httpx.post(
            f"{parking.url}/park/ns/agent/skill", headers=EVENT, content=b"{}", timeout=30
        )
        assert parked.status_code == 503
        assert "redis://***@127.0.0.1" in parked.text
        for text in (answer.text, parked.text, runtime.logs(), parking.log_path.read_text()):
            assert SECRET not in text
    finally:
        runtime.stop()
        parking.stop()


def test_a_bad_state_url_is_named_without_its_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUSE_")}
    env |= {"ROUSE_HANDLER": "x:y", "ROUSE_STATE_URL": f"postgres://app:{SECRET}@db/rouse"}
    proc = subprocess.run(
        [sys.executable, "-m", "rouse_runtime"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "postgres://***@db/rouse" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
