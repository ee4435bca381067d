"""Start a real `rouse-runtime` process on a free loopback port, and a real HTTP sink.

`start_runtime(env, handler_dir)` runs `python -m rouse_runtime` (the same entry
point as the image's `rouse-runtime`) with `handler_dir` as working directory,
waits for /healthz, and returns a handle whose `stop()` ends it. Unless env
names one, each runtime gets its own SQLite state file, so tests never share
idempotency records by accident.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from rouse_testing.process import stop_process
from rouse_testing.wait import free_port, wait_until


@dataclass
class RunningRuntime:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    state_dir: Path

    def logs(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


def start_runtime(
    env: dict[str, str], handler_dir: Path, *, command: list[str] | None = None
) -> RunningRuntime:
    """A runtime serving on 127.0.0.1:<free port>; fails the test if it does not come up."""
    port = free_port()
    state_dir = Path(tempfile.mkdtemp(prefix="rouse-runtime-"))
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("ROUSE_") and k != "PORT"}
    full_env.update(
        {
            "PORT": str(port),
            "ROUSE_HOST": "127.0.0.1",
            "ROUSE_STATE_URL": f"sqlite:///{state_dir}/state.db",
            "PYTHONUNBUFFERED": "1",
        }
    )
    full_env.update(env)
    log_path = state_dir / "runtime.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            command or [sys.executable, "-m", "rouse_runtime"],
            cwd=handler_dir,
            env=full_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    running = RunningRuntime(f"http://127.0.0.1:{port}", proc, log_path, state_dir)

    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"rouse-runtime exited with {proc.returncode}:\n{running.logs()}")
        return httpx.get(f"{running.url}/healthz", timeout=2).status_code == 200

    try:
        wait_until(healthy, timeout=30, what=f"rouse-runtime /healthz on port {port}")
    except BaseException:
        running.stop()
        raise
    return running


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpSink:
    """A loopback HTTP server recording every POST (answers 202), e.g. a broker stand-in."""

    url: str
    received: list[Received] = field(default_factory=list)
    _server: http.server.ThreadingHTTPServer | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def start_sink(status: int = 202) -> HttpSink:
    sink = HttpSink(url="")
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            with lock:
                sink.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                )
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sink.url = f"http://127.0.0.1:{server.server_address[1]}/"
    sink._server = server
    return sink
