"""The policy loop, measured: decision time per Agent, and what the warm pool buys.

1. Decision time at N Agents (default 100, two skills each): a real Prometheus
   (Debian package) scrapes a real parking service exporting a ledger with N
   Agents; for every Agent the operator's own code runs: the PromQL queries
   (two skill windows + today's usage, `rouse_operator.policy_timers.read_figures`)
   and the decisions (`rouse_operator.policy_status.evaluate`). Printed as time per
   Agent and as the whole round's share of ROUSE_EVAL_INTERVAL (60 s). The status
   patch is not included here (it needs a control plane; see bench/operator_scale.py
   for the operator's write rate).
2. Cold-start share with the warm pool vs without, at the same generated traffic:
   a discrete-time simulation (1 s steps, one day) of a skill that scales to zero
   after 60 s idle, containerConcurrency 10, 1 s per invocation; the real warm-pool
   policy (`rouse_runtime.policies.warm_pool.decide`, window 15m, evaluated every
   60 s from exact counts) sets the min-scale. Also prints the idle process-seconds
   (a process alive with nothing in flight) each variant cost.
3. Revisions the day's min-scale changes create: Knative makes one per change of a
   Service's template. For each decision the operator's own builders make the Service
   (`rouse_operator.resources.children.desired` with the decision in the Agent's status);
   "before" is that template with the decision as its min-scale, as the builder wrote it
   before issue 13, "now" the template as built (the floor goes onto the Revision).

Usage: python bench/policy_loop.py [--agents 100] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from rouse_runtime.ledger import Entry, open_ledger  # noqa: E402
from rouse_runtime.policies.warm_pool import (  # noqa: E402
    SkillWindow,
    Tuning,
    WarmPoolSpec,
    WarmPoolState,
    decide,
)
from rouse_testing.parking import start_parking  # noqa: E402
from rouse_testing.prometheus import prometheus_server  # noqa: E402

EVAL_INTERVAL = 60.0


def agent(namespace: str, name: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {
            "skills": [
                {"name": "triage", "scaling": {"min": 0, "max": 5}},
                {"name": "draft", "scaling": {"min": 0, "max": 5}},
            ],
            "warmPool": {"max": 2, "window": "15m"},
            "budget": {"daily": {"tokens": 2_000_000}, "onExhausted": "park"},
        },
    }


async def seed_ledger(state_url: str, agents: int) -> None:
    ledger = open_ledger(state_url)
    for index in range(agents):
        for skill in ("triage", "draft"):
            await ledger.add(
                "bench",
                f"agent-{index}",
                skill,
                Entry(invocations=40, cold_starts=index % 7, input_tokens=900, output_tokens=100),
            )
    await ledger.close()


async def decision_round(agents: int, prometheus_url: str) -> tuple[float, float]:
    """(sequential seconds per agent, concurrent seconds for the whole round)."""
    os.environ["ROUSE_PROMETHEUS_URL"] = prometheus_url
    from rouse_operator import policy_timers
    from rouse_operator.policy_status import evaluate

    objs = [agent("bench", f"agent-{i}") for i in range(agents)]

    async def one(obj: dict[str, object]) -> None:
        now = datetime.now(UTC)
        windows, usage, gap = await policy_timers.read_figures(obj, now)  # type: ignore[arg-type]
        assert gap is None, gap
        evaluate(obj, windows=windows, usage=usage, gap=gap, now=now)  # type: ignore[arg-type]

    await one(objs[0])  # warm the connection pool
    started = time.perf_counter()
    for obj in objs:
        await one(obj)
    sequential = (time.perf_counter() - started) / agents
    started = time.perf_counter()
    await asyncio.gather(*(one(obj) for obj in objs))
    concurrent = time.perf_counter() - started
    await policy_timers.prometheus().aclose()
    return sequential, concurrent


def bench_decisions(agents: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rouse-bench-") as tmp:
        state_url = f"sqlite:///{tmp}/state.db"
        asyncio.run(seed_ledger(state_url, agents))
        parking = start_parking(Path(tmp), state_url)
        try:
            with prometheus_server(scrape_interval=1.0) as prometheus:
                target = f"127.0.0.1:{parking.port}"
                prometheus.set_targets([target])
                prometheus.wait_scraped(target)
                sequential, concurrent = asyncio.run(decision_round(agents, prometheus.url))
        finally:
            parking.stop()
    print(f"decision time (query + compute), {agents} agents x 2 skills, real Prometheus:")
    print(f"  per agent, one at a time:   {sequential * 1000:8.1f} ms")
    print(f"  whole round, concurrent:    {concurrent * 1000:8.1f} ms")
    print(f"  ratio per agent / interval: {sequential / EVAL_INTERVAL:.5f}")
    print(
        f"  ratio round / interval:     {concurrent / EVAL_INTERVAL:.5f}  (ROUSE_EVAL_INTERVAL=60s)"
    )


@dataclass
class Result:
    invocations: int = 0
    cold: int = 0
    idle_process_seconds: int = 0
    changes: int = 0
    floors: list[int] = field(default_factory=list)  # min-scale after each change


def traffic(seed: int) -> list[int]:
    """Arrivals per second over a day: office-hours load, bursts, a quiet night."""
    rng = random.Random(seed)
    day = []
    for second in range(24 * 3600):
        hour = second // 3600
        rate = 0.08 if 8 <= hour < 18 else 0.004
        if second % 1800 < 15 and 8 <= hour < 20:
            rate += 1.5  # a burst every half hour
        day.append(sum(1 for _ in range(3) if rng.random() < rate / 3))
    return day


def simulate(arrivals: list[int], use_policy: bool) -> Result:
    concurrency, retention, service = 10, 60, 1
    spec = WarmPoolSpec(scaling_min=0, pool_max=2, cold_start_target=0.05, window_seconds=900)
    tuning = Tuning()
    state = WarmPoolState(0)
    start = datetime(2026, 1, 5, tzinfo=UTC)
    processes: list[dict[str, int]] = []  # {"busy_until": t, "idle_since": t}
    history: deque[tuple[int, int, int]] = deque()  # (t, invocations, cold) per second
    result = Result()
    for t, count in enumerate(arrivals):
        invocations = cold = 0
        for _ in range(count):
            free = [p for p in processes if p["inflight_until"] <= t or p["load"] < concurrency]
            if free:
                chosen = free[0]
            else:
                chosen = {"inflight_until": 0, "load": 0, "idle_since": t}
                processes.append(chosen)
                cold += 1
            chosen["load"] = chosen["load"] + 1 if chosen["inflight_until"] > t else 1
            chosen["inflight_until"] = t + service
            chosen["idle_since"] = t + service
            invocations += 1
        result.invocations += invocations
        result.cold += cold
        history.append((t, invocations, cold))
        while history and history[0][0] <= t - int(spec.window_seconds):
            history.popleft()
        if use_policy and t % 60 == 0:
            window = SkillWindow(
                invocations=sum(h[1] for h in history), cold_starts=sum(h[2] for h in history)
            )
            made = decide(spec, window, state, start + timedelta(seconds=t), tuning=tuning)
            result.changes += int(made.changed)
            if made.changed:
                result.floors.append(made.min_scale)
            state = WarmPoolState(made.min_scale, made.last_change)
        keep = state.min_scale if use_policy else 0
        alive = []
        for p in sorted(processes, key=lambda p: -p["idle_since"]):
            idle = p["inflight_until"] <= t
            if idle and t - p["idle_since"] >= retention and len(alive) >= keep:
                continue  # scaled down
            alive.append(p)
        while len(alive) < keep:  # the warm pool starts processes ahead of traffic
            alive.append({"inflight_until": 0, "load": 0, "idle_since": t})
        processes = alive
        result.idle_process_seconds += sum(1 for p in processes if p["inflight_until"] <= t)
    return result


def bench_warm_pool(seed: int) -> None:
    arrivals = traffic(seed)
    without = simulate(arrivals, use_policy=False)
    with_pool = simulate(arrivals, use_policy=True)
    share_without = without.cold / without.invocations
    share_with = with_pool.cold / with_pool.invocations
    print(f"warm pool (simulated day, {without.invocations} invocations, same traffic):")
    print(f"  cold-start share without pool: {share_without:7.2%}  ({without.cold} cold)")
    print(
        f"  cold-start share with pool:    {share_with:7.2%}  ({with_pool.cold} cold, "
        f"{with_pool.changes} min-scale changes)"
    )
    print(f"  ratio with / without:          {share_with / share_without:.3f}")
    print(f"  idle process-seconds without:  {without.idle_process_seconds}")
    print(f"  idle process-seconds with:     {with_pool.idle_process_seconds}")
    print(
        "  ratio idle with / without:     "
        f"{with_pool.idle_process_seconds / max(1, without.idle_process_seconds):.3f}"
    )


def template(floor: int, before: bool) -> dict[str, Any]:
    """The skill's Service template the operator applies with the warm-pool decision `floor`."""
    from rouse_operator.resources import children
    from rouse_operator.resources.service import MIN_SCALE
    from rouse_operator.settings import Settings
    from rouse_runtime.agentspec import validate_agent

    obj = validate_agent(
        {
            "apiVersion": "rouse.dev/v1alpha1",
            "kind": "Agent",
            "metadata": {"name": "bench"},
            "spec": {
                "image": "registry.example/bench:1",
                "skills": [
                    {
                        "name": "work",
                        "handler": "bench:work",
                        "events": [{"type": "com.example.work"}],
                        "scaling": {"min": 0, "max": 5},
                    }
                ],
                "warmPool": {"max": 2, "window": "15m"},
            },
        }
    )
    obj["metadata"].update(namespace="bench", uid="bench-uid")
    obj["status"] = {"warmPool": {"skills": [{"name": "work", "minScale": floor}]}}
    ksvc = children.desired(obj, Settings())[0]
    built: dict[str, Any] = ksvc["spec"]["template"]
    if before:
        built["metadata"]["annotations"][MIN_SCALE] = str(floor)
    return built


def revisions_created(floors: list[int], before: bool) -> int:
    """New Revisions for the day's changes: how often the Service's template changed."""
    templates = [template(0, before)] + [template(f, before) for f in floors]
    return sum(1 for old, new in pairwise(templates) if old != new)


def bench_revisions(seed: int) -> None:
    floors = simulate(traffic(seed), use_policy=True).floors
    before, now = revisions_created(floors, True), revisions_created(floors, False)
    print(f"revisions per skill for the day's {len(floors)} min-scale changes:")
    print(
        f"  before (min-scale in the template): {before}  ({before / max(1, len(floors)):.2f} per change)"
    )
    print(
        f"  now (min-scale on the Revision):    {now}  ({now / max(1, len(floors)):.2f} per change)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    bench_decisions(args.agents)
    bench_warm_pool(args.seed)
    bench_revisions(args.seed)


if __name__ == "__main__":
    main()
