"""A front door's time to first streamed chunk, cold (from zero) and warm, against bare Starlette.

Local mode: `rouse dev` with one public front door whose handler is an async generator
yielding three chunks; a client POSTs to /agents/bench/ask and times the request until
the first `chunk` event of the stream (the handler's first output: the opening `run`
event comes before the handler runs, so it would flatter the figure). Cold: the front
door idled out to zero processes first (`--idle 1`), so the time includes local mode's
cold start (spawn, imports, ready) and the proxy; warm: the process is up.

Baseline, started the same way: a bare Starlette app streaming the same three chunks
with sse-starlette (`EventSourceResponse`), run on uvicorn by `python -c`; cold is
spawn + poll /readyz every 10 ms (local mode's poll) + the request to its first chunk;
warm is a request to the running app. Printed: medians and the ratios rouse/bare; the last
row is the front door's own process asked directly (the runtime without local mode's proxy).
Bytecode is compiled first, as an image has it.

On the real node the same comparison (through the ingress, the activator and queue-proxy,
against a bare Knative Service from the same image) is bench/front_door_node.py.

Usage: python bench/front_door.py [--rounds 7] [--warm 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from runtime_throughput import compile_bytecode, free_port, wait_ready

SKILL = """
async def ask(event, ctx):
    for i in range(3):
        yield f"chunk {i}"
"""
AGENT = """
apiVersion: rouse.dev/v1alpha1
kind: Agent
metadata: {name: bench}
spec:
  image: bench
  skills:
  - {name: ask, handler: "bench_skill:ask", http: {public: true}}
"""
BARE = """
import os, uvicorn
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def chunks():
    for i in range(3):
        yield {"event": "chunk", "data": f'"chunk {i}"'}

async def ask(request):
    await request.body()
    return EventSourceResponse(chunks())

async def readyz(request):
    return Response(b"ok")

app = Starlette(routes=[Route("/", ask, methods=["POST"]), Route("/readyz", readyz)])
uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_config=None,
            access_log=False, server_header=False)
"""


def first_chunk(client: httpx.Client, url: str, started: float | None = None) -> float:
    """Seconds from `started` (default: now) until the stream's first `event: chunk` line."""
    began = time.perf_counter() if started is None else started
    with client.stream("POST", url, json={"question": "?"}) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if line.startswith("event: chunk"):
                return time.perf_counter() - began
    raise SystemExit(f"{url}: the stream ended without a chunk")


def local_mode(
    workdir: Path, rounds: int, warm: int
) -> tuple[list[float], list[float], list[float]]:
    port = free_port()
    dev = subprocess.Popen(
        [sys.executable, "-m", "rouse_runtime.cli", "dev", str(workdir / "agent.yaml"),
         "--port", str(port), "--state-dir", str(workdir / "state"), "--idle", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    cold: list[float] = []
    warms: list[float] = []
    direct: list[float] = []  # the front door's own process, past local mode's proxy
    try:
        wait_ready(f"{base}/healthz", dev)
        with httpx.Client(timeout=60) as client:
            for _ in range(rounds):
                while client.get(f"{base}/skills").json()["skills"][0]["processes"]:
                    time.sleep(0.1)  # idled out: back to zero
                cold.append(first_chunk(client, f"{base}/agents/bench/ask"))
                warms += [first_chunk(client, f"{base}/agents/bench/ask") for _ in range(warm)]
                process = client.get(f"{base}/skills").json()["skills"][0]["processes"][0]
                direct += [first_chunk(client, f"{process['url']}/") for _ in range(warm)]
    finally:
        dev.terminate()
        dev.wait(timeout=30)
    return cold, warms, direct


def bare(workdir: Path, rounds: int, warm: int) -> tuple[list[float], list[float]]:
    cold: list[float] = []
    warms: list[float] = []
    with httpx.Client(timeout=60) as client:
        for _ in range(rounds):
            port = free_port()
            began = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, "-c", BARE], cwd=workdir, env={**os.environ, "PORT": str(port)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                url = f"http://127.0.0.1:{port}"
                while True:  # local mode's readiness poll: every 10 ms
                    try:
                        if client.get(f"{url}/readyz", timeout=1).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.01)
                cold.append(first_chunk(client, f"{url}/", began))
                warms += [first_chunk(client, f"{url}/") for _ in range(warm)]
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return cold, warms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warm", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        (workdir / "bench_skill.py").write_text(SKILL)
        (workdir / "agent.yaml").write_text(AGENT)
        compile_bytecode(workdir)
        rouse_cold, rouse_warm, rouse_direct = local_mode(workdir, args.rounds, args.warm)
        bare_cold, bare_warm = bare(workdir, args.rounds, args.warm)
    rows = [
        ("cold (from zero), first chunk", rouse_cold, bare_cold),
        ("warm, first chunk", rouse_warm, bare_warm),
        ("warm, the process itself", rouse_direct, bare_warm),
    ]
    print(f"{'median':32} {'rouse (local)':>14} {'bare Starlette':>15} {'ratio':>7}")
    for name, ours, theirs in rows:
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"{name:32} {a * 1000:11.1f} ms {b * 1000:12.1f} ms {a / b:7.2f}")


if __name__ == "__main__":
    main()
