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
full answer). Printed: the medians and the ratios front door / bare. Knative's autoscaler is
set to scale to zero within seconds (stable window and grace period 6 s) while it runs;
`ask` keeps the example's 30 s scale-to-zero retention, so a round takes about a minute.
Wall times on a shared 2-core machine: read the ratios.

Usage: python bench/front_door_node.py [--rounds 3] [--warm 10]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

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


def setup(running: Node) -> tuple[str, str]:
    """Chart, the example, the bare Service; the front door's key."""
    script(running, "deploy.sh", "--namespace", ROUSE_NAMESPACE)
    namespace = f"door-{uuid.uuid4().hex[:6]}"
    script(running, "example.sh", "--namespace", namespace, "--agent", AGENT, "--assert")
    ask = running.get("ksvc", ASK, namespace)
    assert ask is not None
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


def measure(
    running: Node, namespace: str, key: str, ingress: PortForward, rounds: int, warm: int
) -> dict[str, dict[str, list[float]]]:
    """Each round: each Service from zero once, then `warm` times; seconds per column."""
    targets = {"front door": (ASK, {"authorization": f"Bearer {key}"}), "bare": (BARE, {})}
    figures: dict[str, dict[str, list[float]]] = {
        name: {"cold first": [], "cold full": [], "warm first": [], "warm full": []}
        for name in targets
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
    return figures


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
