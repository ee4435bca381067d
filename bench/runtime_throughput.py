"""Runtime overhead, measured side by side in one run.

1. Throughput: events/s of `rouse-runtime` serving a no-op skill (binary-mode
   CloudEvents, unique ids, so parsing, idempotency claims and metrics all run)
   vs requests/s of a bare Starlette JSON route, and of the same route that also
   parses the event with the SDK's `from_http` and nothing else (the "SDK floor":
   what the CloudEvents SDK the contract requires costs before Rouse does any work
   of its own); all on uvicorn's h11 protocol, one worker, access log off,
   loopback. The load comes from a separate process: raw asyncio keep-alive
   connections, so the generator is not the bottleneck.
2. Start (exec -> ready): `rouse-runtime` from exec to its first 200 on /readyz
   vs a bare Starlette app with a /readyz route run by `uvicorn.run` (h11, no
   access log), timed the same way; wall time and the process's CPU time at
   ready (the CPU figure is the steadier one on a shared machine).

Prints both ratios on its last lines (aim: throughput >= 0.85, start <= 1.3). Usage:
    python bench/runtime_throughput.py [--requests 4000] [--concurrency 16] [--rounds 3]
                                       [--state-dir /dev/shm] [--only start|throughput]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

Round = tuple[float, float, float, float]
# runtime, baseline, SDK floor: events/s, then CPU seconds per event, in that order.
Rates = tuple[float, float, float, float, float, float]
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
# The SDK floor: the baseline route plus the SDK's own parse of the event, nothing else.
SDK_FLOOR_APP = BASELINE_APP.replace(
    "from starlette.applications",
    "from cloudevents.http import from_http\nfrom starlette.applications",
).replace("    await request.body()", "    from_http(request.headers, await request.body())")
assert SDK_FLOOR_APP.count("from_http") == 2, "BASELINE_APP changed: the SDK floor no longer parses"
# The start baseline: the least a Starlette + uvicorn server does before it is ready.
BASELINE_START = """
import os
import uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route


async def readyz(request):
    return Response(b'{"status":"ready"}', media_type="application/json")


app = Starlette(routes=[Route("/readyz", readyz)])
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), http="h11",
            log_config=None, access_log=False, server_header=False)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def schedstat_seconds(pid: int) -> float:
    """Run time of a process's live threads (a finished thread's time is not counted)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
            total += int(f.read().split()[0])
    return total / 1e9


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far, robust to load from elsewhere (Linux).

    /proc/<pid>/schedstat counts it in nanoseconds; /proc/<pid>/stat only in
    10 ms ticks, too coarse for a start that takes a few of them.
    """
    try:
        return schedstat_seconds(pid)
    except OSError:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def start_baseline(
    workdir: Path, port: int, module: str = "bench_baseline"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            f"{module}:app",
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


def start_sdk_floor(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    return start_baseline(workdir, port, "bench_sdk_floor")


def throughput(workdir: Path, total: int, concurrency: int, rounds: int) -> list[Rates]:
    """(runtime, baseline, SDK floor) rates and CPU per event per round, run back to back."""
    pairs = []
    for r in range(rounds):
        rates, cpu = {}, {}
        servers = (
            ("baseline", start_baseline),
            ("SDK floor", start_sdk_floor),
            ("runtime", start_runtime),
        )
        for name, start in servers:
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
                    f"  round {r + 1}: {name:9s} {rates[name]:8.0f} events/s"
                    f"  {cpu[name] * 1e6:6.0f} us CPU/event",
                    file=sys.stderr,
                )
            finally:
                proc.terminate()
                proc.wait()
        names = ("runtime", "baseline", "SDK floor")
        pairs.append((*(rates[n] for n in names), *(cpu[n] for n in names)))
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
    """(runtime, bare Starlette) wall seconds from exec to ready and CPU seconds at ready."""
    pairs = []
    for _ in range(rounds):
        figures = []
        for start in (start_runtime, start_bare):
            port = free_port()
            started = time.perf_counter()
            proc = start(workdir, port)
            try:
                ready = wait_ready(f"http://127.0.0.1:{port}/readyz", proc) - started
                figures.append((ready, cpu_seconds(proc.pid)))
            finally:
                proc.terminate()
                proc.wait()
        (runtime, runtime_cpu), (bare, bare_cpu) = figures
        pairs.append((runtime, bare, runtime_cpu, bare_cpu))
    return pairs


def compile_bytecode(*paths: Path) -> None:
    """Write .pyc files as the image has them (pip compiles what it installs).

    An editable install under PYTHONDONTWRITEBYTECODE=1 would otherwise compile
    rouse_runtime's sources on every start, which no deployed skill does.
    """
    import rouse_runtime

    package = Path(rouse_runtime.__file__).parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package), *map(str, paths)], check=True
    )


def start_bare(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PORT": str(port)}
    return subprocess.Popen(
        [sys.executable, "-c", BASELINE_START], cwd=workdir, env=env, stdout=subprocess.DEVNULL
    )


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
    parser.add_argument("--only", choices=("start", "throughput"), help="run one of the two")
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
    rates: list[Rates] = []
    starts: list[Round] = []
    try:
        (workdir / "bench_skill.py").write_text(NOOP_SKILL)
        (workdir / "bench_baseline.py").write_text(BASELINE_APP)
        (workdir / "bench_sdk_floor.py").write_text(SDK_FLOOR_APP)
        compile_bytecode(workdir)
        if args.only != "start":
            print("throughput:", file=sys.stderr)
            rates = throughput(workdir, args.requests, args.concurrency, args.rounds)
        if args.only != "throughput":
            starts = start_times(workdir, max(7, args.rounds))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    # Ratios are taken per round (runs back to back) and the median reported, so
    # load from elsewhere on the machine shifts both sides of a ratio alike.
    med = statistics.median
    if starts:
        print(
            f"rouse-runtime exec -> ready:        {med(r[0] for r in starts) * 1000:6.0f} ms wall,"
            f" {med(r[2] for r in starts) * 1000:4.0f} ms CPU (medians of {len(starts)})"
        )
        print(
            f"bare Starlette + uvicorn -> ready:  {med(r[1] for r in starts) * 1000:6.0f} ms wall,"
            f" {med(r[3] for r in starts) * 1000:4.0f} ms CPU"
        )
    if rates:
        print(
            f"runtime no-op skill:       {med(r[0] for r in rates):8.0f} events/s  {med(r[3] for r in rates) * 1e6:5.0f} us CPU/event (medians)"
        )
        print(
            f"bare Starlette JSON route: {med(r[1] for r in rates):8.0f} events/s  {med(r[4] for r in rates) * 1e6:5.0f} us CPU/event"
        )
        print(
            f"SDK floor (route + from_http): {med(r[2] for r in rates):4.0f} events/s  {med(r[5] for r in rates) * 1e6:5.0f} us CPU/event"
        )
        print(
            f"SDK floor ratio (SDK floor / bare Starlette): {med(r[2] / r[1] for r in rates):.2f} events/s,"
            f" {med(r[4] / r[5] for r in rates):.2f} from CPU per event (the SDK parse alone)"
        )
        print(
            f"runtime / SDK floor: {med(r[0] / r[2] for r in rates):.2f} events/s,"
            f" {med(r[5] / r[3] for r in rates):.2f} from CPU per event (Rouse's own work)"
        )
    if starts:
        start_ratio = med(r[0] / r[1] for r in starts)
        start_cpu_ratio = med(r[2] / r[3] for r in starts)
        print(
            f"start ratio (runtime / bare Starlette, exec -> ready): {start_ratio:.2f} wall,"
            f" {start_cpu_ratio:.2f} CPU  (aim <= 1.3)"
        )
    if rates:
        rate_ratio = med(r[0] / r[1] for r in rates)
        cpu_ratio = med(r[4] / r[3] for r in rates)
        print(
            f"throughput ratio (runtime / bare Starlette): {rate_ratio:.2f} events/s,"
            f" {cpu_ratio:.2f} from CPU per event  (aim >= 0.85)"
        )


if __name__ == "__main__":
    main()
