"""Run the real Rouse operator (`python -m rouse_operator`) against a test control plane."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rouse_testing.process import stop_process
from rouse_testing.wait import free_port, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]
AGENT_CRD = REPO_ROOT / "crds" / "agent.yaml"


def install_agent_crd(cluster: Any) -> None:
    """Apply crds/agent.yaml and wait until Agents are served."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(AGENT_CRD))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/agents.rouse.dev")
    wait_until(
        lambda: cluster.kubectl("get", "agents.rouse.dev", "-A", check=False).returncode == 0,
        timeout=30,
        what="the Agent API to be served",
    )
    wait_until(  # the OpenAPI document (kubectl explain, strict validation) lags a little behind
        lambda: cluster.kubectl("explain", "agents.rouse.dev.spec", check=False).returncode == 0,
        timeout=60,
        interval=0.5,
        what="the Agent schema in the API server's OpenAPI document",
    )


@dataclass
class OperatorProcess:
    """A running operator: its process, its /metrics + /healthz port and its log."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def log_tail(self, lines: int = 80) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        stop_process(self.proc, grace=20)


def start_operator(
    cluster: Any,
    namespaces: list[str],
    log: Path,
    extra_env: dict[str, str] | None = None,
    module: str = "rouse_operator",
    extra_args: list[str] | None = None,
) -> OperatorProcess:
    """Start `python -m <module> --namespace ...` and wait for /healthz to answer 200."""
    port = free_port()
    env = cluster.env | {"ROUSE_METRICS_PORT": str(port), "ROUSE_RESYNC_INTERVAL": "3600"}
    env |= extra_env or {}
    args = [arg for ns in namespaces for arg in ("--namespace", ns)] + (extra_args or [])
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    running = OperatorProcess(proc, port, log)

    def healthy() -> bool:
        if not running.alive():
            raise AssertionError(f"operator exited {proc.returncode}:\n{running.log_tail()}")
        return running.get("/healthz")[0] == 200

    try:
        wait_until(healthy, timeout=60, what=f"operator /healthz on port {port}")
    except BaseException:
        running.stop()
        raise
    return running


def get_json(cluster: Any, *args: str) -> Any:
    """`kubectl get ... -o json` parsed; None when the object does not exist."""
    proc = cluster.kubectl("get", *args, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr or "not found" in proc.stderr:
            return None
        raise AssertionError(f"kubectl get {' '.join(args)}: {proc.stderr}")
    return json.loads(proc.stdout)
