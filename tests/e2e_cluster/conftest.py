"""Real-node fixtures: one one-node Kubernetes with real Knative per session, Rouse on it.

`real_node` (session): hack/node/node.py brings the cluster up (the same code as `make node-up`)
and takes it down at the end, also when tests fail. `broker` (module): the broker ingress through
a port-forward. Each module installs the chart with hack/kind/deploy.sh, the script a kind user
runs. A failing test gets the pods and the recent events of the cluster attached to its report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import httpx
import pytest
from rouse_testing.node import Node, NodeError, PortForward, node, start_node, stop_node
from rouse_testing.wait import wait_until

_NODE_KEY = pytest.StashKey[Node]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in tests/e2e_cluster runs on the real node."""
    for item in items:
        if "tests/e2e_cluster/" in item.nodeid or item.nodeid.startswith("e2e_cluster/"):
            item.add_marker(pytest.mark.e2e_cluster)


@pytest.fixture(scope="session")
def real_node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """The session's node; a missing part or a failed bring-up fails the tests, never skips."""
    missing = node.missing_tools()
    if missing:
        pytest.fail(
            "the real node is not built: missing " + ", ".join(missing) + "; run `make node-build`"
        )
    try:
        running = start_node()
    except (NodeError, node.cp.ControlPlaneError) as exc:
        pytest.fail(f"the real node did not start: {exc}")
    request.config.stash[_NODE_KEY] = running
    try:
        yield running
    finally:
        stop_node(running)


@pytest.fixture(scope="module")
def broker(real_node: Node) -> Iterator[PortForward]:
    """The Knative broker ingress, reached as a user does: a port-forward from this machine."""
    with PortForward(real_node, "knative-eventing", "broker-ingress") as forward:
        wait_until(
            lambda: httpx.get(forward.url, timeout=2).status_code > 0,
            timeout=30,
            what="the port-forward to broker-ingress",
        )
        yield forward


@pytest.fixture(scope="module")
def parking(real_node: Node, rouse: str) -> Iterator[PortForward]:
    """The parking service (Knative's dead-letter sink) as `rouse parked` reaches it; `rouse`
    is the module's fixture that installed the chart (its release namespace)."""
    with PortForward(real_node, rouse, "rouse-parking") as forward:
        wait_until(
            lambda: httpx.get(f"{forward.url}/healthz", timeout=2).status_code == 200,
            timeout=30,
            what="the port-forward to the parking service",
        )
        yield forward


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    """On a failing real-node test or set-up (a module fixture), attach what the cluster was
    doing."""
    report = yield
    running = item.config.stash.get(_NODE_KEY, None)
    if report.failed and running is not None and call.when in ("setup", "call"):
        pods = running.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        events = running.kubectl(
            "get", "events", "-A", "--sort-by=.lastTimestamp", check=False
        ).stdout
        report.sections.append(("pods", pods))
        report.sections.append(("events (last 40)", "\n".join(events.splitlines()[-40:])))
        for deployment in ("rouse-operator", "rouse-parking"):  # absent before the chart
            log = running.kubectl(
                "-n", "rouse-system", "logs", f"deployment/{deployment}", "--tail=400", check=False
            )
            # Without the line per Prometheus query: what the policy loop did, not how it asked.
            lines = [line for line in log.stdout.splitlines() if "HTTP Request: GET" not in line]
            text = "\n".join(lines[-60:]) or log.stderr
            report.sections.append((f"{deployment} log (last 60, no GET lines)", text))
    return report
