"""The ``rouse`` command: local mode (``dev``), ``send``, ``deadletters``.

Each subcommand registers itself in a small ``_add_*`` function listed in
``SUBCOMMANDS``; adding one is a function and a line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

DEFAULT_BROKER = "http://127.0.0.1:8080"
ENV_BROKER = "ROUSE_BROKER"
FAILED_OUTCOMES = ("dead_lettered", "failed")

Handler = Callable[[argparse.Namespace], int]


def _broker_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--broker",
        default=os.environ.get(ENV_BROKER, DEFAULT_BROKER),
        help=f"local broker URL (default ${ENV_BROKER} or {DEFAULT_BROKER})",
    )


# -- rouse dev -------------------------------------------------------------------------------


def _add_dev(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "dev", help="run an Agent locally: broker, skills as processes, schedules"
    )
    parser.add_argument("agent_file", metavar="AGENT.yaml", type=Path, help="the Agent manifest")
    parser.add_argument("--host", default="127.0.0.1", help="broker address (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8080, help="broker port (default 8080; 0 = any free port)"
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(".rouse"),
        help="skill state and dead letters (default .rouse)",
    )
    parser.add_argument(
        "--idle",
        type=float,
        default=None,
        help="seconds a skill process may idle before it stops when scaling.retention is 0s (default 30)",
    )
    parser.add_argument(
        "--eval-interval",
        type=float,
        default=None,
        help="seconds between two evaluations of the warm-pool and budget policies (default 5)",
    )
    parser.set_defaults(handler=_dev)


def _dev(args: argparse.Namespace) -> int:
    from rouse_runtime.agentspec import AgentInvalid
    from rouse_runtime.local.dev import DEFAULT_EVAL_INTERVAL, DevOptions, LocalMode, banner
    from rouse_runtime.local.supervisor import DEFAULT_IDLE_SECONDS
    from rouse_runtime.local.view import View
    from rouse_runtime.policies.warm_pool import Tuning

    options = DevOptions(
        agent_file=args.agent_file,
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        default_idle=DEFAULT_IDLE_SECONDS if args.idle is None else args.idle,
        eval_interval=DEFAULT_EVAL_INTERVAL if args.eval_interval is None else args.eval_interval,
        # The operator's own knob (seconds a warm-pool value stays at least; default 300).
        tuning=Tuning(min_dwell_seconds=float(os.environ.get("ROUSE_WARM_POOL_MIN_DWELL", "300"))),
    )
    if options.eval_interval <= 0:
        print("rouse dev: --eval-interval must be above 0 seconds", file=sys.stderr)
        return 2
    view = View()
    try:
        mode = LocalMode.create(options, view)
    except FileNotFoundError as exc:
        print(f"rouse dev: {exc}", file=sys.stderr)
        return 2
    except AgentInvalid as exc:
        print(f"rouse dev: {args.agent_file} is not a valid Agent:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"rouse dev: {args.agent_file}: {exc}", file=sys.stderr)
        return 2
    try:
        mode.bind()
    except OSError as exc:
        print(f"rouse dev: {exc}", file=sys.stderr)
        return 1
    view.header = banner(mode.agent, options)
    if not view.tty:
        print(view.header, flush=True)
    asyncio.run(_serve(mode))
    if view.tty:  # the redrawn screen is gone with the view: say how it ended
        print("\nrouse dev: stopped; every skill process has exited", flush=True)
    return 0


async def _serve(mode: Any) -> None:
    """Serve until SIGINT/SIGTERM, then stop every skill process before exiting."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    serving = asyncio.create_task(mode.serve())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    mode.request_exit()
    await serving


# -- rouse send ------------------------------------------------------------------------------


def _add_send(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("send", help="post a CloudEvent to the local broker")
    parser.add_argument(
        "type", metavar="TYPE", help="CloudEvent type, e.g. com.example.ticket.created"
    )
    parser.add_argument("--data", default=None, help="JSON data, or @file to read it from a file")
    parser.add_argument(
        "--source", default="/rouse/cli", help="CloudEvent source (default /rouse/cli)"
    )
    parser.add_argument("--subject", default=None, help="CloudEvent subject")
    parser.add_argument(
        "--ext",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extension attribute (repeatable)",
    )
    parser.add_argument(
        "--wait", action="store_true", help="wait for the chain it causes and print it"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds --wait waits (default 120)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    _broker_arg(parser)
    parser.set_defaults(handler=_send)


def read_data(raw: str | None) -> Any:
    """``--data``: JSON text or ``@file``; ValueError says what is wrong."""
    if raw is None:
        return None
    text = raw
    if raw.startswith("@"):
        text = Path(raw[1:]).read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = raw if raw.startswith("@") else "--data"
        raise ValueError(f"{where} is not JSON: {exc}") from None


def _send(args: argparse.Namespace) -> int:
    from cloudevents.conversion import to_binary

    from rouse_runtime.local.broker import new_event

    try:
        data = read_data(args.data)
    except (ValueError, OSError) as exc:
        print(f"rouse send: {exc}", file=sys.stderr)
        return 2
    extensions = {}
    for item in args.ext:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"rouse send: --ext {item!r} must be NAME=VALUE", file=sys.stderr)
            return 2
        extensions[name] = value
    if args.subject:
        extensions["subject"] = args.subject
    event = new_event(args.type, args.source, data, extensions)
    headers, body = to_binary(event)
    broker = args.broker.rstrip("/")
    response = _post_to_broker(
        "rouse send", broker, "/", "; is `rouse dev` running?", headers=headers, content=body
    )
    if response is None:
        return 1
    answer = _json(response)
    if response.status_code == 404:
        print(f"rouse send: not delivered: {answer.get('error', response.text)}", file=sys.stderr)
        for trigger in answer.get("triggers", []):
            print(f"  trigger of {trigger['skill']}: {trigger['filter']}", file=sys.stderr)
        return 1
    if response.status_code >= 300:
        print(
            f"rouse send: broker answered {response.status_code}: {response.text}", file=sys.stderr
        )
        return 1
    if not args.wait:
        if args.json:
            print(json.dumps(answer))
        else:
            parked = " (parked: daily budget spent)" if answer.get("parked") else ""
            print(
                f"sent {args.type} id={answer['id']} chain={answer['chain']} -> {', '.join(answer['routedTo'])}{parked}"
            )
        return 0
    chain = wait_for_chain(broker, answer["chain"], args.timeout)
    if chain is None:
        print(
            f"rouse send: chain {answer['chain']} still running after {args.timeout:g}s",
            file=sys.stderr,
        )
        return 1
    print(json.dumps(chain, indent=2) if args.json else format_chain(chain))
    failed = [
        d for e in chain["events"] for d in e["deliveries"] if d["outcome"] in FAILED_OUTCOMES
    ]
    return 1 if failed else 0


def wait_for_chain(broker: str, chain_id: str, timeout: float) -> dict[str, Any] | None:
    """Poll the broker until no delivery of the chain is running (None on timeout)."""
    import httpx

    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=10) as client:
        while time.monotonic() < deadline:
            response = client.get(f"{broker}/chains/{chain_id}")
            if response.status_code == 200:
                chain: dict[str, Any] = response.json()
                if chain["done"]:
                    return chain
            time.sleep(0.1)
    return None


def format_chain(chain: dict[str, Any]) -> str:
    """The chain as text: each event, where it went, and each skill's answer."""
    events = chain["events"]
    lines = [f"chain {chain['chain']}: {len(events)} event(s)"]
    for number, event in enumerate(events, 1):
        via = event["via"]
        origin = {"send": "sent", "schedule": "schedule"}.get(via, via.replace(":", " of ", 1))
        if via.startswith("reply:"):
            origin = f"reply of {via.split(':', 1)[1]}"
        elif via == "send" and event["source"].startswith("/agents/"):
            origin = f"emitted by {event['source'].rsplit('/', 1)[-1]}"
        lines.append(f"{number}. {event['type']}  [{origin}]  id={event['id']}")
        lines.append(f"   data: {json.dumps(event['data'], ensure_ascii=False)}")
        if not event["routedTo"]:
            lines.append("   -> no skill subscribes (end of chain)")
        elif event.get("parked"):
            skills = ", ".join(event["routedTo"])
            lines.append(f"   -> parked for {skills}: daily budget spent (replayed at the reset)")
        for delivery in event["deliveries"]:
            detail = [f"{delivery['attempts']} attempt(s)", f"{delivery['seconds']:.2f}s"]
            if delivery["cold"]:
                detail.append("cold start")
            what = delivery["outcome"]
            if delivery["replyType"]:
                what += f" {delivery['replyType']}"
            if delivery["error"] and delivery["outcome"] in FAILED_OUTCOMES:
                what += f": {delivery['error']}"
            lines.append(f"   -> {delivery['skill']}: {what} ({', '.join(detail)})")
    return "\n".join(lines)


def _post_to_broker(
    command: str, broker: str, path: str, hint: str = "", **request: Any
) -> httpx.Response | None:
    """POST to the local broker; None, once stderr says so, when it cannot be reached."""
    import httpx

    try:
        return httpx.post(f"{broker}{path}", **{"timeout": 30, **request})
    except httpx.HTTPError as exc:
        print(f"{command}: cannot reach the broker at {broker} ({exc}){hint}", file=sys.stderr)
        return None


def _json(response: Any) -> dict[str, Any]:
    try:
        value = response.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- rouse deadletters -----------------------------------------------------------------------


def _add_deadletters(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "deadletters",
        help="list or replay events that failed after their retries (the parking queue's "
        "dead letters, as in a cluster)",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list dead letters (read from the state dir)")
    listing.add_argument(
        "--state-dir", type=Path, default=Path(".rouse"), help="as given to rouse dev"
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_cluster_options(listing)
    listing.set_defaults(handler=_deadletters_list)
    replay = actions.add_parser(
        "replay",
        help="deliver a dead letter to its skill again by the parking replayer (needs rouse dev); "
        "it leaves the dead letters once delivered",
    )
    replay.add_argument("id", type=int, help="dead-letter id (from list)")
    replay.add_argument(
        "--wait", action="store_true", help="wait for the replay's chain and print it"
    )
    replay.add_argument("--timeout", type=float, default=120.0)
    _broker_arg(replay)
    add_cluster_options(replay, replay=True)
    replay.set_defaults(handler=_deadletters_replay)


def _deadletters_list(args: argparse.Namespace) -> int:
    from rouse_runtime.local import STATE_FILE
    from rouse_runtime.parking.queue import Filter, open_queue

    if args.cluster:
        return cluster_list(args)
    if not (args.state_dir / STATE_FILE).exists():
        print(f"no dead letters (no store at {args.state_dir / STATE_FILE})")
        return 0

    async def read() -> list[dict[str, Any]]:
        queue = open_queue(f"sqlite:///{args.state_dir / STATE_FILE}")
        try:
            return [i.as_json() for i in await queue.items(Filter(kind="dead-letter"))]
        finally:
            await queue.close()

    letters = asyncio.run(read())
    if args.json:
        print(json.dumps(letters, indent=2))
        return 0
    if not letters:
        print("no dead letters")
    for letter in letters:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter["parkedAt"]))
        event = letter["event"]
        print(
            f"{letter['id']}  {when}  {letter['skill']}  {event.get('type')}  "
            f"id={letter['eventId']}  {reason(event)[:200]}"
        )
    return 0


def _deadletters_replay(args: argparse.Namespace) -> int:
    if args.cluster:
        return cluster_replay(args)
    import httpx

    from rouse_runtime.local.chains import TRACEPARENT, chain_id

    command, broker = "rouse deadletters replay", args.broker.rstrip("/")
    try:
        letters = httpx.get(f"{broker}/deadletters", timeout=30).json()["deadLetters"]
    except httpx.HTTPError as exc:
        print(f"{command}: cannot reach the broker at {broker} ({exc})", file=sys.stderr)
        return 1
    letter = next((d for d in letters if d["id"] == args.id), None)
    if letter is None:
        print(f"{command}: no dead letter {args.id}", file=sys.stderr)
        return 1
    path = f"/replay/{letter['namespace']}/{letter['agent']}"
    body = {"kind": "dead-letter", "ids": [args.id]}
    response = _post_to_broker(command, broker, path, json=body, timeout=args.timeout)
    if response is None:
        return 1
    answer = _json(response)
    if response.status_code != 200 or not answer.get("replayed"):
        why = answer.get("error") or answer.get("detail") or response.text
        print(f"{command}: {why}", file=sys.stderr)
        return 1
    chain = chain_id(letter["event"].get(TRACEPARENT))
    print(f"replayed dead letter {args.id} to {letter['skill']} (chain {chain})")
    if not args.wait or chain is None:
        return 0
    done = wait_for_chain(broker, chain, args.timeout)
    if done is None:
        print(f"{command}: still running after {args.timeout:g}s", file=sys.stderr)
        return 1
    print(format_chain(done))
    return 0


# -- entry point -----------------------------------------------------------------------------

from rouse_runtime.parking.cli import add_parked  # noqa: E402 - the parking service's subcommand
from rouse_runtime.parking.deadletters import (  # noqa: E402 - a cluster's dead letters
    add_cluster_options,
    cluster_list,
    cluster_replay,
    reason,
)
from rouse_runtime.runs.cli import add_runs  # noqa: E402 - rouse runs

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]] = [
    _add_dev,
    _add_send,
    _add_deadletters,
    add_parked,  # rouse parked list|replay|drop (rouse_runtime/parking/cli.py)
    add_runs,  # rouse runs list|show|cancel|kill (rouse_runtime/runs/cli.py)
]


def parser() -> argparse.ArgumentParser:
    """The whole ``rouse`` command line."""
    root = argparse.ArgumentParser(
        prog="rouse", description="Rouse: AI agents that cost nothing while idle"
    )
    sub = root.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
