"""`rouse runs list|show|cancel|kill`: what each incoming event caused, and stopping it.

Talks to the parking (platform) service's runs API over HTTP, like `rouse
parked`: locally `rouse dev`'s broker serves it (the default URL); in a cluster
`kubectl port-forward` to the parking service or set ROUSE_PARKING_URL, and
export ROUSE_PARKING_TOKEN for `cancel` and `kill`. Every subcommand takes
`--json` for the API's own answer.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from rouse_runtime.parking.cli import DEFAULT_URL, ENV_PARKING_URL, call
from rouse_runtime.scope import DEFAULT_NAMESPACE

PROG = "rouse runs"


def add_runs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `rouse runs ...` on the root parser's subcommands."""
    parser = sub.add_parser("runs", help="list, show or cancel runs (what one event caused)")
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_PARKING_URL, DEFAULT_URL),
        help=f"parking service base URL (default ${ENV_PARKING_URL} or {DEFAULT_URL})",
    )
    actions = parser.add_subparsers(dest="action", required=True)

    def common(p: argparse.ArgumentParser, *, agent_required: bool) -> None:
        p.add_argument(
            "--namespace", "-n", default=None if not agent_required else DEFAULT_NAMESPACE
        )
        p.add_argument("--agent", "-a", required=agent_required)
        p.add_argument("--json", action="store_true", help="print the API's JSON")

    listing = actions.add_parser("list", help="runs, most recently changed first")
    common(listing, agent_required=False)
    listing.add_argument("--state", help="only runs in this state (e.g. running, failed)")
    listing.add_argument("--since", help="only runs changed within this long, e.g. 10m, 2h, 1d")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=_list)

    show = actions.add_parser("show", help="a run's steps and its ordered history")
    show.add_argument("run")
    common(show, agent_required=True)
    show.set_defaults(handler=_show)

    cancel = actions.add_parser(
        "cancel", help="stop a run: its pending and later events are dropped"
    )
    cancel.add_argument("run")
    common(cancel, agent_required=True)
    cancel.set_defaults(handler=_cancel)

    kill = actions.add_parser("kill", help="the agent-wide kill switch: stop every run now")
    kill.add_argument("agent")
    kill.add_argument("--namespace", "-n", default=DEFAULT_NAMESPACE)
    kill.add_argument("--off", action="store_true", help="lift the kill switch")
    kill.add_argument("--json", action="store_true", help="print the API's JSON")
    kill.set_defaults(handler=_kill)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_seconds(text: str) -> float:
    """`10m` → 600.0; a bad value exits naming it."""
    unit = text[-1:]
    try:
        if unit in _UNITS:
            return float(text[:-1]) * _UNITS[unit]
        return float(text)
    except ValueError:
        raise SystemExit(f"{PROG}: --since {text!r}: expected e.g. 90s, 10m, 2h, 1d") from None


def _print(args: argparse.Namespace, body: Any, text: str) -> int:
    print(json.dumps(body, indent=2) if args.json else text)
    return 0


def _list(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    for name in ("namespace", "agent", "state"):
        if (value := getattr(args, name)) is not None:
            params[name] = value
    if args.since:
        params["since"] = time.time() - since_seconds(args.since)
    body = call(args.url, "GET", "/runs", prog=PROG, params=params)
    lines = [
        f"{'RUN':<34} {'AGENT':<24} {'STATE':<15} {'STEPS':>5} {'TOKENS':>7} {'COST':>10}  STARTED   ROOT"
    ]
    for run in body["items"]:
        started = time.strftime("%H:%M:%S", time.gmtime(run["startedAt"]))
        root = run.get("root") or {}
        lines.append(
            f"{run['run']:<34} {run['namespace'] + '/' + run['agent']:<24} {run['state']:<15}"
            f" {run['steps']:>5} {run['tokens']:>7} {run['costUSD']:>10.6f}  {started}Z {root.get('type', '')}"
        )
    return _print(args, body, "\n".join(lines) if body["items"] else "no runs")


def _show(args: argparse.Namespace) -> int:
    from rouse_runtime.runs.history import render

    path = f"/runs/{args.namespace}/{args.agent}/{args.run}"
    body = call(args.url, "GET", path, prog=PROG)
    return _print(args, body, render(body))


def _cancel(args: argparse.Namespace) -> int:
    path = f"/runs/{args.namespace}/{args.agent}/{args.run}/cancel"
    body = call(args.url, "POST", path, prog=PROG, json={"by": "rouse runs cancel"})
    text = f"run {args.run} {'was already cancelled' if body.get('already') else 'cancelled'}"
    compensations = body.get("compensations") or []
    if compensations:
        text += "; compensating: " + ", ".join(c["type"] for c in compensations)
    return _print(args, body, text)


def _kill(args: argparse.Namespace) -> int:
    path = f"/runs/{args.namespace}/{args.agent}/kill"
    body = call(args.url, "POST", path, prog=PROG, json={"on": not args.off})
    state = "on: every event of it is dropped" if body["killed"] else "off"
    return _print(args, body, f"kill switch of {body['agent']} {state}")
