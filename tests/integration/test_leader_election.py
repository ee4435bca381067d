"""Two real operators with --leader-elect against the real control plane: exactly one leads.

The Lease decides: only its holder reconciles, the other waits. A leader killed with
SIGKILL is replaced once its Lease expires; a leader stopped with SIGTERM releases the
Lease, so a follower takes over at once (long before the Lease would expire).
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from rouse_testing.agents import base_agent
from rouse_testing.operator import OperatorProcess, get_json, install_agent_crd, start_operator
from rouse_testing.wait import wait_until

LEASE = "rouse-operator"


@pytest.fixture
def ns(cluster: Any, namespace: str) -> str:
    install_agent_crd(cluster)
    return namespace


@pytest.fixture
def operators(request: pytest.FixtureRequest) -> Iterator[list[OperatorProcess]]:
    """Every operator a test starts; stopped (and their logs shown on failure) afterwards."""
    started: list[OperatorProcess] = []
    failed_before = request.session.testsfailed
    yield started
    for running in started:
        running.stop()
    if request.session.testsfailed > failed_before:
        for running in started:
            print(f"--- operator pid {running.proc.pid} log ---\n{running.log_tail(60)}")


def start(
    cluster: Any, ns: str, tmp_path: Path, tag: str, lease_seconds: int, started: list[Any]
) -> OperatorProcess:
    env = {
        "ROUSE_LEADER_NAMESPACE": ns,
        "ROUSE_LEADER_LEASE_SECONDS": str(lease_seconds),
        "ROUSE_LEADER_RENEW_DEADLINE_SECONDS": str(lease_seconds * 2 / 3),
        "ROUSE_LEADER_RETRY_SECONDS": "0.5",
        "POD_NAME": f"op-{tag}",
    }
    running = start_operator(
        cluster, [ns], tmp_path / f"{tag}.log", extra_env=env, extra_args=["--leader-elect"]
    )
    started.append(running)
    return running


def lease_spec(cluster: Any, ns: str) -> dict[str, Any]:
    lease = get_json(cluster, "leases.coordination.k8s.io", "-n", ns, LEASE)
    return (lease or {}).get("spec") or {}


def holder_pid(cluster: Any, ns: str) -> int | None:
    holder = lease_spec(cluster, ns).get("holderIdentity") or ""
    return int(holder.rsplit("_", 1)[1]) if "_" in holder else None


def leader_of(cluster: Any, ns: str, candidates: list[OperatorProcess]) -> OperatorProcess:
    def find() -> OperatorProcess | None:
        pid = holder_pid(cluster, ns)
        return next((op for op in candidates if op.proc.pid == pid and op.alive()), None)

    return wait_until(find, timeout=60, interval=0.2, what="one operator to hold the Lease")


def apply_agent(cluster: Any, ns: str, name: str) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(base_agent(name)))


def wait_reconciled(cluster: Any, ns: str, name: str, timeout: float = 60) -> None:
    """The Agent has its Knative Services and a status with conditions: someone reconciled it."""

    def done() -> bool:
        services = get_json(
            cluster, "services.serving.knative.dev", "-n", ns, "-l", f"rouse.dev/agent={name}"
        )
        agent = get_json(cluster, "agents.rouse.dev", "-n", ns, name) or {}
        conditions = (agent.get("status") or {}).get("conditions") or []
        return len(services["items"]) == 2 and bool(conditions)

    wait_until(done, timeout=timeout, interval=0.2, what=f"Agent {ns}/{name} to be reconciled")


def test_one_leader_reconciles_and_a_killed_leader_is_replaced_after_expiry(
    cluster: Any, ns: str, tmp_path: Path, operators: list[OperatorProcess]
) -> None:
    first = start(cluster, ns, tmp_path, "a", 3, operators)
    second = start(cluster, ns, tmp_path, "b", 3, operators)
    leader = leader_of(cluster, ns, [first, second])
    follower = second if leader is first else first

    apply_agent(cluster, ns, "one")
    wait_reconciled(cluster, ns, "one")
    wait_until(
        lambda: "waiting as a follower" in follower.log.read_text(errors="replace"),
        timeout=30,
        what="the follower's log to say it waits",
    )
    assert follower.get("/healthz") == (200, "standby: waiting for the leader Lease\n")
    assert leader.get("/healthz") == (200, "ok\n")
    assert "kopf." not in follower.log.read_text(errors="replace"), "the follower ran kopf"
    transitions = lease_spec(cluster, ns).get("leaseTransitions", 0)

    leader.proc.kill()  # SIGKILL: no release, the Lease must expire (3 s) first
    leader.proc.wait(timeout=10)
    killed_at = time.monotonic()
    assert leader_of(cluster, ns, [follower]) is follower
    assert time.monotonic() - killed_at >= 1.0, "took over long before the Lease expired"
    spec = lease_spec(cluster, ns)
    assert spec["leaseTransitions"] == transitions + 1
    assert spec["leaseDurationSeconds"] == 3

    apply_agent(cluster, ns, "two")  # a new change, handled by the new leader
    wait_reconciled(cluster, ns, "two")
    assert "acquired Lease" in follower.log.read_text(errors="replace")


def test_sigterm_releases_the_lease_for_an_immediate_takeover(
    cluster: Any, ns: str, tmp_path: Path, operators: list[OperatorProcess]
) -> None:
    # A 60 s Lease: a takeover within the wait below can only come from the release.
    first = start(cluster, ns, tmp_path, "a", 60, operators)
    leader_of(cluster, ns, [first])
    second = start(cluster, ns, tmp_path, "b", 60, operators)
    wait_until(
        lambda: "waiting as a follower" in second.log.read_text(errors="replace"),
        timeout=30,
        what="the second operator to wait as a follower",
    )
    renewed = datetime.fromisoformat(lease_spec(cluster, ns)["renewTime"])

    first.proc.send_signal(signal.SIGTERM)
    assert first.proc.wait(timeout=30) == 0
    assert "released Lease" in first.log.read_text(errors="replace")
    assert leader_of(cluster, ns, [second]) is second
    acquired = datetime.fromisoformat(lease_spec(cluster, ns)["acquireTime"])
    assert (acquired - renewed).total_seconds() < 30, "the follower waited for expiry"

    apply_agent(cluster, ns, "three")
    wait_reconciled(cluster, ns, "three")


def test_a_leader_that_loses_its_lease_exits_non_zero(
    cluster: Any, ns: str, tmp_path: Path, operators: list[OperatorProcess]
) -> None:
    leader = start(cluster, ns, tmp_path, "a", 30, operators)
    leader_of(cluster, ns, [leader])
    patch = {"spec": {"holderIdentity": "thief_1", "leaseDurationSeconds": 600}}
    cluster.kubectl(
        "patch", "leases.coordination.k8s.io", LEASE, "-n", ns, "--type=merge",
        "-p", json.dumps(patch),
    )  # fmt: skip
    assert leader.proc.wait(timeout=30) == 1
    assert "lost Lease" in leader.log.read_text(errors="replace")
    assert lease_spec(cluster, ns)["holderIdentity"] == "thief_1"  # no release of a lost Lease
