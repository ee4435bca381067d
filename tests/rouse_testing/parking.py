"""Start a real parking service process (`python -m rouse_runtime.parking`) on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from rouse_testing.process import stop_process
from rouse_testing.wait import free_port, wait_until

TEST_TOKEN = "parking-test-token"
AUTH = {"authorization": f"Bearer {TEST_TOKEN}"}


@dataclass
class Parking:
    url: str
    port: int
    env: dict[str, str]
    process: subprocess.Popen[bytes]
    log_path: Path

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real `rouse` CLI against this service."""
        return subprocess.run(
            [sys.executable, "-m", "rouse_runtime.cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**self.env, "ROUSE_PARKING_URL": self.url},
        )

    def stop(self) -> None:
        stop_process(self.process)


def start_parking(
    workdir: Path,
    state_url: str,
    broker_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Parking:
    """A parking service on a free port; fails the test if it does not come up."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUSE_") and k != "PORT"}
    env.update(
        {
            "PORT": str(port),
            "ROUSE_HOST": "127.0.0.1",
            "ROUSE_STATE_URL": state_url,
            # drop and replay need it; the CLI (Parking.cli) sends it from this env
            "ROUSE_PARKING_TOKEN": TEST_TOKEN,
        }
    )
    if broker_url:
        env["ROUSE_BROKER_URL"] = broker_url
    env.update(extra_env or {})
    log_path = workdir / f"parking-{port}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "rouse_runtime.parking"], env=env, stdout=log, stderr=log
        )
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"parking exited: {log_path.read_text(errors='replace')}")
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200

    wait_until(healthy, timeout=30, what=f"parking service /healthz on port {port}")
    return Parking(url, port, env, process, log_path)
