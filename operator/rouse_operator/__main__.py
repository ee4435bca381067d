"""`python -m rouse_operator`: run the operator against the current kubeconfig (or in-cluster).

    python -m rouse_operator --namespace team-a      # one namespace (repeatable)
    python -m rouse_operator --all-namespaces        # cluster-wide (the Helm chart's default)

/healthz and /metrics listen on ROUSE_METRICS_PORT (default 8080).
"""

from __future__ import annotations

import argparse
import logging
import sys

import kopf

from rouse_operator import health
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
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = from_env()
    except SettingsError as exc:
        print(f"rouse-operator: {exc}", file=sys.stderr)
        return 2
    kopf.configure(verbose=args.verbose)
    server = health.serve(settings.metrics_port)
    logging.getLogger("rouse.operator").info(
        "endpoints /healthz and /metrics on port %d", server.server_address[1]
    )
    from rouse_operator import (
        handlers,  # noqa: F401  (registers the handlers)
        policy_timers,  # noqa: F401  (warm-pool and budget timers)
    )

    kopf.run(
        standalone=True,  # one replica, no peering objects needed
        clusterwide=args.all_namespaces,
        namespaces=args.namespace,
    )
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
