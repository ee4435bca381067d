"""A real Prometheus server (Debian's `prometheus`) for tests, on a free loopback port.

Targets come from a file_sd file the test rewrites (`set_targets`), so runtime
processes started and stopped during a test are scraped without a restart.
A missing binary fails the test with how to install it.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from rouse_testing.process import stop_process
from rouse_testing.wait import free_port, require_tool, wait_until

INSTALL_HINT = (
    "install Debian's prometheus package: `bash hack/system-deps.sh` (or `make system-deps`)"
)


@dataclass
class PrometheusServer:
    """A running Prometheus; `url` is its HTTP API base."""

    port: int
    workdir: Path
    scrape_interval: float
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def targets_file(self) -> Path:
        return self.workdir / "targets.json"

    def set_targets(self, targets: Sequence[str], labels: dict[str, str] | None = None) -> None:
        """Scrape exactly these host:port targets (file_sd is re-read on change)."""
        tmp = self.targets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps([{"targets": list(targets), "labels": labels or {}}]))
        tmp.replace(self.targets_file)

    def start(self) -> None:
        binary = require_tool("prometheus", INSTALL_HINT)
        interval = f"{int(self.scrape_interval * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": "rouse",
                    "scrape_timeout": interval,
                    "file_sd_configs": [
                        {"files": [str(self.targets_file)], "refresh_interval": "1s"}
                    ],
                }
            ],
        }
        if not self.targets_file.exists():
            self.set_targets([])
        (self.workdir / "prometheus.yml").write_text(json.dumps(config))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(
            self._ready, timeout=60, what=f"Prometheus ready on {self.url} ({self.log_path})"
        )

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(
                f"prometheus exited with {self.process.returncode}: {self.log_tail()}"
            )
        return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200

    def stop(self) -> None:
        """Stop the server (tests use this to simulate Prometheus going away)."""
        if self.process is not None:
            stop_process(self.process)
        self.process = None

    def active_targets(self) -> list[dict[str, object]]:
        body = httpx.get(f"{self.url}/api/v1/targets", timeout=2.0).json()
        return list(body["data"]["activeTargets"])

    def wait_scraped(self, target: str, *, timeout: float = 30.0) -> None:
        """Wait until `target` (host:port) has been scraped successfully at least once."""

        def healthy() -> bool:
            return any(
                t["labels"].get("instance") == target and t["health"] == "up"  # type: ignore[attr-defined]
                for t in self.active_targets()
            )

        wait_until(healthy, timeout=timeout, what=f"Prometheus scraping {target}")

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def prometheus_server(scrape_interval: float = 1.0) -> Iterator[PrometheusServer]:
    """Start Prometheus in a temporary directory; stop and clean up afterwards."""
    with tempfile.TemporaryDirectory(prefix="rouse-prometheus-") as workdir:
        server = PrometheusServer(
            port=free_port(), workdir=Path(workdir), scrape_interval=scrape_interval
        )
        try:
            server.start()
            yield server
        finally:
            server.stop()
