"""`rouse deadletters list|replay --cluster`: a cluster's dead letters, kept by the parking service.

In a cluster Knative sends an event that still fails after its Trigger's retries to the
dead-letter sink, the parking service (`/dead-letter/<ns>/<agent>/<skill>`), adding three
extension attributes that say why: `knativeerrorcode` (the last HTTP status),
`knativeerrordest` (the subscriber) and `knativeerrordata` (the start of its answer, base64).
These commands list them with that reason decoded and replay one to its skill through the
parking service's API (`POST /replay/<ns>/<agent>`, kind dead-letter, with
ROUSE_PARKING_TOKEN), the same calls `rouse parked` makes; `rouse dev`'s own dead letters stay on
disk (`--state-dir`).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import sys
from typing import Any

from rouse_runtime.parking.cli import DEFAULT_URL, ENV_PARKING_URL, _call, parked, row


def add_cluster_options(parser: argparse.ArgumentParser, replay: bool = False) -> None:
    """`--cluster`, the parking service's `--url` and the filters on a `rouse deadletters`
    action (`replay`: also the agent's Broker, where the skill's reply goes)."""
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="the cluster's dead letters, from the parking service (not rouse dev's state dir)",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_PARKING_URL, DEFAULT_URL),
        help=f"with --cluster: parking service base URL (default ${ENV_PARKING_URL} or {DEFAULT_URL})",
    )
    parser.add_argument("--namespace", help="with --cluster: only this namespace")
    parser.add_argument("--agent", help="with --cluster: only this agent")
    if replay:
        parser.add_argument(
            "--broker-name", default="default", help="with --cluster: the agent's Broker"
        )


def reason(event: dict[str, Any]) -> str:
    """Why Knative gave up on the event: the last status and the skill's answer, if it said."""
    code = event.get("knativeerrorcode")
    answer = ""
    if data := event.get("knativeerrordata"):
        try:
            answer = base64.b64decode(str(data), validate=True).decode("utf-8", "replace")
        except (binascii.Error, ValueError):
            answer = str(data)
        try:
            parsed = json.loads(answer)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("detail"):  # the runtime's 500 body
            answer = f"{parsed.get('error', 'error')}: {parsed['detail']}"
    head = f"HTTP {code}" if code else "no status (unreachable or timed out)"
    return f"{head}: {answer}" if answer else head


def letters(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every dead letter the parking service holds (within --namespace/--agent), oldest first."""
    return parked(
        args, kind="dead-letter", namespace=getattr(args, "namespace", None),
        agent=getattr(args, "agent", None),
    )  # fmt: skip


def cluster_list(args: argparse.Namespace) -> int:
    found = letters(args)
    if args.json:
        print(json.dumps([{**item, "reason": reason(item["event"])} for item in found], indent=2))
        return 0
    if not found:
        print("no dead letters")
    for item in found:
        print(row(item, f"id={item['eventId']}", reason(item["event"])[:200], kind=False))
    return 0


def cluster_replay(args: argparse.Namespace) -> int:
    """Deliver one dead letter to its skill again; its reply goes into the agent's broker."""
    letter = next((item for item in letters(args) if item["id"] == args.id), None)
    if letter is None:
        print(f"rouse deadletters replay: no dead letter {args.id} at {args.url}", file=sys.stderr)
        return 1
    body = {"broker": args.broker_name, "kind": "dead-letter", "ids": [args.id]}
    result = _call(args, "POST", f"/replay/{letter['namespace']}/{letter['agent']}", json=body)
    if result.get("error") or not result.get("replayed"):
        print(
            f"rouse deadletters replay: {args.id} not delivered, kept: {result.get('error')}",
            file=sys.stderr,
        )
        return 1
    print(
        f"replayed dead letter {args.id} ({letter['event'].get('type')} id={letter['eventId']}) "
        f"to {letter['namespace']}/{letter['agent']}/{letter['skill']}"
    )
    return 0
