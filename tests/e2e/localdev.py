"""Run `rouse dev` as a real process and look at it over HTTP and /proc."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent
from rouse_testing.wait import free_port, wait_until

ROUSE = [sys.executable, "-m", "rouse_runtime.cli"]


def rouse(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the `rouse` CLI to completion."""
    return subprocess.run(
        [*ROUSE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def children(pid: int) -> set[int]:
    """Direct child processes of `pid` (Linux /proc)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(child) for child in text)
    return found


def descendants(pid: int) -> set[int]:
    """Every process under `pid`: skill processes are children of rouse dev or of its template."""
    found = children(pid)
    for child in list(found):
        with contextlib.suppress(FileNotFoundError):  # it may exit meanwhile
            found |= descendants(child)
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class LocalDev:
    """A running `rouse dev`."""

    proc: subprocess.Popen[str]
    url: str
    state_dir: Path
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        response.raise_for_status()
        return response.json()

    def skill(self, name: str) -> dict[str, Any]:
        """The pool of one skill as GET /skills reports it."""
        return next(s for s in self.get("/skills")["skills"] if s["skill"] == name)

    def pids(self, name: str) -> set[int]:
        return {p["pid"] for p in self.skill(name)["processes"] if p["pid"] is not None}

    def post(self, event_type: str, data: Any, **attributes: str) -> httpx.Response:
        """POST a CloudEvent in binary mode."""
        attrs = {"type": event_type, "source": "/e2e", "datacontenttype": "application/json"}
        event = CloudEvent({**attrs, **attributes}, data)
        headers, body = to_binary(event)
        return httpx.post(f"{self.url}/", headers=headers, content=body, timeout=10)

    def wait_chain(self, chain: str, timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            found: dict[str, Any] = self.get(f"/chains/{chain}")
            return found if found["done"] else None

        return wait_until(
            done, timeout=timeout, what=f"chain {chain} to finish\n{self.logs()[-3000:]}"
        )

    def stop(self) -> int:
        """SIGTERM and wait; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return int(self.proc.returncode)


def start_dev(
    agent_file: Path,
    state_dir: Path,
    *,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> LocalDev:
    """`rouse dev AGENT --port <free>`; fails the test unless /healthz answers."""
    port = free_port()
    log_path = state_dir.parent / f"rouse-dev-{port}.log"
    state_dir.mkdir(parents=True, exist_ok=True)
    stream = log_path.open("w")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROUSE_")}
    full_env.update(env or {})
    proc = subprocess.Popen(
        [
            *ROUSE,
            "dev",
            str(agent_file),
            "--port",
            str(port),
            "--state-dir",
            str(state_dir),
            *extra,
        ],
        stdout=stream,
        stderr=subprocess.STDOUT,
        text=True,
        env=full_env,
    )
    dev = LocalDev(
        proc=proc, url=f"http://127.0.0.1:{port}", state_dir=state_dir, log_path=log_path
    )

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"rouse dev exited with {proc.returncode}:\n{dev.logs()}")
        return httpx.get(f"{dev.url}/healthz", timeout=2).status_code == 200

    wait_until(healthy, timeout=30, what="rouse dev to answer /healthz")
    return dev


def write_agent(directory: Path, agent: dict[str, Any]) -> Path:
    """The agent file plus the e2e skills module beside it (skills import from the file's dir)."""
    directory.mkdir(parents=True, exist_ok=True)
    source = Path(__file__).parent / "agents" / "e2e_skills.py"
    (directory / "e2e_skills.py").write_text(source.read_text())
    path = directory / "agent.yaml"
    path.write_text(yaml.safe_dump(agent))
    return path


def attempts(work: Path) -> list[dict[str, Any]]:
    path = work / "attempts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
