"""A front door through the real node's ingress vs a bare Knative Service streaming the same chunks.

On the one-node cluster with real Knative (hack/node, `make node-build` first; the node is
brought up and taken down here), the chart and examples/support-triage are installed as a
user does (hack/kind/deploy.sh, example.sh). Two Knative Services, both public Routes, both
reached from this machine through the ingress's public listener (kingress, port-forwarded:
the same extra hop for both), the activator when at zero, and queue-proxy:

- front door: the example's `ask` (API key, the runtime, its budget gate, the templated answer
  streamed in chunks: the question below has the invoice answer);
- bare: the same image running a bare Starlette app with sse-starlette
  (`EventSourceResponse`) on uvicorn, streaming the very same chunks (the example's own
  `rules.answer_chunks`) as `chunk` events, then `done`.

Each round: both scaled to zero, one cold request each (from zero pods), then `--warm`
requests each. Timed from the request to the first `chunk` event (the handler's first output;
the front door's opening `run` event comes before it) and to the end of the stream (the
full answer). The example's warm pool is taken off the Agent for these rounds: after a few
cold starts it would keep `ask` warm (that is its job), and "cold" would no longer be from zero.

Then the warm pool's effect: the example's `warmPool` is put back with a schedule covering now
(`min: 1`); once the operator has put min-scale 1 on `ask`'s Revision, each of `--rounds`
samples waits the idle time that scales the bare Service to zero, then asks both: `ask` kept
warm by the pool vs the bare Service from zero.

Printed: the medians and the ratios front door / bare. Knative's autoscaler is set to scale
to zero within seconds (stable window and grace period 6 s) while it runs; `ask` keeps the
example's 30 s scale-to-zero retention, so a round takes about a minute. Wall times on a
shared 2-core machine: read the ratios.

Usage: python bench/front_door_node.py [--rounds 3] [--warm 10]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from rouse_testing.node import (  # noqa: E402
    Node,
    PortForward,
    quick_scale_to_zero,
    route_host,
    script,
    start_node,
    stop_node,
)
from rouse_testing.wait import wait_until  # noqa: E402

ROUSE_NAMESPACE = "rouse-system"
AGENT = "support-triage"
ASK = f"{AGENT}-ask"
BARE = "bare"
QUESTION = {"question": "Where can I download my invoice?", "customer": "Ada"}
BARE_APP = """
import json, os, uvicorn
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.routing import Route
from support_triage.rules import answer_chunks

async def chunks(question):
    for text in answer_chunks(question):
        yield {"event": "chunk", "data": json.dumps({"text": text})}
    yield {"event": "done", "data": "{}"}

async def ask(request):
    body = await request.json()
    return EventSourceResponse(chunks(str(body["question"])))

uvicorn.run(Starlette(routes=[Route("/", ask, methods=["POST"])]), host="0.0.0.0",
            port=int(os.environ["PORT"]), log_config=None, access_log=False)
"""


def bare_service(ask: dict[str, Any]) -> dict[str, Any]:
    """A public Knative Service of the bare app, in `ask`'s image and security context."""
    container = ask["spec"]["template"]["spec"]["containers"][0]
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": BARE},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "image": container["image"],
                            "command": ["python3", "-c", BARE_APP],
                            "securityContext": container["securityContext"],
                        }
                    ]
                }
            }
        },
    }


def pods(running: Node, namespace: str, service: str) -> int:
    """Pods of the Service, terminating ones included: "from zero" means none left at all."""
    return len(running.items("pods", namespace, f"serving.knative.dev/service={service}"))


def timed(url: str, headers: dict[str, str]) -> tuple[float, float]:
    """Seconds to the first `chunk` event and to the end of the stream."""
    began = time.perf_counter()
    first = None
    chunks = 0
    with (
        httpx.Client(timeout=180) as client,
        client.stream("POST", url, json=QUESTION, headers=headers) as response,
    ):
        if response.status_code != 200:
            raise AssertionError(f"{headers['host']}: {response.status_code} {response.read()!r}")
        for line in response.iter_lines():
            if line.startswith("event: chunk"):
                chunks += 1
                first = first or time.perf_counter() - began
    if first is None or chunks < 2:
        raise AssertionError(f"{headers['host']}: {chunks} chunks streamed")
    return first, time.perf_counter() - began


def set_warm_pool(running: Node, namespace: str, pool: dict[str, Any] | None) -> None:
    """Put `pool` as the Agent's spec.warmPool (None: take it off)."""
    patch = (
        [{"op": "remove", "path": "/spec/warmPool"}]
        if pool is None
        else [{"op": "add", "path": "/spec/warmPool", "value": pool}]
    )
    running.kubectl(
        "-n", namespace, "patch", "agent", AGENT, "--type=json", "-p", json.dumps(patch)
    )  # fmt: skip


def min_scale(running: Node, namespace: str, service: str) -> str | None:
    """The min-scale the operator put on the Service's ready Revision."""
    ksvc = running.get("ksvc", service, namespace)
    name = ((ksvc or {}).get("status") or {}).get("latestReadyRevisionName")
    revision = running.get("revision", name, namespace) if name else None
    annotations = ((revision or {}).get("metadata") or {}).get("annotations") or {}
    value = annotations.get("autoscaling.knative.dev/min-scale")
    return None if value is None else str(value)


def setup(running: Node) -> tuple[str, str]:
    """Chart, the example (its warm pool off), the bare Service; the front door's key."""
    script(running, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    namespace = f"door-{uuid.uuid4().hex[:6]}"
    script(running, "example.sh", "--namespace", namespace, "--agent", AGENT, "--assert")
    ask = running.get("ksvc", ASK, namespace)
    assert ask is not None
    set_warm_pool(running, namespace, None)
    running.apply([bare_service(ask)], namespace)
    running.kubectl(
        "-n", namespace, "wait", "--for=condition=Ready", f"ksvc/{BARE}", "--timeout=180s"
    )
    secret = running.get("secret", f"{AGENT}-keys", namespace)
    assert secret is not None, "example.sh made no keys Secret for the front door"
    key = base64.b64decode(secret["data"]["keys"]).decode().split()[0]
    return namespace, key


def report(figures: dict[str, dict[str, list[float]]]) -> None:
    door, bare = figures["front door"], figures["bare"]
    print(
        f"\nmedians ({len(door['cold first'])} cold rounds, {len(door['warm first'])} warm requests):"
    )
    for column in ("cold first", "cold full", "warm first", "warm full"):
        d, b = statistics.median(door[column]), statistics.median(bare[column])
        print(
            f"  {column:10}  front door {d * 1000:8.1f} ms   bare {b * 1000:8.1f} ms   ratio {d / b:.2f}"
        )
    if door["pool first"]:
        print(f"the warm pool's effect, after idle ({len(door['pool first'])} samples):")
        for column in ("pool first", "pool full"):
            d, b = statistics.median(door[column]), statistics.median(bare[column])
            print(
                f"  {column:10}  front door kept warm {d * 1000:8.1f} ms   bare from zero"
                f" {b * 1000:8.1f} ms   ratio {d / b:.2f}"
            )
            cold = statistics.median(door[column.replace("pool", "cold")])
            print(f"  {'':10}  front door from zero / kept warm: {cold / d:.1f}")


def measure(
    running: Node, namespace: str, key: str, ingress: PortForward, rounds: int, warm: int
) -> dict[str, dict[str, list[float]]]:
    """Each round: each Service from zero once, then `warm` times; seconds per column."""
    targets = {"front door": (ASK, {"authorization": f"Bearer {key}"}), "bare": (BARE, {})}
    columns = ("cold", "warm", "pool")
    figures: dict[str, dict[str, list[float]]] = {
        name: {f"{c} {t}": [] for c in columns for t in ("first", "full")} for name in targets
    }
    for index in range(rounds):
        for name, (service, extra) in targets.items():
            wait_until(
                lambda service=service: pods(running, namespace, service) == 0,
                timeout=240,
                interval=1,
                what=f"{service} scaled to zero",
            )
            headers = {"host": route_host(running, service, namespace), **extra}
            for kind in ["cold"] + ["warm"] * warm:
                first, full = timed(ingress.url, headers)
                figures[name][f"{kind} first"].append(first)
                figures[name][f"{kind} full"].append(full)
            cold = figures[name]["cold first"][-1]
            print(f"round {index} {name}: cold first chunk {cold * 1000:.0f} ms", flush=True)
    measure_pool(running, namespace, targets, ingress, rounds, figures)
    return figures


def measure_pool(
    running: Node,
    namespace: str,
    targets: dict[str, tuple[str, dict[str, str]]],
    ingress: PortForward,
    rounds: int,
    figures: dict[str, dict[str, list[float]]],
) -> None:
    """The example's warm pool back, with a schedule keeping one `ask` warm now; each sample
    after the idle time that takes the bare Service to zero."""
    agent = yaml.safe_load((REPO / "examples" / AGENT / "agent.yaml").read_text())
    pool = {
        **agent["spec"]["warmPool"],
        "schedules": [{"cron": "* * * * *", "duration": "1h", "min": 1}],
    }
    set_warm_pool(running, namespace, pool)
    wait_until(
        lambda: min_scale(running, namespace, ASK) == "1",
        timeout=180,
        interval=2,
        what="the warm pool's min-scale 1 on ask's Revision",
    )
    for index in range(rounds):
        wait_until(
            lambda: pods(running, namespace, BARE) == 0,
            timeout=240,
            interval=1,
            what=f"{BARE} scaled to zero",
        )
        assert pods(running, namespace, ASK) >= 1, "the warm pool kept no ask pod"
        for name, (service, extra) in targets.items():
            headers = {"host": route_host(running, service, namespace), **extra}
            first, full = timed(ingress.url, headers)
            figures[name]["pool first"].append(first)
            figures[name]["pool full"].append(full)
        door = figures["front door"]["pool first"][-1]
        print(f"pool {index}: front door kept warm, first chunk {door * 1000:.0f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warm", type=int, default=10)
    args = parser.parse_args()
    running = start_node()
    try:
        namespace, key = setup(running)
        with (
            quick_scale_to_zero(running),
            PortForward(running, "knative-serving", "kingress") as ingress,
        ):
            report(measure(running, namespace, key, ingress, args.rounds, args.warm))
    finally:
        stop_node(running)


if __name__ == "__main__":
    main()
