"""The pure parts of leader election: may I take this Lease now? and the settings."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kubernetes import client
from rouse_operator.leader import (
    LeaderConfig,
    LeaderConfigError,
    LeaseSpec,
    config_from_env,
    may_acquire,
)

ME = "rouse-operator-abc_7"


@pytest.mark.parametrize(
    ("lease", "unchanged_for", "expected"),
    [
        (None, 0, True),  # no Lease yet: create it
        (LeaseSpec("", 15), 0, True),  # released (empty holder)
        (LeaseSpec(ME, 15), 0, True),  # ours: renew
        (LeaseSpec(ME, 15), 60, True),  # ours even when expired
        (LeaseSpec("other_1", 15), 1, False),  # held and renewed a second ago
        (LeaseSpec("other_1", 15), 14.9, False),  # not yet expired
        (LeaseSpec("other_1", 15), 15, False),  # exactly at expiry: not strictly after
        (LeaseSpec("other_1", 15), 15.001, True),  # unchanged for longer than its duration
        (LeaseSpec("other_1", 1), 2, True),  # released the client-go way: 1s duration
    ],
)
def test_may_acquire(lease: LeaseSpec | None, unchanged_for: float, expected: bool) -> None:
    assert may_acquire(lease, ME, unchanged_for) is expected


def test_expiry_is_measured_on_our_clock_not_the_holders() -> None:
    """A holder whose clock is an hour behind still renews: we see the record change, so
    its Lease never looks expired; once it stops changing, expiry counts from our first
    sight of it (client-go's observedTime), whatever renewTime says."""
    from rouse_operator.leader import LeaderElector

    cfg = LeaderConfig("ns", "rouse-operator", ME, lease_seconds=15)
    clock = [1000.0]
    elector = LeaderElector(
        cfg, client.CoordinationV1Api(client.ApiClient()), monotonic=lambda: clock[0]
    )
    behind = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)

    def lease(version: str, renewed: datetime) -> client.V1Lease:
        return client.V1Lease(
            metadata=client.V1ObjectMeta(resource_version=version),
            spec=client.V1LeaseSpec(
                holder_identity="other_1", lease_duration_seconds=15, renew_time=renewed
            ),
        )

    assert elector._unchanged_for(lease("1", behind)) == 0
    clock[0] += 10
    assert elector._unchanged_for(lease("2", behind + timedelta(seconds=2))) == 0  # renewed
    clock[0] += 20  # 20 s later on our clock, nothing changed
    assert elector._unchanged_for(lease("2", behind + timedelta(seconds=2))) == 20
    assert elector._unchanged_for(None) == 0


def test_config_from_env_defaults(tmp_path: Path) -> None:
    cfg = config_from_env(
        {"ROUSE_LEADER_NAMESPACE": "rouse-system", "POD_NAME": "rouse-operator-abc"},
        tmp_path / "missing",
    )
    assert cfg == LeaderConfig(
        namespace="rouse-system",
        name="rouse-operator",
        identity=cfg.identity,
        lease_seconds=15,
        renew_deadline=10.0,
        retry=2.0,
    )
    name, pid = cfg.identity.rsplit("_", 1)
    assert name == "rouse-operator-abc" and int(pid) > 0


def test_config_from_env_service_account_namespace_and_overrides(tmp_path: Path) -> None:
    sa_file = tmp_path / "namespace"
    sa_file.write_text("team-ops\n")
    cfg = config_from_env(
        {
            "POD_NAME": "p",
            "ROUSE_LEADER_LEASE_NAME": "my-lease",
            "ROUSE_LEADER_LEASE_SECONDS": "4",
            "ROUSE_LEADER_RENEW_DEADLINE_SECONDS": "3",
            "ROUSE_LEADER_RETRY_SECONDS": "0.5",
        },
        sa_file,
    )
    assert (cfg.namespace, cfg.name, cfg.lease_seconds, cfg.renew_deadline, cfg.retry) == (
        "team-ops",
        "my-lease",
        4,
        3.0,
        0.5,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "ROUSE_LEADER_NAMESPACE"),
        ({"ROUSE_LEADER_LEASE_SECONDS": "soon"}, "ROUSE_LEADER_LEASE_SECONDS='soon'"),
        ({"ROUSE_LEADER_RETRY_SECONDS": "0"}, "greater than 0"),
        ({"ROUSE_LEADER_LEASE_SECONDS": "2.5"}, "whole seconds"),
        ({"ROUSE_LEADER_RENEW_DEADLINE_SECONDS": "20"}, "< ROUSE_LEADER_LEASE_SECONDS (15"),
        ({"ROUSE_LEADER_RETRY_SECONDS": "10"}, "ROUSE_LEADER_RETRY_SECONDS (10.0) <"),
    ],
)
def test_config_from_env_refuses(tmp_path: Path, env: dict[str, str], message: str) -> None:
    full = ({"ROUSE_LEADER_NAMESPACE": "ns"} if env else {}) | env
    with pytest.raises(LeaderConfigError) as info:
        config_from_env(full, tmp_path / "missing")
    assert message in str(info.value)


def test_leader_that_cannot_renew_gives_up_after_the_renew_deadline() -> None:
    """A real HTTP client against a closed loopback port: every renewal fails (a urllib3
    connection error, not an ApiException) and the elector calls on_lost once the deadline
    has passed, never before."""
    from rouse_operator.leader import LeaderElector
    from rouse_testing.wait import free_port

    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{free_port()}"
    api = client.CoordinationV1Api(client.ApiClient(configuration))
    cfg = LeaderConfig("ns", "rouse-operator", ME, lease_seconds=3, renew_deadline=1.0, retry=0.2)
    lost: list[str] = []
    gave_up = threading.Event()

    def on_lost(message: str) -> None:
        lost.append(message)
        gave_up.set()

    elector = LeaderElector(cfg, api, on_lost=on_lost)
    started = time.monotonic()
    elector.start_renewing()
    assert gave_up.wait(timeout=30), "the elector kept leading without renewing"
    assert time.monotonic() - started >= 1.0
    assert lost == [
        "leader election: could not renew Lease ns/rouse-operator for 1s (renew deadline); "
        "exiting so that a follower can take over"
    ]
