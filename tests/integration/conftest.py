"""Integration fixtures: one real control plane per session, a fresh namespace per test.

`cluster` (session): etcd + kube-apiserver + kube-controller-manager built by `make envtest`,
with Knative's CRDs and a `default` Broker; started in a temp dir (independent of
`make cluster-up`) and stopped at the end. `namespace` (function): a fresh namespace with a
`default` Broker, deleted afterwards. A failing test prints the tail of the API server log.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import pytest
from rouse_testing.cluster import Cluster, ControlPlaneError, controlplane, start_cluster

_CLUSTER_KEY = pytest.StashKey[Cluster]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test in tests/integration is an integration test."""
    for item in items:
        if "tests/integration/" in item.nodeid or item.nodeid.startswith("integration/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Cluster]:
    """The session's control plane; a missing binary or a start failure fails the tests."""
    missing = controlplane.missing_tools(controlplane.BIN_DIR, controlplane.CRD_DIR)
    if missing:
        pytest.fail("envtest is not built: missing " + ", ".join(missing) + "; run `make envtest`")
    try:
        running = start_cluster(tmp_path_factory.mktemp("envtest"))
    except ControlPlaneError as exc:
        pytest.fail(f"control plane did not start: {exc}")
    request.config.stash[_CLUSTER_KEY] = running
    try:
        yield running
    finally:
        running.plane.stop()


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace (with a `default` Broker) for one test, deleted afterwards."""
    name = cluster.create_namespace()
    try:
        yield name
    finally:
        cluster.delete_namespace(name)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, Any]:
    """On a failing integration test, attach the tail of the API server log to the report."""
    report = yield
    running = item.config.stash.get(_CLUSTER_KEY, None)
    if report.failed and running is not None:
        report.sections.append(
            ("kube-apiserver log (tail)", controlplane.log_tail(running.api_log, 60))
        )
    return report
