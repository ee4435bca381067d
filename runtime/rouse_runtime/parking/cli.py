"""`rouse parked list|replay|drop`: inspect and act on parked events by hand.

Talks to the parking service over HTTP (in a cluster: `kubectl port-forward`
to it, or set ROUSE_PARKING_URL); `replay` and `drop` send ROUSE_PARKING_TOKEN
(e.g. `export ROUSE_PARKING_TOKEN=$(kubectl -n rouse-system get secret
rouse-parking-token -o jsonpath='{.data.token}' | base64 -d)`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

ENV_PARKING_URL = "ROUSE_PARKING_URL"
DEFAULT_URL = "http://127.0.0.1:8080"


def add_parked(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `rouse parked ...` on the root parser's subcommands."""
    parser = sub.add_parser(
        "parked", help="list, replay or drop events held by the parking service"
    )
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_PARKING_URL, DEFAULT_URL),
        help=f"parking service base URL (default ${ENV_PARKING_URL} or {DEFAULT_URL})",
    )
    actions = parser.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="list stored events, oldest first")
    listing.add_argument("--namespace")
    listing.add_argument("--agent")
    listing.add_argument("--kind", choices=["park", "dead-letter"])
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)

    replay = actions.add_parser("replay", help="send an agent's events to its broker, in order")
    replay.add_argument("namespace")
    replay.add_argument("agent")
    replay.add_argument("--broker", default="default", help="the agent's Broker name")
    replay.add_argument("--kind", choices=["park", "dead-letter"], default="park")
    replay.add_argument("--id", dest="ids", type=int, action="append", help="only these ids")
    replay.set_defaults(handler=_replay)

    drop = actions.add_parser("drop", help="delete an agent's events without sending them")
    drop.add_argument("namespace")
    drop.add_argument("agent")
    drop.add_argument("--kind", choices=["park", "dead-letter"])
    chosen = drop.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--id", dest="ids", type=int, action="append", help="drop these ids")
    chosen.add_argument("--all", action="store_true", help="drop every matching event")
    drop.set_defaults(handler=_drop)


def _call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    return call(args.url, method, path, prog="rouse parked", **kwargs)


def call(base: str, method: str, path: str, *, prog: str, **kwargs: Any) -> Any:
    """One request to the parking service with ROUSE_PARKING_TOKEN; exits naming what failed.

    Shared by `rouse parked` and `rouse runs` (the same service, the same credential).
    """
    import httpx  # only when a parked subcommand runs: keeps `rouse` start-up quick

    from rouse_runtime.parking.credential import ENV_PARKING_TOKEN, bearer

    url = f"{base.rstrip('/')}{path}"
    headers = bearer(os.environ.get(ENV_PARKING_TOKEN, "").strip() or None)
    try:
        response = httpx.request(method, url, timeout=60, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        raise SystemExit(f"{prog}: cannot reach the parking service at {base}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:300]}
    if response.status_code >= 400 and "replayed" not in body:
        detail = body.get("detail") or body.get("error") or body
        raise SystemExit(f"{prog}: HTTP {response.status_code}: {detail}")
    return body


def parked(args: argparse.Namespace, **filters: str | None) -> list[dict[str, Any]]:
    """Every stored event matching `filters` (namespace, agent, kind), oldest first.

    The service answers a page at a time; shared by `rouse parked` and `rouse deadletters`.
    """
    params: dict[str, Any] = {k: v for k, v in filters.items() if v}
    items: list[dict[str, Any]] = []
    while True:
        page = _call(args, "GET", "/parked", params=params)
        items += page["items"]
        if page.get("next") is None:
            return items
        params["after"] = page["next"]


def row(item: dict[str, Any], *fields: str, kind: bool = True) -> str:
    """One stored event as a table line: id, time, (kind,) where it was going, type, `fields`."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(item["parkedAt"]))
    where = f"{item['namespace']}/{item['agent']}/{item['skill']}"
    head = [str(item["id"]), f"{when}Z", *([item["kind"]] if kind else []), where]
    return "  ".join([*head, str(item["event"].get("type")), *fields])


def _list(args: argparse.Namespace) -> int:
    items = parked(args, namespace=args.namespace, agent=args.agent, kind=args.kind)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    if not items:
        print("no parked events")
    for item in items:
        print(row(item, f"source={item['source']}", f"id={item['eventId']}"))
    return 0


def _replay(args: argparse.Namespace) -> int:
    body = {"broker": args.broker, "kind": args.kind, "ids": args.ids}
    result = _call(args, "POST", f"/replay/{args.namespace}/{args.agent}", json=body)
    print(
        f"replayed {result['replayed']} event(s), removed {result['removed']}, "
        f"{result['remaining']} left"
    )
    if result.get("error"):
        print(f"rouse parked replay: stopped: {result['error']}", file=sys.stderr)
        return 1
    return 0


def _drop(args: argparse.Namespace) -> int:
    body = {"kind": args.kind, "ids": args.ids, "all": args.all}
    result = _call(args, "POST", f"/drop/{args.namespace}/{args.agent}", json=body)
    print(f"dropped {result['dropped']} event(s)")
    return 0
