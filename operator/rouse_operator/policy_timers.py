"""The policy loop: evaluate the warm-pool and budget policies for every Agent.

Every ROUSE_EVAL_INTERVAL seconds per Agent: read the ledger's figures from Prometheus
(ROUSE_PROMETHEUS_URL), decide, and server-side-apply the policy-owned status fields (field manager `rouse-policy`, so the reconciler's
own status fields are untouched). The reconciler reacts to a changed
`status.warmPool` / `status.budget.exhausted` by rebuilding the Services'
min-scale and re-pointing the Triggers. When a spent budget comes back the
Triggers are restored first, and once Knative reports them Ready on their
skills again, the parked events are replayed in order through the parking
service (ROUSE_PARKING_URL) to each skill's own address (replay_targets.py).
Any event still parked while the agent may spend (per the parking service's
`rouse_parked_events`) makes a replay due, so nothing parked is stranded.

The loop runs through `handlers.every_agent`, not kopf.timer: a kopf timer puts a
finalizer on every Agent, which would leave Agents undeletable once the operator is gone.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import kopf
from prometheus_client import Histogram
from rouse_runtime.budget_gate import sync_gate
from rouse_runtime.parking.credential import bearer
from rouse_runtime.policies.budget import Usage
from rouse_runtime.policies.durations import parse_duration
from rouse_runtime.policies.warm_pool import SkillWindow, Tuning
from rouse_runtime.policy_inputs import agent_usage, parked_events, skill_window
from rouse_runtime.prometheus import PrometheusClient, PrometheusError
from rouse_runtime.store import Store, StoreError, open_store

from rouse_operator import agent_metrics, handlers
from rouse_operator.policy_status import (
    Evaluation,
    evaluate,
    has_daily_budget,
    policy_fields_changed,
    with_last_write,
)
from rouse_operator.replay_targets import replay_targets

FIELD_MANAGER = "rouse-policy"
SETTINGS = handlers.SETTINGS
TUNING = Tuning(min_dwell_seconds=SETTINGS.warm_pool_min_dwell)
QUERY_TIMEOUT = min(10.0, max(1.0, SETTINGS.eval_interval / 2))
# The parking service stops taking events after 60 s; a delivery in flight may take longer.
REPLAY_TIMEOUT = 90.0
log = logging.getLogger("rouse.operator.policy")
POLICY_SECONDS = Histogram(
    "rouse_operator_policy_evaluation_seconds",
    "Wall-clock time of one Agent's policy evaluation (queries, decisions, status write).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class _Clients:
    prometheus: PrometheusClient | None = None
    http: httpx.AsyncClient | None = None
    store: Store | None = None
    warned_no_store: bool = False


CLIENTS = _Clients()


def prometheus() -> PrometheusClient:
    if CLIENTS.prometheus is None:
        CLIENTS.prometheus = PrometheusClient(SETTINGS.prometheus_url, timeout=QUERY_TIMEOUT)
    return CLIENTS.prometheus


def http() -> httpx.AsyncClient:
    if CLIENTS.http is None:
        CLIENTS.http = httpx.AsyncClient(timeout=60.0)
    return CLIENTS.http


async def read_figures(
    agent: dict[str, Any], now: datetime
) -> tuple[dict[str, SkillWindow | None], Usage | None, PrometheusError | None]:
    """Windows per skill and today's usage; a Prometheus failure leaves None and says why."""
    spec, meta = agent["spec"], agent["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    gaps: list[PrometheusError] = []
    client = prometheus()

    async def window(skill: dict[str, Any]) -> SkillWindow | None:
        seconds = parse_duration((spec.get("warmPool") or {}).get("window", "15m"))
        try:
            return await skill_window(client, namespace, name, skill["name"], seconds)
        except PrometheusError as exc:
            gaps.append(exc)
            return None

    async def usage() -> Usage | None:
        try:
            return await agent_usage(client, namespace, name, now)
        except PrometheusError as exc:
            gaps.append(exc)
            return None

    skills = spec["skills"] if spec.get("warmPool") is not None else []
    results = await asyncio.gather(
        *(window(s) for s in skills), usage() if has_daily_budget(spec) else _none()
    )
    windows = {s["name"]: w for s, w in zip(skills, results[:-1], strict=True)}
    return windows, results[-1], (gaps[0] if gaps else None)  # type: ignore[return-value]


async def _none() -> None:
    return None


def apply_policy_status(namespace: str, name: str, status: dict[str, Any]) -> None:
    """Server-side apply of the policy-owned status fields (field manager rouse-policy),
    remembered with the version it made (`with_last_write`: a lagging copy is no change)."""
    version = handlers.reconciler().kube.apply_status(namespace, name, status, FIELD_MANAGER)
    if version is not None:
        handlers.STATE.policy_written[(namespace, name)] = (version, status)


async def sync_reject_gate(agent: dict[str, Any], evaluation: Evaluation) -> None:
    """Close or open the agent's gate the runtimes check (state store, budget_gate.py): for
    onExhausted: reject (every skill answers 429), and for park when the agent has a front
    door (no Trigger feeds it, so parking cannot stop it: it answers 503 instead).

    Also when the last evaluation suspended (`status.budget.action`) and the spec no longer
    does (switched action, or the budget removed): the gate it closed is opened, else the
    skills would answer 429 (or a front door 503), and replays fail, until the reset.
    """
    spec, meta = agent["spec"], agent["metadata"]
    rejects = (spec.get("budget") or {}).get("onExhausted") == "reject"
    front_door = any(skill.get("http") for skill in spec.get("skills") or [])
    action = ((agent.get("status") or {}).get("budget") or {}).get("action")
    if not (rejects or front_door or action in ("reject", "park")):
        return
    if not SETTINGS.state_url:
        if not CLIENTS.warned_no_store:
            log.warning("ROUSE_STATE_URL is not set: onExhausted: reject cannot reach the runtimes")
            CLIENTS.warned_no_store = True
        return
    if CLIENTS.store is None:
        CLIENTS.store = open_store(SETTINGS.state_url)
    try:
        await sync_gate(CLIENTS.store, meta["namespace"], meta["name"], evaluation.budget)
    except StoreError as exc:
        log.warning("budget gate of %s/%s not written: %s", meta["namespace"], meta["name"], exc)


async def parked_count(namespace: str, name: str) -> float | None:
    """Events parked for the Agent, per the parking service's exporter; None when unknown."""
    try:
        return await parked_events(prometheus(), namespace, name)
    except PrometheusError:
        return None


async def replay_parked(agent: dict[str, Any]) -> tuple[bool, int, str | None]:
    """Replay the Agent's parked events to their skills: (done, how many went, why not).

    Waits (not done, no problem) until the restored Triggers are Ready, or while
    another replay of the agent runs (the parking service's lease answers 409).
    """
    meta = agent["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    children = handlers.reconciler().cache.children(namespace, name)
    targets, waiting = replay_targets(agent, children, SETTINGS.parking_url)
    if targets is None:
        log.info("replay of %s/%s waits: %s", namespace, name, waiting)
        return False, 0, None
    url = f"{SETTINGS.parking_url.rstrip('/')}/replay/{namespace}/{name}"
    body = {"broker": agent["spec"].get("broker", "default"), "kind": "park", "targets": targets}
    try:
        response = await http().post(
            url, json=body, headers=bearer(SETTINGS.parking_token), timeout=REPLAY_TIMEOUT
        )
    except httpx.TimeoutException:
        # A skill answering slowly: the replay goes on under its lease; next evaluation.
        log.info("replay of %s/%s still running after %ss", namespace, name, REPLAY_TIMEOUT)
        return False, 0, None
    except httpx.HTTPError as exc:
        return False, 0, f"parking service {SETTINGS.parking_url} unreachable: {exc}"
    if response.status_code == 409:  # another replayer holds the lease: next evaluation
        return False, 0, None
    if response.status_code != 200:
        return False, 0, f"replay stopped: HTTP {response.status_code} {response.text[:300]}"
    result = response.json()
    return not result.get("more"), int(result.get("replayed") or 0), None


# Not kopf.timer: no finalizer. An evaluation waits at most for its queries, one status apply,
# one reconcile and one replay request (REPLAY_TIMEOUT); past that it is stuck, and a stuck one
# would stop the loop (and every replay) for all Agents.
@handlers.every_agent(
    SETTINGS.eval_interval, initial_delay=1, deadline=REPLAY_TIMEOUT + 4 * QUERY_TIMEOUT + 30
)
async def evaluate_policies(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    """One evaluation of both policies for one Agent."""
    started = time.perf_counter()
    agent: dict[str, Any] = json.loads(json.dumps(dict(body)))
    if agent.get("spec") is None or not agent["spec"].get("skills"):
        return
    agent["metadata"].setdefault("namespace", namespace)
    ns = str(namespace)
    agent = with_last_write(agent, handlers.STATE.policy_written.get((ns, name)))
    now = datetime.now(UTC)
    # Only an Agent that has (or had: status.budget) a budget can have parked events.
    may_have_parked = has_daily_budget(agent["spec"]) or bool(
        (agent.get("status") or {}).get("budget")
    )
    (windows, usage, gap), parked = await asyncio.gather(
        read_figures(agent, now),
        parked_count(ns, name) if may_have_parked else _none(),
    )
    if gap is not None:  # the query and the server: here and in the Event, not in conditions
        log.warning("agent %s/%s: policy inputs unavailable: %s", ns, name, gap)
    evaluation: Evaluation = evaluate(
        agent,
        windows=windows,
        usage=usage,
        gap=None if gap is None else gap.summary,
        gap_detail=None if gap is None else str(gap),
        now=now,
        tuning=TUNING,
        parked=parked,
    )
    agent_metrics.record_policy(ns, name, agent["spec"], evaluation.budget, gap is not None)
    loop = asyncio.get_running_loop()
    if policy_fields_changed(agent, evaluation.status):
        await loop.run_in_executor(None, apply_policy_status, ns, name, evaluation.status)
    await sync_reject_gate(agent, evaluation)
    for event in evaluation.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    if evaluation.replay_due:
        # Triggers back to the skills first (reconcile now), then the parked events.
        context = contextvars.copy_context()  # kopf's Event posting needs the handler context
        await loop.run_in_executor(None, context.run, handlers.run, ns, name)
        done, replayed, problem = await replay_parked(agent)
        if done:
            cleared = dict(evaluation.status)
            cleared["budget"] = {**cleared.get("budget", {}), "replayPending": False}
            await loop.run_in_executor(None, apply_policy_status, ns, name, cleared)
            if replayed:
                kopf.info(
                    body,
                    reason="ParkedReplayed",
                    message=f"{replayed} parked event(s) replayed in order to their skills",
                )
        elif problem is not None:
            kopf.warn(body, reason="ReplayFailed", message=problem)
    POLICY_SECONDS.observe(time.perf_counter() - started)


@kopf.on.cleanup()
async def close_clients(**_: Any) -> None:
    if CLIENTS.prometheus is not None:
        await CLIENTS.prometheus.aclose()
    if CLIENTS.http is not None:
        await CLIENTS.http.aclose()
    if CLIENTS.store is not None:
        await CLIENTS.store.close()
