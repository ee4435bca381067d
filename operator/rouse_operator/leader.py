"""Lease-based leader election, as client-go and controller-runtime do it.

Only the holder of a `coordination.k8s.io/v1` Lease runs kopf (and with it the drift
resync and the policy loops, which kopf peering would not pause). The others wait.
The holder renews the Lease every few seconds; if it cannot renew within the renew
deadline (shorter than the lease duration) it exits non-zero at once, before anyone
else may take the Lease, so two operators never work at the same time. On a clean
stop it releases the Lease (empty holder) so a follower takes over without waiting.

Settings (env): ROUSE_LEADER_NAMESPACE (else the service-account namespace file),
ROUSE_LEADER_LEASE_NAME (default rouse-operator), ROUSE_LEADER_LEASE_SECONDS (15),
ROUSE_LEADER_RENEW_DEADLINE_SECONDS (10), ROUSE_LEADER_RETRY_SECONDS (2).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from rouse_operator.kube import api_message
from rouse_operator.settings import SettingsError, seconds

LOG = logging.getLogger("rouse.operator.leader")
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE_NAME = "rouse-operator"


class LeaderConfigError(SettingsError):
    """A leader-election setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class LeaseSpec:
    """The parts of a Lease's spec the decision needs."""

    holder: str  # "" when nobody holds it (never held, or released)
    duration_seconds: int


def may_acquire(lease: LeaseSpec | None, identity: str, unchanged_for: float) -> bool:
    """May `identity` take (or keep) this Lease? None means it does not exist yet.

    `unchanged_for`: seconds, on our own monotonic clock, since we first saw this exact
    record. As client-go does, expiry never compares the holder's renewTime with our
    clock: with clock skew between nodes that would let a follower take a live Lease.
    """
    if lease is None or not lease.holder or lease.holder == identity:
        return True
    return unchanged_for > lease.duration_seconds


@dataclass(frozen=True)
class LeaderConfig:
    """Where the Lease is, who we are, and the timings (seconds)."""

    namespace: str
    name: str
    identity: str
    lease_seconds: int = 15
    renew_deadline: float = 10.0
    retry: float = 2.0


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    return seconds(env, name, default, LeaderConfigError)


def config_from_env(
    env: Mapping[str, str], sa_namespace_file: Path = SA_NAMESPACE_FILE
) -> LeaderConfig:
    """Read the leader-election settings; the renew deadline must be below the lease duration."""
    namespace = env.get("ROUSE_LEADER_NAMESPACE", "").strip()
    if not namespace and sa_namespace_file.exists():
        namespace = sa_namespace_file.read_text().strip()
    if not namespace:
        raise LeaderConfigError(
            "leader election needs the Lease's namespace: set ROUSE_LEADER_NAMESPACE "
            f"(no service-account namespace file at {sa_namespace_file})"
        )
    lease_seconds = _seconds(env, "ROUSE_LEADER_LEASE_SECONDS", 15)
    if lease_seconds != int(lease_seconds):
        raise LeaderConfigError(
            f"ROUSE_LEADER_LEASE_SECONDS={lease_seconds}: expected whole seconds"
        )
    renew_deadline = _seconds(env, "ROUSE_LEADER_RENEW_DEADLINE_SECONDS", 10)
    retry = _seconds(env, "ROUSE_LEADER_RETRY_SECONDS", 2)
    if not retry < renew_deadline < lease_seconds:
        raise LeaderConfigError(
            "leader election timings must satisfy ROUSE_LEADER_RETRY_SECONDS "
            f"({retry}) < ROUSE_LEADER_RENEW_DEADLINE_SECONDS ({renew_deadline}) "
            f"< ROUSE_LEADER_LEASE_SECONDS ({lease_seconds})"
        )
    pod = env.get("POD_NAME", "").strip() or socket.gethostname()
    return LeaderConfig(
        namespace=namespace,
        name=env.get("ROUSE_LEADER_LEASE_NAME", "").strip() or DEFAULT_LEASE_NAME,
        identity=f"{pod}_{os.getpid()}",
        lease_seconds=int(lease_seconds),
        renew_deadline=renew_deadline,
        retry=retry,
    )


def _micro_time(moment: datetime) -> str:
    """RFC 3339 with exactly six fraction digits, as the API server's MicroTime wants."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def spec_of(lease: client.V1Lease) -> LeaseSpec:
    spec = lease.spec or client.V1LeaseSpec()
    return LeaseSpec(
        holder=spec.holder_identity or "",
        duration_seconds=spec.lease_duration_seconds or 0,
    )


def _exit_now(message: str) -> None:
    """Stop the whole process at once: kopf must not work another moment without the Lease."""
    LOG.critical(message)
    logging.shutdown()
    os._exit(1)


class LeaderElector:
    """Acquire, renew in a background thread, release. One per process."""

    def __init__(
        self,
        cfg: LeaderConfig,
        api: client.CoordinationV1Api,
        on_lost: Callable[[str], None] = _exit_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        self.api = api
        self.on_lost = on_lost
        self.monotonic = monotonic  # the clock Lease expiry is measured on (ours, not the holder's)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The last Lease record seen (holder, renewTime, resourceVersion), and when (monotonic).
        self._observed: tuple[Any, float] | None = None

    def _body(self, lease: client.V1Lease | None, now: datetime) -> Any:
        """The Lease we write: us as holder, renewed now; acquireTime/transitions on a takeover.

        A plain dict (the client serializes it as is), so renewTime has the MicroTime form.
        """
        stamp = _micro_time(now)
        spec: dict[str, Any] = {
            "holderIdentity": self.cfg.identity,
            "leaseDurationSeconds": self.cfg.lease_seconds,
            "renewTime": stamp,
        }
        metadata: dict[str, Any] = {"name": self.cfg.name, "namespace": self.cfg.namespace}
        if lease is None:
            spec |= {"acquireTime": stamp, "leaseTransitions": 0}
        else:
            metadata["resourceVersion"] = (lease.metadata or client.V1ObjectMeta()).resource_version
            old = lease.spec or client.V1LeaseSpec()
            transitions = old.lease_transitions or 0
            if (old.holder_identity or "") != self.cfg.identity:
                spec |= {"acquireTime": stamp, "leaseTransitions": transitions + 1}
            else:
                spec |= {
                    "acquireTime": _micro_time(old.acquire_time) if old.acquire_time else stamp,
                    "leaseTransitions": transitions,
                }
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def _read(self) -> client.V1Lease | None:
        try:
            return self.api.read_namespaced_lease(
                self.cfg.name, self.cfg.namespace, _request_timeout=self._timeout()
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _timeout(self) -> float:
        return max(1.0, self.cfg.retry)

    def _unchanged_for(self, lease: client.V1Lease | None) -> float:
        """Seconds since this Lease record last changed, as we observed it (0 when it just did)."""
        now = self.monotonic()
        if lease is None:
            self._observed = None
            return 0.0
        spec = lease.spec or client.V1LeaseSpec()
        version = (lease.metadata or client.V1ObjectMeta()).resource_version
        record = (spec.holder_identity, spec.renew_time, version)
        if self._observed is None or self._observed[0] != record:
            self._observed = (record, now)
        return now - self._observed[1]

    def try_acquire_or_renew(self) -> tuple[bool, LeaseSpec | None]:
        """One attempt; (True, _) when we hold the Lease now. Conflicts mean someone was first."""
        lease = self._read()
        seen = spec_of(lease) if lease is not None else None
        if not may_acquire(seen, self.cfg.identity, self._unchanged_for(lease)):
            return False, seen
        body = self._body(lease, datetime.now(UTC))
        try:
            if lease is None:
                self.api.create_namespaced_lease(
                    self.cfg.namespace, body, _request_timeout=self._timeout()
                )
            else:
                self.api.replace_namespaced_lease(
                    self.cfg.name, self.cfg.namespace, body, _request_timeout=self._timeout()
                )
        except ApiException as exc:
            if exc.status == 409:  # created or updated by someone else since our read
                return False, seen
            raise
        return True, seen

    def acquire(self) -> None:
        """Block until we hold the Lease, logging who holds it meanwhile."""
        where = f"{self.cfg.namespace}/{self.cfg.name}"
        LOG.info("leader election: %s trying to acquire Lease %s", self.cfg.identity, where)
        last_holder: str | None = None
        while True:
            try:
                held, seen = self.try_acquire_or_renew()
            except Exception as exc:  # API errors, connection errors (urllib3), timeouts
                LOG.warning("leader election: cannot read or write Lease %s: %s", where, exc)
                held, seen = False, None
            if held:
                LOG.info("leader election: %s acquired Lease %s; leading", self.cfg.identity, where)
                return
            if seen is not None and seen.holder != last_holder:
                last_holder = seen.holder
                LOG.info(
                    "leader election: Lease %s is held by %s; waiting as a follower (standby)",
                    where,
                    seen.holder,
                )
            time.sleep(self.cfg.retry)

    def start_renewing(self) -> None:
        self._thread = threading.Thread(target=self._renew_loop, name="rouse-leader", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        where = f"{self.cfg.namespace}/{self.cfg.name}"
        last_renewed = time.monotonic()
        while not self._stop.wait(self.cfg.retry):
            try:
                held, seen = self.try_acquire_or_renew()
                if held:
                    last_renewed = time.monotonic()
                elif seen is not None and seen.holder != self.cfg.identity:
                    self.on_lost(
                        f"leader election: lost Lease {where} to {seen.holder or 'nobody'}; "
                        "exiting so that only one operator works"
                    )
                    return
            except Exception as exc:  # any failure counts against the renew deadline
                LOG.warning("leader election: renewing Lease %s failed: %s", where, exc)
            if time.monotonic() - last_renewed > self.cfg.renew_deadline:
                self.on_lost(
                    f"leader election: could not renew Lease {where} for "
                    f"{self.cfg.renew_deadline:g}s (renew deadline); exiting so that a "
                    "follower can take over"
                )
                return

    def release(self) -> None:
        """Stop renewing and give the Lease up (empty holder) so a follower takes it at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout() * 2)
        where = f"{self.cfg.namespace}/{self.cfg.name}"
        try:
            lease = self._read()
            if lease is None or spec_of(lease).holder != self.cfg.identity:
                return
            body = self._body(lease, datetime.now(UTC))
            body["spec"] |= {"holderIdentity": "", "leaseDurationSeconds": 1}
            self.api.replace_namespaced_lease(
                self.cfg.name, self.cfg.namespace, body, _request_timeout=self._timeout()
            )
            LOG.info("leader election: released Lease %s", where)
        except ApiException as exc:
            LOG.warning("leader election: releasing Lease %s failed: %s", where, api_message(exc))
        except Exception as exc:  # the Lease then expires on its own
            LOG.warning("leader election: releasing Lease %s failed: %s", where, exc)
