"""Local mode: first-event latency from zero processes vs a warm event, with the breakdown.

Runs the hello example's skill through local mode's own delivery path (the
broker's attempt: lease a process, starting one if none is up, POST the
CloudEvent, read the reply), in this process, for ``--rounds`` cold starts
(the process is stopped after each, back to zero) and ``--warm`` warm events.

Breakdown of a cold start (medians):
  spawn        fork/exec of ``python -m rouse_runtime`` until the OS returns
  interpreter  ``python -c pass``, measured separately in the same run
  imports      ``import rouse_runtime.server, hello.skills`` minus ``python -c pass``,
               measured separately in the same run
  ready        the rest until local mode sees /readyz answer 200 (app build, uvicorn
               start, socket bind, the 10 ms poll): spawn-to-ready minus the three above
  handler      the first request: HTTP round trip + skill (cold total - spawn-to-ready)
Prints the cold/warm ratio and spawn-to-ready / ``python -c pass``. Usage: python bench/local_cold_start.py [--rounds 5] [--warm 50]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rouse_runtime.local.broker import new_event
from rouse_runtime.local.dev import DevOptions, LocalMode
from rouse_runtime.local.view import View

REPO = Path(__file__).resolve().parents[1]
AGENT = REPO / "examples" / "hello" / "agent.yaml"
IMPORTS = "import rouse_runtime.server, hello.skills"


def run_seconds(code: str, env: dict[str, str]) -> float:
    began = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return time.perf_counter() - began


async def measure(rounds: int, warm_events: int, state_dir: Path) -> dict[str, list[float]]:
    quiet = View(stream=io.StringIO(), tty=False)
    mode = LocalMode.create(DevOptions(agent_file=AGENT, port=0, state_dir=state_dir), quiet)
    mode.bind()
    pool = mode.pools["greet"]
    env = {**os.environ, "PYTHONPATH": str(AGENT.parent)}
    figures: dict[str, list[float]] = {
        k: [] for k in ("cold", "spawn", "to_ready", "handler", "warm", "bare", "imports")
    }
    try:
        for _ in range(rounds):
            assert pool.live() == [], "a cold round must start from zero processes"
            began = time.perf_counter()
            attempt = await mode.broker.attempt(
                new_event("dev.rouse.hello", "/bench", {"name": "cold"}), "greet"
            )
            cold = time.perf_counter() - began
            assert attempt.status == 200 and attempt.cold, attempt
            process = pool.live()[0]
            figures["cold"].append(cold)
            figures["spawn"].append(process.spawn_seconds)
            figures["to_ready"].append(process.ready_seconds)
            figures["handler"].append(max(0.0, cold - process.ready_seconds))
            for n in range(warm_events):
                began = time.perf_counter()
                attempt = await mode.broker.attempt(
                    new_event("dev.rouse.hello", "/bench", {"name": str(n)}), "greet"
                )
                figures["warm"].append(time.perf_counter() - began)
                assert attempt.status == 200 and not attempt.cold, attempt
            await pool.stop(process, "bench: back to zero")
            # Interleaved with the cold rounds, so both see the same machine load.
            figures["bare"].append(await asyncio.to_thread(run_seconds, "pass", env))
            figures["imports"].append(await asyncio.to_thread(run_seconds, IMPORTS, env))
            for _ in range(1000):  # the exit watcher marks it stopped right after the exit
                if not pool.live():
                    break
                await asyncio.sleep(0.01)
    finally:
        await mode.broker.close()
        await pool.shutdown()
        if mode.socket is not None:
            mode.socket.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="cold starts (default 5)")
    parser.add_argument(
        "--warm", type=int, default=50, help="warm events after each cold start (default 50)"
    )
    args = parser.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="rouse-bench-") as tmp:
        figures = asyncio.run(
            measure(args.rounds, args.warm // max(args.rounds, 1) or 1, Path(tmp))
        )
    median = {k: statistics.median(v) for k, v in figures.items()}
    bare = median["bare"]
    imports = max(0.0, median["imports"] - bare)
    ms = {k: v * 1000 for k, v in median.items()}
    print(
        f"local cold start, hello example, {args.rounds} cold rounds, {len(figures['warm'])} warm events"
    )
    print(f"  cold first event   {ms['cold']:8.1f} ms  (median)")
    print(f"  warm event         {ms['warm']:8.1f} ms  (median)")
    print(f"  ratio cold / warm  {median['cold'] / median['warm']:8.1f} x")
    ready = max(0.0, median["to_ready"] - median["spawn"] - bare - imports)
    print("  breakdown of the cold event:")
    print(f"    spawn            {ms['spawn']:8.1f} ms  (fork/exec)")
    print(f"    interpreter      {bare * 1000:8.1f} ms  (python -c pass)")
    print(f"    imports          {imports * 1000:8.1f} ms  (rouse_runtime.server + hello.skills)")
    print(f"    ready            {ready * 1000:8.1f} ms  (app, uvicorn, bind, /readyz poll)")
    print(f"    handler          {ms['handler']:8.1f} ms  (first request: HTTP + skill)")
    print(
        f"  spawn-to-ready     {ms['to_ready']:8.1f} ms = {median['to_ready'] / bare:.1f} x python -c pass"
    )


if __name__ == "__main__":
    main()
