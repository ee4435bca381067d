"""Builders: whole-object expectations (one golden YAML per case), every manifest checked by
Knative's own SetDefaults + Validate (tests/knative-validate).

Regenerate the goldens after an intended change with `ROUSE_UPDATE_GOLDEN=1 pytest
tests/unit/test_builders.py`, then review the diff: it is the change users will see.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from rouse_operator.resources import children, service, trigger
from rouse_operator.resources.meta import CHILD_KINDS
from rouse_operator.resources.policy import PolicyInputs, policy_inputs
from rouse_operator.settings import SecretRef, Settings
from rouse_runtime import agentspec
from rouse_testing.agents import base_agent
from rouse_testing.knative import knative_validate, run_knative_validate

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
UID = "0b9c6a2e-5d0e-4c1f-9a57-6f1f0c7d1e11"
SETTINGS = Settings()

Agent = dict[str, Any]


def cluster_agent(obj: Agent, namespace: str = "team-a") -> Agent:
    """As the operator sees an Agent: validated and defaulted, with namespace and uid."""
    agent = agentspec.validate_agent(obj)
    agent["metadata"].update(namespace=namespace, uid=UID, generation=1)
    return agent


def example(name: str) -> Callable[[], Agent]:
    return lambda: yaml.safe_load((REPO / "examples" / name / "agent.yaml").read_text())


def _variant(change: Callable[[Agent], None]) -> Callable[[], Agent]:
    def make() -> Agent:
        agent = base_agent()
        change(agent)
        return agent

    return make


def _no_dead_letter(a: Agent) -> None:
    a["spec"]["skills"][0]["delivery"] = {"deadLetter": False, "retries": 0}


def _tuned(a: Agent) -> None:
    a["spec"]["broker"] = "agents"
    a["spec"]["env"] = [
        {"name": "ROUSE_LLM_MODEL", "value": "small"},
        {"name": "ROUSE_LLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm", "key": "key"}}},
    ]
    a["spec"]["skills"][0].update(
        concurrency=0,
        timeoutSeconds=600,
        scaling={"min": 1, "max": 20, "target": 5, "retention": "1m"},
        delivery={"retries": 5, "backoffPolicy": "linear", "backoffDelay": "PT0.5S"},
        resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        events=[
            {"type": "com.example.ticket.created"},
            {"type": "com.example.ticket.reopened", "source": "/helpdesk"},
        ],
    )


def _no_budget(a: Agent) -> None:
    del a["spec"]["budget"]
    del a["spec"]["warmPool"]


def _warm(a: Agent) -> None:  # the warm-pool policy asked for 4 (capped at warmPool.max=2)
    a["status"] = {"warmPool": {"skills": [{"name": "triage", "minScale": 4}]}}


def _parked(a: Agent) -> None:  # budget spent with onExhausted: park
    a["status"] = {
        "budget": {"exhausted": True},
        "warmPool": {"skills": [{"name": "triage", "minScale": 2}]},
    }


def _own_state_url(a: Agent) -> None:  # the Agent's own ROUSE_STATE_URL wins
    a["spec"]["env"] = [
        {
            "name": "ROUSE_STATE_URL",
            "valueFrom": {"secretKeyRef": {"name": "triage-state", "key": "redis-url"}},
        }
    ]


def _front_door_keys(a: Agent) -> None:  # callers' keys from a Secret, by reference
    a["spec"]["skills"].append(
        {
            "name": "ask",
            "handler": "support.skills:ask",
            "http": {"apiKeys": {"secretKeyRef": {"name": "ask-keys", "key": "keys"}}},
        }
    )


def _front_door_public(a: Agent) -> None:
    a["spec"]["skills"].append(
        {"name": "ask", "handler": "support.skills:ask", "http": {"public": True}}
    )


CASES: dict[str, Callable[[], Agent]] = {
    "hello": example("hello"),
    "support-triage": example("support-triage"),
    "tools": example("tools"),
    "base": base_agent,
    "no-dead-letter": _variant(_no_dead_letter),
    "tuned": _variant(_tuned),
    "no-budget-no-warm-pool": _variant(_no_budget),
    "warm-pool-decision": _variant(_warm),
    "parked": _variant(_parked),
    "state-secret": base_agent,
    "state-secret-own-env": _variant(_own_state_url),
    "front-door-keys": _variant(_front_door_keys),
    "front-door-public": _variant(_front_door_public),
}
STATE_SETTINGS = Settings(
    broker_ingress="http://ingress.example", parking_url="http://parking.example",
    state_url="redis://redis.rouse-system:6379/0",
)  # fmt: skip


# The operator names a Secret (in each Agent's namespace) instead of copying a plain URL.
SECRET_SETTINGS = Settings(
    state_url="redis://:s3cret@redis.rouse-system:6379/0",
    state_url_secret=SecretRef(name="rouse-state", key="url"),
)
CASE_SETTINGS = {
    "tuned": STATE_SETTINGS,
    "state-secret": SECRET_SETTINGS,
    "state-secret-own-env": SECRET_SETTINGS,
}


def build(case: str) -> list[dict[str, Any]]:
    settings = CASE_SETTINGS.get(case, SETTINGS)
    return children.desired(cluster_agent(CASES[case]()), settings)


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifests_match_golden(case: str) -> None:
    manifests = build(case)
    path = GOLDEN / f"{case}.yaml"
    if os.environ.get("ROUSE_UPDATE_GOLDEN") == "1":
        path.write_text(yaml.safe_dump_all(manifests, sort_keys=True))
    assert path.exists(), f"{path} missing: run with ROUSE_UPDATE_GOLDEN=1 and review it"
    assert manifests == list(yaml.safe_load_all(path.read_text()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_knative_accepts_every_manifest(case: str) -> None:
    knative_validate(build(case))


@pytest.mark.parametrize(
    "path", sorted(REPO.glob("examples/*/agent.yaml")), ids=lambda p: p.parent.name
)
def test_knative_accepts_every_example(path: Path) -> None:
    """Examples added later are checked too, before anyone writes their golden file."""
    knative_validate(children.desired(cluster_agent(yaml.safe_load(path.read_text())), SETTINGS))


def test_knative_validate_is_not_a_rubber_stamp() -> None:
    """The same check refuses a Service that sets a variable Knative reserves."""
    (ksvc, *_) = build("base")
    broken = copy.deepcopy(ksvc)
    broken["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "PORT", "value": "1"}
    )
    proc = run_knative_validate(json.dumps(broken))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "PORT" in proc.stderr


def test_base_service_whole_object() -> None:
    """One case spelled out in full, so the contract is readable here too."""
    agent = cluster_agent(base_agent())
    assert service.build(agent, agent["spec"]["skills"][0], SETTINGS) == {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {
            "name": "triage-bot-triage",
            "namespace": "team-a",
            "labels": {
                "app.kubernetes.io/managed-by": "rouse",
                "rouse.dev/agent": "triage-bot",
                "rouse.dev/skill": "triage",
                # reached only through the broker: no route through the ingress
                "networking.knative.dev/visibility": "cluster-local",
            },
            "ownerReferences": [
                {
                    "apiVersion": "rouse.dev/v1alpha1",
                    "kind": "Agent",
                    "name": "triage-bot",
                    "uid": UID,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "template": {
                "metadata": {
                    "labels": {
                        "app.kubernetes.io/managed-by": "rouse",
                        "rouse.dev/agent": "triage-bot",
                        "rouse.dev/skill": "triage",
                    },
                    "annotations": {
                        "autoscaling.knative.dev/min-scale": "0",
                        "autoscaling.knative.dev/max-scale": "5",
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "8080",
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    "containerConcurrency": 10,
                    "timeoutSeconds": 310,
                    "containers": [
                        {
                            "name": "skill",
                            "image": "registry.example/triage:1.0",
                            "ports": [{"name": "http1", "containerPort": 8080}],
                            "env": [
                                {"name": "ROUSE_HANDLER", "value": "support.skills:triage"},
                                {"name": "ROUSE_AGENT", "value": "triage-bot"},
                                {"name": "ROUSE_SKILL", "value": "triage"},
                                {"name": "ROUSE_REPLY_TYPE", "value": "com.example.ticket.triaged"},
                                {
                                    "name": "ROUSE_BROKER_URL",
                                    "value": "http://broker-ingress.knative-eventing.svc.cluster.local/team-a/default",
                                },
                                # skill pods mount no token: the namespace comes in env
                                {"name": "ROUSE_NAMESPACE", "value": "team-a"},
                                {"name": "ROUSE_MAX_STEPS", "value": "20"},
                                {"name": "ROUSE_TIMEOUT_SECONDS", "value": "300"},
                            ],
                            "readinessProbe": {"httpGet": {"path": "/readyz"}},
                            "securityContext": {
                                "runAsNonRoot": True,
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            }
        },
    }


def test_state_url_comes_by_reference_never_inline() -> None:
    """With a Secret named, no manifest carries the URL (nor its password); the Agent's own
    spec.env entry for ROUSE_STATE_URL replaces the operator's."""
    agent = cluster_agent(base_agent())
    skill = agent["spec"]["skills"][0]
    by_secret = {"secretKeyRef": {"name": "rouse-state", "key": "url"}}
    assert service.env(agent, skill, SECRET_SETTINGS)[-1] == {
        "name": "ROUSE_STATE_URL",
        "valueFrom": by_secret,
    }
    for case in ("state-secret", "state-secret-own-env"):
        assert "s3cret" not in json.dumps(build(case))
    (ksvc, *_) = build("state-secret-own-env")
    state = [
        e
        for e in ksvc["spec"]["template"]["spec"]["containers"][0]["env"]
        if e["name"] == "ROUSE_STATE_URL"
    ]
    assert state == [
        {
            "name": "ROUSE_STATE_URL",
            "valueFrom": {"secretKeyRef": {"name": "triage-state", "key": "redis-url"}},
        }
    ]
    plain = service.env(agent, skill, Settings(state_url="redis://r:6379/0"))[-1]
    assert plain == {"name": "ROUSE_STATE_URL", "value": "redis://r:6379/0"}
    assert all(e["name"] != "ROUSE_STATE_URL" for e in service.env(agent, skill, SETTINGS))


def test_tool_headers_come_by_reference_never_inline() -> None:
    """spec.tools[].headers reach the pod as secretKeyRef env; ROUSE_TOOLS names the variable."""
    agent = cluster_agent(example("tools")())
    env = {e["name"]: e for e in service.env(agent, agent["spec"]["skills"][1], SETTINGS)}
    assert env["ROUSE_TOOL_NOTES__AUTHORIZATION"] == {
        "name": "ROUSE_TOOL_NOTES__AUTHORIZATION",
        "valueFrom": {"secretKeyRef": {"name": "notes-token", "key": "authorization"}},
    }
    tools = json.loads(env["ROUSE_TOOLS"]["value"])
    assert tools == [
        {
            "name": "notes",
            "url": "http://127.0.0.1:8765/mcp",
            "allow": ["add_note", "search", "delete_note"],
            "approval": [],
            "timeoutSeconds": 10.0,
            "headers": {"Authorization": "ROUSE_TOOL_NOTES__AUTHORIZATION"},
        }
    ]
    assert "ROUSE_TOOLS" not in {
        e["name"]
        for e in service.env(
            cluster_agent(base_agent()), base_agent()["spec"]["skills"][0], SETTINGS
        )
    }


def test_every_child_has_labels_and_owner() -> None:
    for case in CASES:
        agent = cluster_agent(CASES[case]())
        for manifest in children.desired(agent, SETTINGS):
            assert manifest["kind"] in {k.kind for k in CHILD_KINDS}
            labels = manifest["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "rouse"
            assert labels["rouse.dev/agent"] == agent["metadata"]["name"]
            assert manifest["metadata"]["ownerReferences"][0]["uid"] == UID


def test_policy_inputs_clamp_and_park() -> None:
    agent = cluster_agent(CASES["warm-pool-decision"]())
    assert policy_inputs(agent) == PolicyInputs(min_scale={"triage": 2, "digest": 0})
    agent = cluster_agent(CASES["parked"]())
    assert policy_inputs(agent) == PolicyInputs(
        min_scale={"triage": 0, "digest": 0}, parked=True, exhausted=True
    )
    agent["spec"]["budget"]["onExhausted"] = "reject"
    assert policy_inputs(agent) == PolicyInputs(
        min_scale={"triage": 0, "digest": 0}, parked=False, exhausted=True
    )


def test_warm_pool_decision_leaves_the_service_alone() -> None:
    """A decision changes no Service: a new template would roll out a Revision."""
    (base_ksvc, *_) = build("base")
    (warm_ksvc, *_) = build("warm-pool-decision")
    assert warm_ksvc == base_ksvc
    assert policy_inputs(cluster_agent(CASES["warm-pool-decision"]())).min_scale["triage"] == 2


def test_skipped_schedule_leaves_out_the_pingsource_and_its_trigger() -> None:
    agent = cluster_agent(base_agent())
    kinds = [(m["kind"], m["metadata"]["name"]) for m in children.desired(agent, SETTINGS)]
    assert kinds == [
        ("Service", "triage-bot-triage"),
        ("Service", "triage-bot-digest"),
        ("Trigger", "triage-bot-triage-0"),
        ("Trigger", "triage-bot-digest-cron"),
        ("PingSource", "triage-bot-digest-cron"),
    ]
    skipped = children.desired(agent, SETTINGS, skip_schedules=frozenset({"digest"}))
    assert [(m["kind"], m["metadata"]["name"]) for m in skipped] == kinds[:3]


def test_a_schedule_ticks_into_the_broker_and_a_trigger_brings_it_to_the_skill() -> None:
    """The skill's reply to a tick re-enters the broker only if a Trigger delivered the tick: a
    PingSource drops what its sink answers. The Trigger takes this PingSource's ticks alone."""
    spec = base_agent()
    spec["spec"]["broker"] = "ops"
    agent = cluster_agent(spec)
    made = {(m["kind"], m["metadata"]["name"]): m for m in children.desired(agent, SETTINGS)}
    ping = made[("PingSource", "triage-bot-digest-cron")]["spec"]
    ticks = made[("Trigger", "triage-bot-digest-cron")]["spec"]
    assert ping["sink"] == {"ref": {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                                    "name": "ops"}}  # fmt: skip
    assert ticks["broker"] == "ops"
    assert ticks["filter"] == {
        "attributes": {
            "type": "dev.knative.sources.ping",
            "source": "/apis/v1/namespaces/team-a/pingsources/triage-bot-digest-cron",
        }
    }
    assert ticks["subscriber"] == {
        "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "triage-bot-digest"}
    }  # fmt: skip
    # the skill's own delivery spec: retried, then dead-lettered like its events
    digest = next(s for s in agent["spec"]["skills"] if s["name"] == "digest")
    assert ticks["delivery"] == trigger.delivery(agent, digest, SETTINGS)
    assert "deadLetterSink" in ticks["delivery"]
    # parked: the ticks go to the parking sink; the PingSource still ticks into the broker
    parked = children.desired(agent, SETTINGS, PolicyInputs(min_scale={}, parked=True))
    by_name = {(m["kind"], m["metadata"]["name"]): m["spec"] for m in parked}
    assert by_name[("PingSource", "triage-bot-digest-cron")]["sink"] == ping["sink"]
    assert by_name[("Trigger", "triage-bot-digest-cron")]["subscriber"] == {
        "uri": SETTINGS.parking_sink_url("team-a", "triage-bot", "digest")
    }


def test_only_a_front_door_is_routed_through_the_ingress() -> None:
    """Every event skill's Service is cluster-local; the front door is public, says how callers
    authenticate, and gets its keys by reference to the Secret (never a value)."""
    for case in ("front-door-keys", "front-door-public"):
        services = {m["metadata"]["name"]: m for m in build(case) if m["kind"] == "Service"}
        assert sorted(services) == ["triage-bot-ask", "triage-bot-digest", "triage-bot-triage"]
        for name, ksvc in services.items():
            visibility = ksvc["metadata"]["labels"].get("networking.knative.dev/visibility")
            assert visibility == (None if name == "triage-bot-ask" else "cluster-local"), name
            env = ksvc["spec"]["template"]["spec"]["containers"][0]["env"]
            front = {
                e["name"]: e for e in env if e["name"] in ("ROUSE_FRONT_DOOR", "ROUSE_API_KEYS")
            }
            if name != "triage-bot-ask":
                assert front == {}, name
            elif case == "front-door-keys":
                assert front == {
                    "ROUSE_FRONT_DOOR": {"name": "ROUSE_FRONT_DOOR", "value": "keys"},
                    "ROUSE_API_KEYS": {
                        "name": "ROUSE_API_KEYS",
                        "valueFrom": {"secretKeyRef": {"name": "ask-keys", "key": "keys"}},
                    },
                }
            else:
                assert front == {
                    "ROUSE_FRONT_DOOR": {"name": "ROUSE_FRONT_DOOR", "value": "public"}
                }
        # a front door has no Trigger and no PingSource: nothing routes events to it
        assert not [
            m
            for m in build(case)
            if m["metadata"]["labels"]["rouse.dev/skill"] == "ask" and m["kind"] != "Service"
        ]
