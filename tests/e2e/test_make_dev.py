"""README's first command: `make dev` runs the support-triage example and says how to send it an event."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from localdev import alive
from rouse_testing.wait import free_port, require_tool, wait_until

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def schedule_fires(url: str, skill: str) -> int:
    """The local broker's own count of schedule ticks delivered to `skill`."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "rouse_local_schedule_fires_total"
            and sample.labels.get("skill") == skill
        )
    )


def test_make_dev_serves_the_example_and_the_printed_command_works(tmp_path: Path) -> None:
    make = require_tool("make", "apt-get install make")
    port = free_port()
    log = tmp_path / "make-dev.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROUSE_", "MAKE"))}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [make, "-s", "dev", f"ROUSE_DEV_ARGS=--port {port} --state-dir {tmp_path / 'state'}"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    pids: set[int] = set()
    try:

        def up() -> bool:
            assert proc.poll() is None, f"make dev exited {proc.returncode}:\n{log.read_text()}"
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200

        wait_until(up, timeout=300, what="make dev to serve the broker")  # may pip install first
        printed = [line.strip() for line in log.read_text().splitlines() if "rouse send " in line]
        assert printed, log.read_text()
        command = f"{printed[0]} --broker {url} --timeout 120"
        sent = subprocess.run(
            ["bash", "-c", command],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr + log.read_text()[-3000:]
        assert "-> escalate: replied com.example.ticket.escalated" in sent.stdout
        assert '"escalatedTo": "support-oncall@example.com"' in sent.stdout
        skills = {s["skill"]: s for s in httpx.get(f"{url}/skills").json()["skills"]}
        pids = {p["pid"] for s in skills.values() for p in s["processes"]}
        served = {name: sum(p["served"] for p in s["processes"]) for name, s in skills.items()}
        # The example's */5 schedule may fire during the test: digest serves exactly its ticks.
        ticks = schedule_fires(url, "digest")
        assert served == {
            "triage": 1, "draft": 1, "escalate": 1, "refund": 0, "digest": ticks, "ask": 0
        }  # fmt: skip
        # digest has no process, unless the example's office-hours warm-pool schedule
        # (weekdays 08:00-18:00 UTC) keeps one warm, or a tick has just woken it
        if ticks == 0:
            assert len(skills["digest"]["processes"]) == skills["digest"]["warmFloor"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    wait_until(
        lambda: not any(alive(pid) for pid in pids), timeout=15, what="skill processes to stop"
    )
    assert "all skill processes stopped" in log.read_text()
