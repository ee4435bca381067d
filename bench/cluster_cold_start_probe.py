"""The in-cluster client of bench/cluster_cold_start.py: runs as a pod, times from inside.

Serves on :8080 (stdlib only, plus httpx from the operator image it runs in):
- ``POST /``: a CloudEvent delivered by a Trigger (the skill's reply through the broker);
  the time it arrived is kept by the greeting's name.
- ``GET /round?kind=rouse&name=N``: POST a hello event named N to the broker, wait for the
  reply; ``kind=plain``: scale the plain Deployment to 1 through the API, then POST the same
  event to its Service until it answers 2xx. Answers ``{"t0": ..., "t1": ...}`` (time.time(),
  the same clock as the host: one machine).
- ``GET /startup?ip=IP``: rouse_startup_seconds from the skill pod's own /metrics.

Environment: BROKER (the broker's URL), PLAIN (the plain Service's URL), DEPLOYMENT (its
name), NAMESPACE, EVENT_TYPE.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REPLIES: dict[str, float] = {}
ARRIVED = threading.Condition()


def event_headers(name: str) -> dict[str, str]:
    return {
        "ce-id": f"bench-{uuid.uuid4().hex[:8]}",
        "ce-specversion": "1.0",
        "ce-type": os.environ["EVENT_TYPE"],
        "ce-source": "/bench/cluster_cold_start",
        "content-type": "application/json",
        "x-bench-name": name,
    }


def rouse_round(name: str, timeout: float = 120.0) -> dict[str, float]:
    t0 = time.time()
    response = httpx.post(
        os.environ["BROKER"], headers=event_headers(name), json={"name": name}, timeout=30
    )
    response.raise_for_status()
    with ARRIVED:
        if not ARRIVED.wait_for(lambda: name in REPLIES, timeout=timeout):
            raise TimeoutError(f"no reply for {name} within {timeout}s")
        return {"t0": t0, "t1": REPLIES.pop(name)}


def plain_round(name: str, timeout: float = 120.0) -> dict[str, float]:
    t0 = time.time()
    scale_up()
    return {"t0": t0, "t1": post_until_answered(name, t0 + timeout)}


def plain_warm(name: str) -> dict[str, float]:
    t0 = time.time()
    return {"t0": t0, "t1": post_until_answered(name, t0 + 10)}


def scale_up() -> None:
    """The plain Deployment to 1 replica, as `kubectl scale` does (the scale subresource)."""
    token = (ACCOUNT / "token").read_text()
    api = "https://{}:{}".format(
        os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    )
    scale = (
        f"{api}/apis/apps/v1/namespaces/{os.environ['NAMESPACE']}/deployments/"
        f"{os.environ['DEPLOYMENT']}/scale"
    )
    with httpx.Client(verify=str(ACCOUNT / "ca.crt"), timeout=10) as kube:
        kube.patch(
            scale,
            headers={
                "authorization": f"Bearer {token}",
                "content-type": "application/merge-patch+json",
            },
            content=json.dumps({"spec": {"replicas": 1}}),
        ).raise_for_status()


def post_until_answered(name: str, deadline: float) -> float:
    """POST the event to the plain Service every 10 ms until it answers 2xx; when it did."""
    with httpx.Client(timeout=5) as client:
        while time.time() < deadline:
            try:
                answer = client.post(
                    os.environ["PLAIN"], headers=event_headers(name), json={"name": name}
                )
                if answer.is_success:
                    return time.time()
            except httpx.TransportError:
                pass  # no ready endpoint yet: connection refused
            time.sleep(0.01)
    raise TimeoutError(f"the plain Deployment did not answer {name} in time")


def startup_seconds(ip: str) -> float:
    text = httpx.get(f"http://{ip}:8080/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("rouse_startup_seconds"):
            return float(line.rsplit(" ", 1)[1])
    raise LookupError("no rouse_startup_seconds on the pod's /metrics")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        arrived = time.time()
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        greeting = str(json.loads(body or b"{}").get("greeting", ""))
        name = greeting.removeprefix("Hello, ").removesuffix("!")
        with ARRIVED:
            REPLIES[name] = arrived
            ARRIVED.notify_all()
        self.send_response(202)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        try:
            if url.path == "/round":
                runs = {
                    "rouse": rouse_round,
                    "rouse-warm": rouse_round,
                    "plain": plain_round,
                    "plain-warm": plain_warm,
                }
                result: object = runs[query["kind"]](query["name"])
            elif url.path == "/startup":
                result = {"startup": startup_seconds(query["ip"])}
            else:
                result = {"ok": True}
            status, payload = 200, json.dumps(result).encode()
        except Exception as exc:  # the bench prints it
            status, payload = 500, json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        return


if __name__ == "__main__":
    ThreadingHTTPServer((os.environ.get("LISTEN", "0.0.0.0"), 8080), Handler).serve_forever()
