"""Runtime overhead, measured side by side in one run.

1. Throughput: events/s of `rouse-runtime` serving a no-op skill (binary-mode
   CloudEvents, unique ids, so parsing, idempotency claims and metrics all run)
   vs requests/s of a bare Starlette JSON route; both on uvicorn's h11 protocol,
   one worker, access log off, loopback. The load comes from a separate process:
   raw asyncio keep-alive connections, so the generator is not the bottleneck.
2. Start-to-ready: `rouse-runtime` from exec to its first 200 on /readyz vs
   `python -c "import fastapi, uvicorn, cloudevents"` from exec to exit.

Prints both ratios (aim: throughput >= 0.85, start <= 1.2). Usage:
    python bench/runtime_throughput.py [--requests 4000] [--concurrency 16] [--rounds 3]
                                       [--state-dir /dev/shm]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

Round = tuple[float, float, float, float]
NOOP_SKILL = "async def noop(event, ctx):\n    return None\n"
BASELINE_APP = """
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def receive(request):
    await request.body()
    return JSONResponse({"ok": True}, status_code=202)


app = Starlette(routes=[Route("/", receive, methods=["POST"])])
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc), robust to load from elsewhere."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> float:
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return time.perf_counter()
        except OSError:
            time.sleep(0.002)
    raise SystemExit(f"{url} not ready after {timeout}s")


# ---- load generator (runs in its own process) ----


async def _connection(host: str, port: int, requests: list[bytes], done: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    for request in requests:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        if status >= 300:
            raise SystemExit(f"unexpected status {status}: {head!r}")
        done[0] += 1
    writer.close()


def _request(port: int, n: int, run: str) -> bytes:
    body = b'{"n": %d}' % n
    return (
        b"POST / HTTP/1.1\r\nhost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
        b"ce-specversion: 1.0\r\nce-id: %s-%d\r\nce-source: /bench\r\nce-type: bench.noop\r\n"
        b"content-length: %d\r\n\r\n%s" % (port, run.encode(), n, len(body), body)
    )


async def _load(port: int, total: int, concurrency: int, run: str) -> float:
    per = total // concurrency
    batches = [[_request(port, c * per + i, run) for i in range(per)] for c in range(concurrency)]
    done = [0]
    started = time.perf_counter()
    await asyncio.gather(*(_connection("127.0.0.1", port, b, done) for b in batches))
    return done[0] / (time.perf_counter() - started)


def measure(port: int, total: int, concurrency: int, run: str) -> float:
    """Events/s against port, from a separate load-generator process."""
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(port), str(total), str(concurrency), run],
        capture_output=True,
        check=True,
        text=True,
    )
    return float(out.stdout.strip())


# ---- servers ----


STATE_DIR: Path | None = None  # --state-dir: where the runtime's SQLite file lives


def start_runtime(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    state = STATE_DIR or workdir
    env = {
        **os.environ,
        "PORT": str(port),
        "ROUSE_HOST": "127.0.0.1",
        "ROUSE_HANDLER": "bench_skill:noop",
        "ROUSE_STATE_URL": f"sqlite:///{state}/state-{port}.db",
        "ROUSE_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(runtime_command(), cwd=workdir, env=env, stdout=subprocess.DEVNULL)


def runtime_command() -> list[str]:
    script = Path(sys.executable).with_name("rouse-runtime")
    return [str(script)] if script.exists() else [sys.executable, "-m", "rouse_runtime"]


def start_baseline(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench_baseline:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--http",
            "h11",
            "--no-access-log",
            "--log-level",
            "warning",
            "--workers",
            "1",
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )


def throughput(
    workdir: Path, total: int, concurrency: int, rounds: int
) -> list[tuple[float, float]]:
    """(runtime, baseline) rates per round; the two of a round run back to back."""
    pairs = []
    for r in range(rounds):
        rates, cpu = {}, {}
        for name, start in (("baseline", start_baseline), ("runtime", start_runtime)):
            port = free_port()
            proc = start(workdir, port)
            try:
                if name == "runtime":
                    wait_ready(f"http://127.0.0.1:{port}/readyz", proc)
                else:
                    _wait_port(port, proc)
                measure(port, max(200, total // 10), concurrency, f"warm{r}")
                cpu_before = cpu_seconds(proc.pid)
                rates[name] = measure(port, total, concurrency, f"run{r}")
                cpu[name] = (cpu_seconds(proc.pid) - cpu_before) / total
                print(
                    f"  round {r + 1}: {name:8s} {rates[name]:8.0f} events/s"
                    f"  {cpu[name] * 1e6:6.0f} us CPU/event",
                    file=sys.stderr,
                )
            finally:
                proc.terminate()
                proc.wait()
        pairs.append((rates["runtime"], rates["baseline"], cpu["runtime"], cpu["baseline"]))
    return pairs


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import socket

    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise SystemExit("baseline server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.005)
    raise SystemExit("baseline did not listen")


def start_times(workdir: Path, rounds: int) -> list[Round]:
    """(runtime, import-only run) wall seconds to ready/exit and CPU seconds, per round."""
    pairs = []
    for _ in range(rounds):
        cpu_before = children_cpu_seconds()
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import fastapi, uvicorn, cloudevents"], check=True)
        imports = time.perf_counter() - started
        imports_cpu = children_cpu_seconds() - cpu_before
        port = free_port()
        started = time.perf_counter()
        proc = start_runtime(workdir, port)
        try:
            ready = wait_ready(f"http://127.0.0.1:{port}/readyz", proc) - started
            pairs.append((ready, imports, cpu_seconds(proc.pid), imports_cpu))
        finally:
            proc.terminate()
            proc.wait()
    return pairs


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        port, total, concurrency, run = (
            int(sys.argv[2]),
            int(sys.argv[3]),
            int(sys.argv[4]),
            sys.argv[5],
        )
        print(asyncio.run(_load(port, total, concurrency, run)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="directory of the runtime's SQLite state (default: a temp dir; /dev/shm mimics "
        "a memory-backed emptyDir at /tmp)",
    )
    args = parser.parse_args()
    global STATE_DIR
    STATE_DIR = args.state_dir
    workdir = Path(tempfile.mkdtemp(prefix="rouse-bench-"))
    try:
        (workdir / "bench_skill.py").write_text(NOOP_SKILL)
        (workdir / "bench_baseline.py").write_text(BASELINE_APP)
        print("throughput:", file=sys.stderr)
        rates = throughput(workdir, args.requests, args.concurrency, args.rounds)
        starts = start_times(workdir, max(7, args.rounds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # Ratios are taken per round (runs back to back) and the median reported, so
    # load from elsewhere on the machine shifts both sides of a ratio alike.
    rate_ratio = statistics.median(r[0] / r[1] for r in rates)
    cpu_ratio = statistics.median(r[3] / r[2] for r in rates)
    start_ratio = statistics.median(r[0] / r[1] for r in starts)
    start_cpu_ratio = statistics.median(r[2] / r[3] for r in starts)
    med = statistics.median
    print(
        f"runtime no-op skill:       {med(r[0] for r in rates):8.0f} events/s  {med(r[2] for r in rates) * 1e6:5.0f} us CPU/event (medians)"
    )
    print(
        f"bare Starlette JSON route: {med(r[1] for r in rates):8.0f} events/s  {med(r[3] for r in rates) * 1e6:5.0f} us CPU/event"
    )
    print(f"throughput ratio (runtime / starlette): {rate_ratio:.2f}  (aim >= 0.85)")
    print(f"  same from CPU per event (load-independent): {cpu_ratio:.2f}")
    print(
        f"rouse-runtime start-to-ready: {med(r[0] for r in starts) * 1000:6.0f} ms wall, {med(r[2] for r in starts) * 1000:4.0f} ms CPU"
    )
    print(
        f'python -c "import fastapi, uvicorn, cloudevents": {med(r[1] for r in starts) * 1000:6.0f} ms wall, {med(r[3] for r in starts) * 1000:4.0f} ms CPU'
    )
    print(f"start ratio (runtime / imports): {start_ratio:.2f}  (aim <= 1.2)")
    print(f"  same from CPU time (load-independent): {start_cpu_ratio:.2f}")


if __name__ == "__main__":
    main()
