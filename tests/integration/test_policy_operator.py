"""The policies end to end: real operator on the real control plane, real Prometheus scraping
the real parking service, real short-lived runtime processes spending into the ledger.

Knative does not run here, so the test plays it: it delivers events to wherever the
Agent's Trigger points (the parking sink while suspended), and reports the restored
Triggers Ready with a `status.subscriberUri` (a recording HTTP server standing in for the
skill); the parking service must replay to that address only, never into the broker.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from rouse_testing.openai_server import FakeLLM, start_openai_server
from rouse_testing.operator import OperatorProcess, get_json, install_agent_crd, start_operator
from rouse_testing.parking import TEST_TOKEN, Parking, start_parking
from rouse_testing.prometheus import PrometheusServer, prometheus_server
from rouse_testing.revisions import play_revision, revision_floor
from rouse_testing.runtime import HttpSink, RunningRuntime, start_runtime, start_sink
from rouse_testing.wait import wait_until

pytestmark = pytest.mark.integration

AGENT = "shop"
SKILLS = """
async def work(event, ctx):
    return None

async def think(event, ctx):
    await ctx.llm.chat([{"role": "user", "content": "hi"}])
    return None

async def ask(event, ctx):
    return {"answer": "yes"}
"""


def agent_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": AGENT},
        "spec": {
            "image": "registry.example/shop:1.0",
            "skills": [
                {
                    "name": "work",
                    "handler": "skills:work",
                    "events": [{"type": "com.example.work"}],
                    "scaling": {"min": 0, "max": 5},
                },
                {
                    "name": "think",
                    "handler": "skills:think",
                    "events": [{"type": "com.example.think"}],
                    "scaling": {"min": 0, "max": 5},
                },
            ],
            "warmPool": {"max": 2, "coldStartTarget": 0.05, "window": "20s"},
            "budget": {"daily": {"tokens": 100}, "onExhausted": "park"},
        },
    }


@pytest.fixture
def world(
    cluster: Any, namespace: str, tmp_path: Path
) -> Iterator[tuple[PrometheusServer, Parking, OperatorProcess, HttpSink, FakeLLM]]:
    install_agent_crd(cluster)
    ingress = start_sink()
    llm = start_openai_server(prompt_tokens=7, completion_tokens=3)
    parking = start_parking(
        tmp_path,
        f"sqlite:///{tmp_path}/state.db",
        extra_env={"ROUSE_BROKER_INGRESS": ingress.url.rstrip("/")},
    )
    with prometheus_server(scrape_interval=1.0) as prometheus:
        prometheus.set_targets([f"127.0.0.1:{parking.port}"])
        prometheus.wait_scraped(f"127.0.0.1:{parking.port}")
        operator = start_operator(
            cluster,
            [namespace],
            tmp_path / "operator.log",
            extra_env={
                "ROUSE_PROMETHEUS_URL": prometheus.url,
                "ROUSE_PARKING_URL": parking.url,
                "ROUSE_PARKING_TOKEN": TEST_TOKEN,
                "ROUSE_EVAL_INTERVAL": "1",
                "ROUSE_WARM_POOL_MIN_DWELL": "1",
                "ROUSE_STATE_URL": f"sqlite:///{tmp_path}/state.db",
            },
        )
        try:
            yield prometheus, parking, operator, ingress, llm
        finally:
            operator.stop()
            parking.stop()
            ingress.stop()
            llm.stop()


def start_skill(tmp_path: Path, namespace: str, skill: str, **extra: str) -> RunningRuntime:
    """A runtime process of one of SKILLS' skills, its env as the operator sets it (state in the
    test's SQLite file)."""
    (tmp_path / "skills").mkdir(exist_ok=True)
    (tmp_path / "skills" / "skills.py").write_text(SKILLS)
    env = {
        "ROUSE_HANDLER": f"skills:{skill}",
        "ROUSE_AGENT": AGENT,
        "ROUSE_SKILL": skill,
        "ROUSE_NAMESPACE": namespace,
        "ROUSE_STATE_URL": f"sqlite:///{tmp_path}/state.db",
        **extra,
    }
    return start_runtime(env, tmp_path / "skills")


def exhaust_budget(
    cluster: Any,
    namespace: str,
    tmp_path: Path,
    llm: FakeLLM,
    on_exhausted: str,
    *extra_skills: dict[str, Any],
) -> None:
    """Apply the Agent (no warm pool, `extra_skills` added) with a daily budget of 50 tokens,
    spend them, and wait for the operator to suspend it."""
    manifest = agent_manifest()
    manifest["spec"]["budget"] = {"daily": {"tokens": 50}, "onExhausted": on_exhausted}
    manifest["spec"]["skills"].extend(extra_skills)
    del manifest["spec"]["warmPool"]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))
    invoke(tmp_path, namespace, llm, "think", processes=1, each=5)  # 50 tokens: spent
    wait_until(
        lambda: agent_obj(cluster, namespace).get("status", {}).get("phase") == "Suspended",
        timeout=60,
        interval=0.5,
        what=f"phase Suspended (onExhausted: {on_exhausted})",
    )


def invoke(
    tmp_path: Path, namespace: str, llm: FakeLLM, skill: str, processes: int, each: int
) -> None:
    """Short-lived runtime processes of a skill, each serving `each` events then exiting."""
    llm_env = {
        "ROUSE_LLM_BASE_URL": llm.url,
        "ROUSE_LLM_MODEL": "m",
        "ROUSE_LLM_PRICES": json.dumps({"m": {"input": 1.0, "output": 1.0}}),
    }
    # All processes up first, then the events: the invocations land within one window
    # however slowly the processes start on a loaded machine.
    runtimes = [start_skill(tmp_path, namespace, skill, **llm_env) for _ in range(processes)]
    try:
        for runtime in runtimes:
            for _ in range(each):
                answer = httpx.post(runtime.url, timeout=10, **cloud_event(f"com.example.{skill}"))  # type: ignore[arg-type]
                assert answer.status_code == 202, answer.text
    finally:
        for runtime in runtimes:
            runtime.stop()


def cloud_event(kind: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "headers": {
            "ce-specversion": "1.0",
            "ce-id": event_id or str(uuid.uuid4()),
            "ce-source": "/test",
            "ce-type": kind,
            "content-type": "application/json",
        },
        "content": b"{}",
    }


def agent_obj(cluster: Any, namespace: str) -> dict[str, Any]:
    obj: dict[str, Any] = get_json(cluster, "agents.rouse.dev", "-n", namespace, AGENT)
    return obj


def agent_event_reasons(cluster: Any, namespace: str) -> list[str]:
    events = get_json(
        cluster, "events", "-n", namespace, "--field-selector", f"involvedObject.name={AGENT}"
    )
    return [e["reason"] for e in events["items"]]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == kind), {})


def min_scale(cluster: Any, namespace: str, skill: str) -> str | None:
    """The warm floor on the skill's Revision (made by `play_revision`)."""
    return revision_floor(cluster, namespace, f"{AGENT}-{skill}-00001")


def subscriber(cluster: Any, namespace: str, skill: str) -> dict[str, Any]:
    trigger = get_json(
        cluster, "triggers.eventing.knative.dev", "-n", namespace, f"{AGENT}-{skill}-0"
    )
    return dict(trigger["spec"]["subscriber"]) if trigger else {}


def test_warm_pool_and_budget_through_the_real_operator(
    cluster: Any,
    namespace: str,
    tmp_path: Path,
    world: tuple[PrometheusServer, Parking, OperatorProcess, HttpSink, FakeLLM],
) -> None:
    operator = world[2]
    try:
        run_scenario(cluster, namespace, tmp_path, world)
    except BaseException:
        print(f"--- operator log (tail) ---\n{operator.log_tail(150)}")
        raise


def run_scenario(
    cluster: Any,
    namespace: str,
    tmp_path: Path,
    world: tuple[PrometheusServer, Parking, OperatorProcess, HttpSink, FakeLLM],
) -> None:
    skill = start_sink()  # the skill's Service, as the restored Trigger's subscriberUri
    try:
        run_budget_story(cluster, namespace, tmp_path, world, skill)
    finally:
        skill.stop()


def trigger_ready(cluster: Any, namespace: str, skill: str, address: str) -> None:
    """Play Knative's Trigger controller: Ready, on its subscriber at `address`."""
    name = f"{AGENT}-{skill}-0"
    trigger = get_json(cluster, "triggers.eventing.knative.dev", "-n", namespace, name)
    status = {
        "observedGeneration": trigger["metadata"]["generation"],
        "subscriberUri": address,
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    cluster.kubectl(
        "patch", "triggers.eventing.knative.dev", name, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip


def run_budget_story(
    cluster: Any,
    namespace: str,
    tmp_path: Path,
    world: tuple[PrometheusServer, Parking, OperatorProcess, HttpSink, FakeLLM],
    skill: HttpSink,
) -> None:
    prometheus, parking, _, ingress, llm = world
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(agent_manifest()))
    wait_until(
        lambda: get_json(cluster, "ksvc", "-n", namespace, f"{AGENT}-work") is not None,
        timeout=60,
        what="Service shop-work",
    )
    play_revision(cluster, namespace, f"{AGENT}-work")
    wait_until(
        lambda: min_scale(cluster, namespace, "work") == "0", timeout=60, what="its Revision"
    )

    # Cold starts raise the warm pool of the skill that had them.
    invoke(tmp_path, namespace, llm, "work", processes=3, each=2)  # 6 invocations, 3 cold
    wait_until(
        lambda: min_scale(cluster, namespace, "work") == "1",
        timeout=60,
        interval=0.5,
        what="min-scale 1 on shop-work after cold starts",
    )
    warm = agent_obj(cluster, namespace)["status"]["warmPool"]["skills"]
    assert [(s["name"], s["minScale"]) for s in warm] == [("work", 1), ("think", 0)]
    assert condition(agent_obj(cluster, namespace), "WarmPoolApplied")["status"] == "True"

    # Idleness lowers it again after the window/dwell time.
    wait_until(
        lambda: min_scale(cluster, namespace, "work") == "0",
        timeout=60,
        interval=0.5,
        what="min-scale back to 0 after idleness",
    )

    # Spending past the daily budget suspends the agent and parks its events.
    invoke(tmp_path, namespace, llm, "think", processes=1, each=10)  # 10 x 10 tokens = 100
    parking_sink = {"uri": f"{parking.url}/park/{namespace}/{AGENT}/work"}
    wait_until(
        lambda: (
            agent_obj(cluster, namespace)["status"].get("phase") == "Suspended"
            and subscriber(cluster, namespace, "work") == parking_sink
        ),
        timeout=60,
        interval=0.5,
        what="phase Suspended and the Trigger re-pointed to the parking sink",
    )
    suspended = agent_obj(cluster, namespace)
    within = condition(suspended, "WithinBudget")
    assert (within["status"], within["reason"]) == ("False", "TokensExhausted")
    assert suspended["status"]["budget"]["exhausted"] is True
    assert suspended["status"]["budget"]["tokensToday"] == 100

    parked_ids = [f"parked-{n}" for n in range(5)]
    for event_id in parked_ids:  # the broker delivers to where the Trigger points
        answer = httpx.post(
            parking_sink["uri"], timeout=10, **cloud_event("com.example.work", event_id)
        )
        assert answer.status_code == 202
    listed = httpx.get(f"{parking.url}/parked", params={"agent": AGENT}).json()["items"]
    assert [i["eventId"] for i in listed] == parked_ids

    # Prometheus goes away: decisions held, the condition says so.
    prometheus.stop()
    wait_until(
        lambda: (
            condition(agent_obj(cluster, namespace), "WarmPoolApplied").get("reason")
            == "MetricsUnavailable"
        ),
        timeout=60,
        interval=0.5,
        what="WarmPoolApplied reason MetricsUnavailable",
    )
    held = agent_obj(cluster, namespace)
    # The condition says what and what to do, in one line; the query and the URL are in
    # the Event (and the operator's log).
    warm = condition(held, "WarmPoolApplied")["message"]
    assert warm.startswith("Prometheus is unreachable: holding the last min-scale"), warm
    assert prometheus.url not in warm and "rouse_ledger" not in warm and len(warm) <= 256
    unavailable = wait_until(
        lambda: [
            e["message"]
            for e in get_json(cluster, "events", "-n", namespace)["items"]
            if e["reason"] == "MetricsUnavailable"
        ],
        timeout=30,
        what="the MetricsUnavailable Event",
    )
    assert prometheus.url in unavailable[0] and "rouse_ledger" in unavailable[0], unavailable
    assert held["status"]["phase"] == "Suspended"
    assert condition(held, "WithinBudget")["status"] == "False"
    assert subscriber(cluster, namespace, "work") == parking_sink
    assert min_scale(cluster, namespace, "work") == "0"
    prometheus.start()

    # Raising the budget restores the Triggers; once they are Ready on the skills (Knative's
    # status), the parked events are replayed in order to the skill, never into the broker.
    cluster.kubectl(
        "patch", "agents.rouse.dev", AGENT, "-n", namespace, "--type=merge",
        "-p", json.dumps({"spec": {"budget": {"daily": {"tokens": 1000}}}}),
    )  # fmt: skip
    wait_until(
        lambda: "ref" in subscriber(cluster, namespace, "work"),
        timeout=60,
        interval=0.5,
        what="the Trigger restored to the skill's Service",
    )
    assert agent_obj(cluster, namespace)["status"]["budget"]["replayPending"] is True
    assert skill.received == []  # not before Knative says the restored Triggers are Ready
    for name in ("work", "think"):
        trigger_ready(cluster, namespace, name, skill.url)
    wait_until(
        lambda: [r.headers.get("ce-id") for r in skill.received] == parked_ids,
        timeout=60,
        interval=0.5,
        what=f"parked events replayed in order to the skill (got {skill.received!r})",
    )
    assert ingress.received == []  # the broker's other subscribers had them already
    assert httpx.get(f"{parking.url}/parked").json() == {"items": [], "next": None}
    resumed = agent_obj(cluster, namespace)
    assert resumed["status"]["phase"] != "Suspended"
    assert condition(resumed, "WithinBudget")["reason"] in ("BudgetRaised", "WithinBudget")
    wait_until(
        lambda: agent_obj(cluster, namespace)["status"]["budget"]["replayPending"] is False,
        timeout=30,
        what="replayPending cleared",
    )
    assert len(skill.received) == len(parked_ids)  # nothing replayed twice
    # The policy loop posts its Events on the Agent (it runs in kopf's context for the Agent)
    # and, unlike a kopf.timer, puts no finalizer on it.
    wait_until(
        lambda: "ParkedReplayed" in agent_event_reasons(cluster, namespace),
        timeout=30,
        what="Event ParkedReplayed on the Agent",
    )
    assert "finalizers" not in agent_obj(cluster, namespace)["metadata"]


def test_reject_makes_the_runtime_answer_429(
    cluster: Any,
    namespace: str,
    tmp_path: Path,
    world: tuple[PrometheusServer, Parking, OperatorProcess, HttpSink, FakeLLM],
) -> None:
    exhaust_budget(cluster, namespace, tmp_path, world[4], "reject")
    assert "ref" in subscriber(cluster, namespace, "think")  # reject does not park
    runtime = start_skill(tmp_path, namespace, "work")
    try:
        answer = httpx.post(runtime.url, timeout=10, **cloud_event("com.example.work"))
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"] == "budget exhausted"
        # The budget removed: the operator opens the gate it closed (else 429 until the reset).
        cluster.kubectl(
            "patch", "agent", AGENT, "-n", namespace, "--type=merge", "-p",
            json.dumps({"spec": {"budget": None}}),
        )  # fmt: skip
        wait_until(
            lambda: (
                httpx.post(runtime.url, timeout=10, **cloud_event("com.example.work")).status_code
                != 429
            ),
            timeout=60,
            interval=0.5,
            what="the runtime answering again once the budget is removed",
        )
    finally:
        runtime.stop()


def test_park_stops_the_front_door_with_503(
    cluster: Any,
    namespace: str,
    tmp_path: Path,
    world: tuple[PrometheusServer, Parking, OperatorProcess, HttpSink, FakeLLM],
) -> None:
    """No Trigger feeds a front door, so parking cannot stop it: while the agent is suspended
    it answers 503 with the reason (the operator's gate), and event skills are left alone."""
    ask = {"name": "ask", "handler": "skills:ask", "http": {"public": True}}
    exhaust_budget(cluster, namespace, tmp_path, world[4], "park", ask)
    door = start_skill(tmp_path, namespace, "ask", ROUSE_FRONT_DOOR="public")
    work = start_skill(tmp_path, namespace, "work")
    try:

        def refused() -> httpx.Response | None:
            answer = httpx.post(door.url, json={}, timeout=10)
            return answer if answer.status_code == 503 else None

        answer = wait_until(
            refused, timeout=30, interval=0.5, what="the front door answering 503 while parked"
        )
        assert answer.json()["reason"] == "TokensExhausted", answer.text
        assert "onExhausted: park" in answer.json()["detail"]
        assert int(answer.headers["retry-after"]) > 0
        assert (
            httpx.post(work.url, timeout=10, **cloud_event("com.example.work")).status_code == 202
        )
        # The budget raised: the operator opens the gate, the front door answers again.
        cluster.kubectl(
            "patch", "agent", AGENT, "-n", namespace, "--type=merge", "-p",
            json.dumps({"spec": {"budget": {"daily": {"tokens": 1000}}}}),
        )  # fmt: skip
        wait_until(
            lambda: httpx.post(door.url, json={}, timeout=10).status_code == 200,
            timeout=60,
            interval=0.5,
            what="the front door answering once the budget is raised",
        )
    finally:
        door.stop()
        work.stop()
