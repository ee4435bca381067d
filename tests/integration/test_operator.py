"""The real operator (`python -m rouse_operator`) against the real control plane.

Knative's controllers do not run here, so the tests play Knative's part where needed:
they set the children's status conditions, as Knative would, and check the Agent follows.
The garbage collector (kube-controller-manager) does run.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from rouse_operator.reconcile import contains
from rouse_operator.resources import children
from rouse_operator.settings import Settings
from rouse_testing.agents import base_agent
from rouse_testing.operator import OperatorProcess, get_json, install_agent_crd, start_operator
from rouse_testing.revisions import play_revision, revision_floor
from rouse_testing.wait import wait_until

REPO = Path(__file__).resolve().parents[2]
KINDS = {
    "Service": "services.serving.knative.dev",
    "Trigger": "triggers.eventing.knative.dev",
    "PingSource": "pingsources.sources.knative.dev",
}
SELECTOR = "app.kubernetes.io/managed-by=rouse"
OWN = ("Ready", "SkillsReady", "TriggersReady")  # the reconciler's (the policies add their own)


@pytest.fixture(scope="module")
def ns(cluster: Any) -> Iterator[str]:
    install_agent_crd(cluster)
    name = cluster.create_namespace("op")
    yield name
    cluster.delete_namespace(name)


@pytest.fixture(scope="module")
def operator(
    cluster: Any, ns: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    running = start_operator(cluster, [ns], log)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _operator_log_on_failure(
    request: pytest.FixtureRequest, operator: OperatorProcess
) -> Iterator[None]:
    """A failing test shows the operator's log (captured teardown output)."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        print(f"--- operator log (tail) ---\n{operator.log_tail(150)}")


def apply(cluster: Any, ns: str, obj: dict[str, Any] | str) -> None:
    text = obj if isinstance(obj, str) else json.dumps(obj)
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=text)


def children_of(cluster: Any, ns: str, agent: str) -> dict[tuple[str, str], dict[str, Any]]:
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, resource in KINDS.items():
        items = get_json(cluster, resource, "-n", ns, "-l", f"{SELECTOR},rouse.dev/agent={agent}")
        for item in items["items"]:
            found[(kind, item["metadata"]["name"])] = item
    return found


def expected_children(cluster: Any, ns: str, agent: str) -> list[dict[str, Any]]:
    """What the builders make from the Agent as the API server stores it."""
    stored = get_json(cluster, "agents.rouse.dev", "-n", ns, agent)
    return children.desired(stored, Settings())


def wait_children_match(cluster: Any, ns: str, agent: str, timeout: float = 60) -> dict[Any, Any]:
    """Until exactly the expected children exist, each holding the expected spec and metadata."""

    def match() -> dict[Any, Any] | None:
        wanted = expected_children(cluster, ns, agent)
        live = children_of(cluster, ns, agent)
        if set(live) != {(m["kind"], m["metadata"]["name"]) for m in wanted}:
            return None
        for manifest in wanted:
            obj = live[(manifest["kind"], manifest["metadata"]["name"])]
            if not (
                contains(obj["spec"], manifest["spec"])
                and contains(obj["metadata"], manifest["metadata"])
            ):
                return None
        return live

    result: dict[Any, Any] = wait_until(
        match, timeout=timeout, interval=0.2, what=f"children of {agent}"
    )
    return result


def agent_status(cluster: Any, ns: str, agent: str) -> dict[str, Any]:
    obj = get_json(cluster, "agents.rouse.dev", "-n", ns, agent)
    return (obj or {}).get("status") or {}


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def set_ready(cluster: Any, ns: str, kind: str, name: str, ready: str, **extra: Any) -> None:
    """Play Knative's controller: set the child's Ready condition for its current generation."""
    obj = get_json(cluster, KINDS[kind], "-n", ns, name)
    cond = {"type": "Ready", "status": ready, "lastTransitionTime": "2026-01-01T00:00:00Z"}
    if ready == "False":
        cond |= {"reason": "RevisionMissing", "message": "Configuration failed: image pull backoff"}
    status = {"observedGeneration": obj["metadata"]["generation"], "conditions": [cond], **extra}
    cluster.kubectl(
        "patch", KINDS[kind], name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": status}),
    )  # fmt: skip


def test_example_agent_makes_its_children(cluster: Any, ns: str, operator: OperatorProcess) -> None:
    apply(cluster, ns, (REPO / "examples" / "support-triage" / "agent.yaml").read_text())
    live = wait_children_match(cluster, ns, "support-triage")
    assert sorted(live) == [
        ("PingSource", "support-triage-digest-cron"),
        ("Service", "support-triage-ask"),  # the front door: no Trigger, no PingSource
        ("Service", "support-triage-digest"),
        ("Service", "support-triage-draft"),
        ("Service", "support-triage-escalate"),
        ("Service", "support-triage-refund"),
        ("Service", "support-triage-triage"),
        ("Trigger", "support-triage-digest-0"),
        ("Trigger", "support-triage-digest-cron"),  # the PingSource's ticks, from the broker
        ("Trigger", "support-triage-draft-0"),
        ("Trigger", "support-triage-escalate-0"),
        ("Trigger", "support-triage-refund-0"),
        ("Trigger", "support-triage-refund-1"),
        ("Trigger", "support-triage-triage-0"),
    ]
    # The schedule ticks into the broker; a Trigger on its exact type and source brings the tick
    # to the skill, so the skill's reply re-enters the broker (a PingSource drops its sink's answer).
    ping = live[("PingSource", "support-triage-digest-cron")]["spec"]
    assert ping["sink"] == {
        "ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "default"}
    }
    ticks = live[("Trigger", "support-triage-digest-cron")]["spec"]
    assert ticks["filter"]["attributes"] == {
        "type": "dev.knative.sources.ping",
        "source": f"/apis/v1/namespaces/{ns}/pingsources/support-triage-digest-cron",
    }
    assert ticks["subscriber"]["ref"]["name"] == "support-triage-digest"
    visibility = {
        name: obj["metadata"]["labels"].get("networking.knative.dev/visibility")
        for (kind, name), obj in live.items()
        if kind == "Service"
    }
    assert visibility == {
        "support-triage-ask": None,  # routed through the ingress
        "support-triage-digest": "cluster-local",
        "support-triage-draft": "cluster-local",
        "support-triage-escalate": "cluster-local",
        "support-triage-refund": "cluster-local",
        "support-triage-triage": "cluster-local",
    }
    agent = get_json(cluster, "agents.rouse.dev", "-n", ns, "support-triage")
    for obj in live.values():
        assert obj["metadata"]["ownerReferences"] == [
            {"apiVersion": "rouse.dev/v1alpha1", "kind": "Agent", "name": "support-triage",
             "uid": agent["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}
        ]  # fmt: skip
    for kind, name in live:
        shown = get_json(cluster, KINDS[kind], "-n", ns, name, "--show-managed-fields")
        managers = {m["manager"] for m in shown["metadata"]["managedFields"]}
        assert managers == {"rouse"}, managers
    # No finalizer at all: the Agent must stay deletable when the operator is gone (kopf adds
    # its marker on its first pass, before any handler, so a kopf.timer or a deletion handler
    # would show here).
    assert "finalizers" not in agent["metadata"], agent["metadata"]["finalizers"]
    status = wait_until(
        lambda: (s := agent_status(cluster, ns, "support-triage")).get("observedGeneration") and s,
        timeout=30, what="status of support-triage",
    )  # fmt: skip
    # kopf's last-handled configuration came with the status, in the same write (no annotation).
    handled = json.loads(status["kopf"]["last-handled-configuration"])
    assert (
        handled["spec"]["skills"]
        == get_json(cluster, "agents.rouse.dev", "-n", ns, "support-triage")["spec"]["skills"]
    )
    annotations = agent["metadata"].get("annotations") or {}
    assert "rouse.dev/last-handled-configuration" not in annotations
    assert status["phase"] == "Pending"
    assert status["skillsReady"] == f"0/{len(visibility)}"  # one per skill, the front door too
    events = cluster.kubectl(
        "get", "events", "-n", ns, "--field-selector", "involvedObject.name=support-triage",
        "-o", "jsonpath={range .items[*]}{.reason} {.message}{'\\n'}{end}",
    ).stdout  # fmt: skip
    # A new Agent's children are what creating it means (status.skills names them): no Event.
    assert "Created" not in events, events
    # kopf logs each spec handler's success, not every watch event's (quiet_handlers).
    log = operator.log.read_text(errors="replace")
    assert "Handler 'agent_changed' succeeded." in log
    assert "Handler 'agent_event' succeeded." not in log
    assert "Handler 'child_event' succeeded." not in log


def test_edits_are_followed(cluster: Any, ns: str, operator: OperatorProcess) -> None:
    agent = base_agent("edits")
    apply(cluster, ns, agent)
    wait_children_match(cluster, ns, "edits")
    # add a skill, change scaling
    agent["spec"]["skills"].append(
        {"name": "escalate", "handler": "support.skills:escalate", "events": [{"type": "urgent"}]}
    )
    agent["spec"]["skills"][0]["scaling"] = {"min": 1, "max": 3, "target": 2}
    apply(cluster, ns, agent)
    live = wait_children_match(cluster, ns, "edits")
    annotations = live[("Service", "edits-triage")]["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["autoscaling.knative.dev/min-scale"], annotations["autoscaling.knative.dev/max-scale"],
            annotations["autoscaling.knative.dev/target"]) == ("1", "3", "2")  # fmt: skip
    assert ("Trigger", "edits-escalate-0") in live
    # remove a skill (and with it its PingSource) and the target
    del agent["spec"]["skills"][1]
    agent["spec"]["skills"][0]["scaling"] = {"min": 0, "max": 3}
    apply(cluster, ns, agent)
    live = wait_children_match(cluster, ns, "edits")
    assert sorted(live) == [
        ("Service", "edits-escalate"), ("Service", "edits-triage"),
        ("Trigger", "edits-escalate-0"), ("Trigger", "edits-triage-0"),
    ]  # fmt: skip
    annotations = live[("Service", "edits-triage")]["spec"]["template"]["metadata"]["annotations"]
    assert (
        "autoscaling.knative.dev/target" not in annotations
    )  # a field Rouse stopped setting is gone


def test_children_changed_by_hand_are_put_back(
    cluster: Any, ns: str, operator: OperatorProcess
) -> None:
    apply(cluster, ns, base_agent("handsoff"))
    live = wait_children_match(cluster, ns, "handsoff")
    old_uid = live[("Service", "handsoff-triage")]["metadata"]["uid"]
    cluster.kubectl("delete", KINDS["Service"], "handsoff-triage", "-n", ns, "--wait=false")
    cluster.kubectl("delete", KINDS["Trigger"], "handsoff-triage-0", "-n", ns, "--wait=false")
    cluster.kubectl("delete", KINDS["Trigger"], "handsoff-digest-cron", "-n", ns, "--wait=false")
    live = wait_children_match(cluster, ns, "handsoff")
    assert live[("Service", "handsoff-triage")]["metadata"]["uid"] != old_uid
    wait_until(
        lambda: "Created Service handsoff-triage: it did not exist"
        in agent_events(cluster, ns, "handsoff"),
        timeout=30, what="an Event saying the deleted Service was put back",
    )  # fmt: skip
    patch = {"spec": {"template": {"spec": {"containerConcurrency": 99}}}}
    cluster.kubectl(
        "patch",
        KINDS["Service"],
        "handsoff-triage",
        "-n",
        ns,
        "--type=merge",
        "-p",
        json.dumps(patch),
    )
    cluster.kubectl("patch", KINDS["PingSource"], "handsoff-digest-cron", "-n", ns, "--type=merge",
                    "-p", json.dumps({"spec": {"schedule": "0 0 * * *"}}))  # fmt: skip
    live = wait_children_match(cluster, ns, "handsoff")
    assert (
        live[("Service", "handsoff-triage")]["spec"]["template"]["spec"]["containerConcurrency"]
        == 10
    )
    assert live[("PingSource", "handsoff-digest-cron")]["spec"]["schedule"] == "*/15 * * * *"
    wait_until(
        lambda: "Updated Service handsoff-triage: fields Rouse sets were changed by someone "
        "else; put back" in agent_events(cluster, ns, "handsoff"),
        timeout=30, what="an Event saying the hand edit was put back",
    )  # fmt: skip


def agent_events(cluster: Any, ns: str, agent: str) -> str:
    """The Agent's Events, one `<reason> <message>` a line."""
    return str(
        cluster.kubectl(
            "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={agent}",
            "-o", "jsonpath={range .items[*]}{.reason} {.message}{'\\n'}{end}",
        ).stdout
    )  # fmt: skip


def test_status_and_printer_columns_follow_children(
    cluster: Any, ns: str, operator: OperatorProcess
) -> None:
    apply(cluster, ns, base_agent("status"))
    live = wait_children_match(cluster, ns, "status")
    for kind, name in live:
        extra = {"url": f"http://{name}.{ns}.example.com"} if kind == "Service" else {}
        set_ready(cluster, ns, kind, name, "True", **extra)
    status = wait_until(
        lambda: (s := agent_status(cluster, ns, "status")).get("phase") == "Ready" and s,
        timeout=30, what="Agent status to turn Ready",
    )  # fmt: skip
    assert status["skillsReady"] == "2/2"
    assert status["skills"][0] == {
        "name": "triage", "service": "status-triage", "ready": True, "minScale": 0,
        "url": f"http://status-triage.{ns}.example.com",
    }  # fmt: skip
    own = [(c["type"], c["status"]) for c in status["conditions"] if c["type"] in OWN]
    assert own == [("Ready", "True"), ("SkillsReady", "True"), ("TriggersReady", "True")]
    table = cluster.kubectl("get", "ag", "status", "-n", ns).stdout.splitlines()
    assert table[0].split() == ["NAME", "PHASE", "SKILLS", "WARM", "BUDGET", "AGE"]
    assert table[1].split()[:4] == ["status", "Ready", "2/2", "0"]
    set_ready(cluster, ns, "Service", "status-digest", "False")
    status = wait_until(
        lambda: (s := agent_status(cluster, ns, "status")).get("phase") == "Degraded" and s,
        timeout=30, what="Agent status to turn Degraded",
    )  # fmt: skip
    assert condition(status, "Ready")["reason"] == "RevisionMissing"
    assert (
        "status-digest: Configuration failed: image pull backoff"
        in condition(status, "SkillsReady")["message"]
    )
    assert cluster.kubectl("get", "ag", "status", "-n", ns).stdout.splitlines()[1].split()[1:3] == [
        "Degraded",
        "1/2",
    ]
    # -o wide adds the Ready condition's reason and its one-line message.
    wide = cluster.kubectl("get", "ag", "status", "-n", ns, "-o", "wide").stdout.splitlines()
    assert wide[0].split()[5:7] == ["REASON", "MESSAGE"]
    reason_at = wide[0].index("REASON")  # columns line up with the header
    assert wide[1][reason_at:].split()[0] == "RevisionMissing"
    message = condition(status, "Ready")["message"]
    assert message in wide[1] and "\n" not in message and len(message) <= 256


def test_semantic_problems_become_conditions(
    cluster: Any, ns: str, operator: OperatorProcess
) -> None:
    agent = base_agent("problems")
    agent["spec"]["broker"] = "missing"
    agent["spec"]["skills"][1]["schedule"]["cron"] = "61 * * * *"
    apply(cluster, ns, agent)
    status = wait_until(
        lambda: (s := agent_status(cluster, ns, "problems")).get("phase") == "Degraded" and s,
        timeout=30, what="Agent status to turn Degraded",
    )  # fmt: skip
    triggers = condition(status, "TriggersReady")
    assert triggers["status"] == "False"
    assert triggers["reason"] == "BrokerNotFound"
    assert "spec.broker: Broker 'missing' does not exist" in triggers["message"]
    assert (
        "spec.skills[digest].schedule.cron: '61 * * * *' is not a valid cron expression"
        in triggers["message"]
    )
    live = children_of(cluster, ns, "problems")
    assert ("Trigger", "problems-digest-cron") not in live  # nor the Trigger of its ticks
    assert ("PingSource", "problems-digest-cron") not in live and (
        "Service",
        "problems-digest",
    ) in live
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector",
                             "involvedObject.name=problems,type=Warning", "-o", "json").stdout  # fmt: skip
    assert {"BrokerNotFound", "InvalidSchedule"} <= {
        e["reason"] for e in json.loads(events)["items"]
    }
    # fixed spec: the problems go away; the operator stayed up throughout
    agent["spec"]["broker"] = "default"
    agent["spec"]["skills"][1]["schedule"]["cron"] = "1 * * * *"
    apply(cluster, ns, agent)
    wait_children_match(cluster, ns, "problems")
    wait_until(
        lambda: condition(agent_status(cluster, ns, "problems"), "TriggersReady").get("reason") != "BrokerNotFound",
        timeout=30, what="TriggersReady to drop BrokerNotFound",
    )  # fmt: skip
    assert operator.alive()


def test_a_taken_child_name_is_a_condition_not_a_takeover(
    cluster: Any, ns: str, operator: OperatorProcess
) -> None:
    squatter = {
        "apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "taken-triage", "namespace": ns},
        "spec": {"template": {"spec": {"containerConcurrency": 3,
                                       "containers": [{"image": "someone/else:1"}]}}},
    }  # fmt: skip
    cluster.kubectl("create", "-f", "-", input=json.dumps(squatter))
    apply(cluster, ns, base_agent("taken"))
    status = wait_until(
        lambda: (s := agent_status(cluster, ns, "taken")).get("phase") == "Degraded" and s,
        timeout=30, what="Agent status to turn Degraded",
    )  # fmt: skip
    skills = condition(status, "SkillsReady")
    assert skills["reason"] == "NameConflict"
    assert skills["message"].startswith("Service taken-triage: Apply failed with")
    ksvc = get_json(cluster, KINDS["Service"], "-n", ns, "taken-triage")
    assert ksvc["spec"]["template"]["spec"]["containers"][0]["image"] == "someone/else:1"
    assert "ownerReferences" not in ksvc["metadata"]
    assert ("Service", "taken-digest") in children_of(cluster, ns, "taken")  # the rest is made


def test_a_child_name_of_another_agent_is_a_condition_not_a_takeover(
    cluster: Any, ns: str, operator: OperatorProcess
) -> None:
    """Agent "clash-a" skill "b" and Agent "clash" skill "a-b" both want Service clash-a-b."""
    first = base_agent("clash-a")
    first["spec"]["skills"][0]["name"] = "b"
    apply(cluster, ns, first)
    wait_children_match(cluster, ns, "clash-a")
    second = base_agent("clash")
    second["spec"]["skills"][0]["name"] = "a-b"
    apply(cluster, ns, second)
    status = wait_until(
        lambda: (s := agent_status(cluster, ns, "clash")).get("phase") == "Degraded" and s,
        timeout=30, what="Agent clash to turn Degraded",
    )  # fmt: skip
    skills = condition(status, "SkillsReady")
    assert (skills["reason"], skills["message"]) == (
        "NameConflict", "Service clash-a-b belongs to Agent clash-a; rename a skill"
    )  # fmt: skip
    owner = get_json(cluster, "agents.rouse.dev", "-n", ns, "clash-a")["metadata"]["uid"]
    ksvc = get_json(cluster, KINDS["Service"], "-n", ns, "clash-a-b")
    assert ksvc["metadata"]["labels"]["rouse.dev/agent"] == "clash-a"
    assert [r["uid"] for r in ksvc["metadata"]["ownerReferences"]] == [owner]
    assert ("Service", "clash-digest") in children_of(cluster, ns, "clash")  # the rest is made
    wait_children_match(cluster, ns, "clash-a")  # and the first Agent keeps all of its own


def test_policy_decisions_in_status_reach_the_children(
    cluster: Any, ns: str, operator: OperatorProcess
) -> None:
    apply(cluster, ns, base_agent("policy"))
    wait_children_match(cluster, ns, "policy")
    revision = play_revision(cluster, ns, "policy-triage")
    ksvc = get_json(cluster, KINDS["Service"], "-n", ns, "policy-triage")
    status = {
        "warmPool": {"skills": [{"name": "triage", "minScale": 5, "reason": "cold starts 30%"}]}
    }
    cluster.kubectl("patch", "agents.rouse.dev", "policy", "-n", ns, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": status}))  # fmt: skip

    def min_scale() -> str | None:
        return revision_floor(cluster, ns, revision)

    wait_until(
        lambda: min_scale() == "2", timeout=30, what="min-scale 2 (5 clamped to warmPool.max)"
    )
    # The floor went onto the Revision: the Service (its template) is untouched, so Knative
    # would roll out nothing.
    after = get_json(cluster, KINDS["Service"], "-n", ns, "policy-triage")
    assert after["metadata"]["generation"] == ksvc["metadata"]["generation"]
    assert after["spec"]["template"] == ksvc["spec"]["template"]
    wait_until(
        lambda: agent_status(cluster, ns, "policy")["skills"][0].get("minScale") == 2,
        timeout=30,
        what="status.skills[triage].minScale 2 (the floor on its Revision)",
    )
    # A later rollout (Knative made Revision 2 from the template's scaling.min): the
    # reconciler puts the floor on the new Revision too.
    second = play_revision(cluster, ns, "policy-triage", number=2)  # made with min-scale 0
    wait_until(
        lambda: revision_floor(cluster, ns, second) == "2",
        timeout=30,
        what="the floor re-applied to the new Revision",
    )
    revision = second
    status = {"budget": {"exhausted": True, "used": "100%"}}
    cluster.kubectl("patch", "agents.rouse.dev", "policy", "-n", ns, "--subresource=status",
                    "--type=merge", "-p", json.dumps({"status": status}))  # fmt: skip

    def parked() -> bool:
        trigger = get_json(cluster, KINDS["Trigger"], "-n", ns, "policy-triage-0")
        return bool(
            trigger["spec"]["subscriber"].get("uri", "").endswith(f"/park/{ns}/policy/triage")
        )

    wait_until(parked, timeout=30, what="the Trigger to point at the parking sink")
    wait_until(lambda: min_scale() == "0", timeout=30, what="no warm floor while spent")
    wait_until(lambda: agent_status(cluster, ns, "policy").get("phase") == "Suspended", timeout=30,
               what="phase Suspended")  # fmt: skip
    assert (
        cluster.kubectl("get", "ag", "policy", "-n", ns).stdout.splitlines()[1].split()[4] == "100%"
    )


def test_deleting_the_agent_garbage_collects_children(
    cluster: Any, ns: str, operator: OperatorProcess
) -> None:
    before = tracked(operator)
    apply(cluster, ns, base_agent("doomed"))
    wait_children_match(cluster, ns, "doomed")
    grown = {store: count + 1 for store, count in before.items()}
    wait_until(lambda: tracked(operator) == grown, timeout=30, interval=0.2,
               what=f"per-Agent state {grown} with doomed reconciled")  # fmt: skip
    cluster.kubectl(
        "delete", "agents.rouse.dev", "doomed", "-n", ns, "--wait=true", "--timeout=30s"
    )
    wait_until(lambda: children_of(cluster, ns, "doomed") == {}, timeout=90, interval=0.5,
               what="the garbage collector to remove doomed's children")  # fmt: skip
    # its lock, cached children and known entry go too (they used to stay forever)
    wait_until(lambda: tracked(operator) == before, timeout=30, interval=0.2,
               what=f"per-Agent state back to {before} after the deletion")  # fmt: skip


def tracked(operator: OperatorProcess) -> dict[str, float]:
    """rouse_operator_tracked_agents{store}: Agents the operator keeps state for, per store."""
    _, body = operator.get("/metrics")
    prefix = 'rouse_operator_tracked_agents{store="'
    found = {
        line[len(prefix) :].split('"', 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(prefix)
    }
    assert set(found) == {"locks", "children", "known"}, body
    return found


def test_foreground_deletion_is_not_fought(
    cluster: Any, ns: str, operator: OperatorProcess
) -> None:
    """Children go first while the Agent waits: the operator must not put them back."""
    apply(cluster, ns, base_agent("foreground"))
    wait_children_match(cluster, ns, "foreground")
    created = created_count(operator)
    cluster.kubectl(
        "delete", "agents.rouse.dev", "foreground", "-n", ns, "--cascade=foreground", "--wait=false"
    )
    wait_until(
        lambda: get_json(cluster, "agents.rouse.dev", "-n", ns, "foreground") is None
        and children_of(cluster, ns, "foreground") == {},
        timeout=90, interval=0.5, what="foreground deletion of the Agent and its children",
    )  # fmt: skip
    assert created_count(operator) == created, "the operator re-created children being deleted"


def created_count(operator: OperatorProcess) -> float:
    """rouse_operator_child_writes_total{action="created"} summed over kinds."""
    _, body = operator.get("/metrics")
    lines = [
        line for line in body.splitlines() if line.startswith("rouse_operator_child_writes_total{")
    ]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if 'action="created"' in line)


def test_operator_metrics_and_health(cluster: Any, ns: str, operator: OperatorProcess) -> None:
    code, body = operator.get("/metrics")
    assert code == 200
    assert 'rouse_operator_reconciles_total{result="ok"}' in body
    assert "rouse_operator_reconcile_duration_seconds_bucket" in body
    assert 'rouse_operator_child_writes_total{action="created",kind="Service"}' in body
    assert operator.get("/healthz") == (200, "ok\n")
    assert operator.get("/nope")[0] == 404


def test_no_write_storm_when_idle(cluster: Any, ns: str, operator: OperatorProcess) -> None:
    """A settled Agent is not rewritten: its children's resourceVersions stay put."""
    apply(cluster, ns, base_agent("quiet"))
    before = wait_children_match(cluster, ns, "quiet")
    versions = {k: v["metadata"]["resourceVersion"] for k, v in before.items()}
    agent = copy.deepcopy(base_agent("quiet"))
    agent["metadata"]["labels"] = {
        "touched": "yes"
    }  # an update event that changes nothing Rouse builds
    apply(cluster, ns, agent)
    wait_until(
        lambda: "touched" in (get_json(cluster, "agents.rouse.dev", "-n", ns, "quiet").get("status", {})
                              .get("kopf", {}).get("last-handled-configuration", "")),
        timeout=30, what="the operator to handle the label change",
    )  # fmt: skip
    after = children_of(cluster, ns, "quiet")
    assert {k: v["metadata"]["resourceVersion"] for k, v in after.items()} == versions
    assert yaml.safe_dump(sorted(after)) == yaml.safe_dump(sorted(before))
