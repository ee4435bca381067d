"""Local mode: first-event latency from zero processes vs a warm event, with the breakdown.

Runs the hello example's skill through local mode's own delivery path (the
broker's attempt: lease a process, starting one if none is up, POST the
CloudEvent, read the reply), in this process, for ``--rounds`` cold starts
(the process is stopped after each, back to zero) and warm events in between.
Twice: skill processes forked from local mode's template (the default, see
``rouse_runtime.local.template``; the template is started and ready first, as
it is a moment after ``rouse dev`` starts), then exec'd (``ROUSE_LOCAL_FORK=0``).

The skill process is ``python -c <wrapper>``, forked or exec'd alike: the
wrapper times, inside the process, its start (from the kernel's process start
time) and the imports ``rouse-runtime`` does (its server, uvicorn, the skill
module; in a fork only what the template did not import costs), prints both,
and then runs the same ``rouse_runtime.__main__.main()`` as ``rouse-runtime``.
Bytecode is compiled first, as the image has it (pip compiles what it
installs). Breakdown of a cold first event (medians):

  spawn        exec: fork/exec until the OS returns; fork: request to the template
               until it answers with the child's pid (local mode's clock)
  interpreter  process start to the wrapper's first line (10 ms resolution, /proc):
               exec: the interpreter's start; fork: the child's set-up (session,
               fds, env, sys.path)
  imports      rouse_runtime.__main__ + server + uvicorn + the skill module
               (fork: the skill module and what the template did not preload)
  ready        the rest of spawn-to-ready: app build, uvicorn start, bind, /readyz poll
  handler      the first request: HTTP round trip + skill (cold total - spawn-to-ready)

The skill process's own CPU time (user + system, from /proc) at the end of the
first event is printed too: on a shared machine wall times swing with the load,
CPU time much less. The last lines are the headline: the cold first event
against the 150 ms aim and the imports' share of it (aim: under half).

Usage: python bench/local_cold_start.py [--rounds 7] [--warm 10]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rouse_runtime.local.broker import new_event
from rouse_runtime.local.dev import DevOptions, LocalMode
from rouse_runtime.local.template import OPT_OUT
from rouse_runtime.local.view import View
from runtime_throughput import cpu_seconds  # the sibling bench: one CPU reader for both

REPO = Path(__file__).resolve().parents[1]
AGENT = REPO / "examples" / "hello" / "agent.yaml"
WRAPPER = """
import os, sys, time
started = time.clock_gettime(time.CLOCK_BOOTTIME)
with open("/proc/self/stat", "rb") as stat:
    ticks = int(stat.read().rsplit(b")", 1)[1].split()[19])
interpreter = started - ticks / os.sysconf("SC_CLK_TCK")
began = time.perf_counter()
began_cpu = time.process_time()
import importlib
import rouse_runtime.__main__, rouse_runtime.server, uvicorn
importlib.import_module(os.environ["ROUSE_HANDLER"].split(":")[0])
imports = time.perf_counter() - began
imports_cpu = time.process_time() - began_cpu
print(f"ROUSE_BENCH interpreter={interpreter:.6f} imports={imports:.6f} cpu={imports_cpu:.6f}", flush=True)
sys.exit(rouse_runtime.__main__.main())
"""
REPORT = re.compile(r"ROUSE_BENCH interpreter=([0-9.]+) imports=([0-9.]+) cpu=([0-9.]+)")
KEYS = (
    "cold",
    "spawn",
    "interpreter",
    "imports",
    "to_ready",
    "handler",
    "warm",
    "cpu",
    "imports_cpu",
)


def compile_bytecode() -> None:
    """Write .pyc files for rouse_runtime and the example, as an image has them."""
    import rouse_runtime

    package = Path(rouse_runtime.__file__).parent
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package), str(AGENT.parent)], check=True
    )


async def measure(
    rounds: int, warm: int, state_dir: Path, *, fork: bool
) -> tuple[dict[str, list[float]], float]:
    """The figures of each round, and how long the template took to be ready (0: exec)."""
    out = io.StringIO()
    options = DevOptions(
        agent_file=AGENT, port=0, state_dir=state_dir, command=(sys.executable, "-c", WRAPPER)
    )
    if fork:
        os.environ.pop(OPT_OUT, None)
    else:
        os.environ[OPT_OUT] = "0"
    mode = LocalMode.create(options, View(stream=out, tty=False))
    mode.bind()
    pool = mode.pools["greet"]
    figures: dict[str, list[float]] = {k: [] for k in KEYS}
    template_ready = 0.0
    if mode.template is not None:
        began = time.perf_counter()
        await mode.template.start()
        assert await mode.template.ready(), out.getvalue()
        template_ready = time.perf_counter() - began
    assert (mode.template is not None) == fork, out.getvalue()
    try:
        for _ in range(rounds):
            assert pool.live() == [], "a cold round must start from zero processes"
            event = new_event("dev.rouse.hello", "/bench", {"name": "cold"})
            began = time.perf_counter()
            attempt = await mode.broker.attempt(event, "greet")
            cold = time.perf_counter() - began
            assert attempt.status == 200 and attempt.cold, (attempt, out.getvalue()[-2000:])
            process = pool.live()[0]
            assert process.pid is not None
            assert (_parent(process.pid) != os.getpid()) == fork, "forked or exec'd as asked"
            figures["cpu"].append(cpu_seconds(process.pid))
            reports = REPORT.findall(out.getvalue())
            assert reports, f"the wrapper did not report:\n{out.getvalue()[-2000:]}"
            figures["cold"].append(cold)
            figures["spawn"].append(process.spawn_seconds)
            figures["interpreter"].append(float(reports[-1][0]))
            figures["imports"].append(float(reports[-1][1]))
            figures["imports_cpu"].append(float(reports[-1][2]))
            figures["to_ready"].append(process.ready_seconds)
            figures["handler"].append(max(0.0, cold - process.ready_seconds))
            for n in range(warm):
                event = new_event("dev.rouse.hello", "/bench", {"name": str(n)})
                began = time.perf_counter()
                attempt = await mode.broker.attempt(event, "greet")
                figures["warm"].append(time.perf_counter() - began)
                assert attempt.status == 200 and not attempt.cold, attempt
            await pool.stop(process, "bench: back to zero")
            for _ in range(1000):  # the exit watcher marks it stopped right after the exit
                if not pool.live():
                    break
                await asyncio.sleep(0.01)
    finally:
        await mode.broker.close()
        await pool.shutdown()
        if mode.template is not None:
            await mode.template.close()
        if mode.socket is not None:
            mode.socket.close()
    return figures, template_ready


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return int(stat.read().rsplit(b")", 1)[1].split()[1])


def report(title: str, figures: dict[str, list[float]], template_ready: float) -> dict[str, float]:
    """Print one path's figures; its medians."""
    med = {k: statistics.median(v) for k, v in figures.items()}
    ready = max(0.0, med["to_ready"] - med["spawn"] - med["interpreter"] - med["imports"])
    ms = {k: v * 1000 for k, v in med.items()}
    forked = template_ready > 0
    print(f"{title}: {len(figures['cold'])} cold rounds, {len(figures['warm'])} warm events")
    if forked:
        print(f"  template ready     {template_ready * 1000:8.1f} ms  once, while rouse dev starts")
    print(f"  cold first event   {ms['cold']:8.1f} ms  (median)")
    print(f"  warm event         {ms['warm']:8.1f} ms  (median)")
    print(f"  ratio cold / warm  {med['cold'] / med['warm']:8.1f} x")
    print("  breakdown of the cold event (medians):")
    if forked:
        print(f"    fork             {ms['spawn']:8.1f} ms  request to the template until the pid")
        print(
            f"    child set-up     {ms['interpreter']:8.1f} ms  fork to the first line (/proc, 10 ms ticks)"
        )
        print(
            f"    imports          {ms['imports']:8.1f} ms  what the fork still imports: skill module"
        )
    else:
        print(f"    spawn            {ms['spawn']:8.1f} ms  fork/exec")
        print(f"    interpreter      {ms['interpreter']:8.1f} ms  process start to first line")
        print(
            f"    imports          {ms['imports']:8.1f} ms  runtime server, uvicorn, skill module"
        )
    print(f"    ready            {ready * 1000:8.1f} ms  app, uvicorn start, bind, /readyz poll")
    print(f"    handler          {ms['handler']:8.1f} ms  first request: HTTP + skill")
    print(
        f"  skill process CPU  {ms['cpu']:8.1f} ms  at the end of the first event"
        f" (imports {ms['imports_cpu']:.1f} ms of it)"
    )
    return med


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7, help="cold starts (default 7)")
    parser.add_argument("--warm", type=int, default=10, help="warm events per round (default 10)")
    args = parser.parse_args()
    compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="rouse-bench-") as tmp:
        forked = asyncio.run(measure(args.rounds, args.warm, Path(tmp) / "fork", fork=True))
        execd = asyncio.run(measure(args.rounds, args.warm, Path(tmp) / "exec", fork=False))
    report("exec'd (ROUSE_LOCAL_FORK=0)", *execd)
    med = report("local cold start, hello example, forked from the template (default)", *forked)
    ms = {k: v * 1000 for k, v in med.items()}
    share = med["imports"] / med["cold"]
    print(f"cold first event: {ms['cold']:.0f} ms wall (aim <= 150 ms), {ms['cpu']:.0f} ms CPU")
    print(f"imports / cold first event: {share:.2f} wall (aim < 0.5)")


if __name__ == "__main__":
    main()
