"""`python -m rouse_operator`: run the operator against the current kubeconfig (or in-cluster).

    python -m rouse_operator --namespace team-a      # one namespace (repeatable)
    python -m rouse_operator --all-namespaces        # cluster-wide (the Helm chart's default)
    python -m rouse_operator -A --leader-elect       # one of many replicas (the chart does this)

With --leader-elect (or ROUSE_LEADER_ELECT=true) the operator first acquires a Lease
(rouse_operator.leader) and only then starts kopf; without it, it starts at once.

/healthz and /metrics listen on ROUSE_METRICS_PORT (default 8080).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf
from kubernetes import client
from kubernetes.config import ConfigException

from rouse_operator import health, leader
from rouse_operator.kube import load_config
from rouse_operator.settings import SettingsError, from_env


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rouse_operator",
        description="Rouse operator: reconciles Agents into Knative Services, Triggers and PingSources.",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every handler run")
    parser.add_argument(
        "--leader-elect",
        action="store_true",
        default=os.environ.get("ROUSE_LEADER_ELECT", "").strip().lower() in {"1", "true", "yes"},
        help="hold a coordination.k8s.io Lease before reconciling, so replicas never fight "
        "(default: ROUSE_LEADER_ELECT)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = from_env()
    except SettingsError as exc:
        print(f"rouse-operator: {exc}", file=sys.stderr)
        return 2
    try:  # fail once, clearly, instead of kopf retrying the startup handler every minute
        load_config()
    except ConfigException as exc:
        print(
            f"rouse-operator: no Kubernetes cluster configured ({exc}); set KUBECONFIG or "
            "~/.kube/config, or run in a pod with a service account",
            file=sys.stderr,
        )
        return 2
    elector = None
    if args.leader_elect:
        try:
            leader_cfg = leader.config_from_env(os.environ)
        except leader.LeaderConfigError as exc:
            print(f"rouse-operator: {exc}", file=sys.stderr)
            return 2
        elector = leader.LeaderElector(leader_cfg, client.CoordinationV1Api())
    kopf.configure(verbose=args.verbose)
    if settings.state_url_has_password():
        logging.getLogger("rouse.operator").warning(
            "ROUSE_STATE_URL carries a password; it is copied as a plain env value into every "
            "skill's Knative Service. Set ROUSE_STATE_URL_SECRET=<secret>:<key> (chart: "
            "stateStore.existingSecret) so skills read it from a Secret in their namespace, or "
            "set ROUSE_STATE_URL per Agent in spec.env from a Secret"
        )
    server = health.serve(settings.metrics_port)
    logging.getLogger("rouse.operator").info(
        "endpoints /healthz and /metrics on port %d", server.server_address[1]
    )
    from rouse_operator import (
        handlers,  # noqa: F401  (registers the handlers)
        policy_timers,  # noqa: F401  (warm-pool and budget timers)
    )

    if elector is not None:
        health.STATE.standby = True  # a waiting follower is healthy, not stuck
        elector.acquire()
        health.STATE.standby = False
        elector.start_renewing()
    try:
        kopf.run(
            standalone=True,  # no kopf peering: the Lease (or a single replica) excludes others
            clusterwide=args.all_namespaces,
            namespaces=args.namespace,
        )
    finally:
        if elector is not None:
            elector.release()
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
