"""A real redis-server on a free loopback port (no persistence), for store tests."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rouse_testing.process import stop_process
from rouse_testing.wait import free_port, require_tool, wait_until


@dataclass
class RedisServer:
    url: str
    port: int
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.proc, grace=10)


def _pong(port: int) -> bool:
    """Serving: PONG, or asking for a password first (a server with `--requirepass`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))


def start_redis(workdir: Path, args: Sequence[str] = ()) -> RedisServer:
    """Start redis-server (with `args` first: a config's own, e.g. the chart's ACL users); a
    missing binary fails the test (run hack/system-deps.sh)."""
    binary = require_tool(
        "redis-server", "install it with `bash hack/system-deps.sh` (Debian redis-server)"
    )
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [
            binary,
            *args,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = RedisServer(f"redis://127.0.0.1:{port}/0", port, proc)
    try:
        wait_until(
            lambda: proc.poll() is None and _pong(port),
            timeout=20,
            what=f"redis-server on port {port}",
        )
    except BaseException:
        server.stop()
        raise
    return server
