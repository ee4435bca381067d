"""agentspec: validation and defaulting from crds/agent.yaml, names, env, packaging."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from rouse_runtime import agentspec
from rouse_testing.agents import INVALID, Invalid, base_agent

REPO = Path(__file__).resolve().parents[2]
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def test_base_agent_is_defaulted_as_the_api_server_would() -> None:
    agent = base_agent()
    defaulted = agentspec.validate_agent(agent)
    assert agent == base_agent(), "validate_agent must not mutate its argument"
    expected = base_agent()
    expected["spec"]["broker"] = "default"
    triage, digest = expected["spec"]["skills"]
    common = {
        "concurrency": 10,
        "timeoutSeconds": 300,
        "delivery": {
            "retries": 3,
            "backoffPolicy": "exponential",
            "backoffDelay": "PT1S",
            "deadLetter": True,
        },
    }
    triage.update(copy.deepcopy(common))
    digest.update(copy.deepcopy(common), scaling={"min": 0, "max": 10})
    expected["spec"]["warmPool"] = {"max": 2, "coldStartTarget": 0.05, "window": "15m"}
    assert defaulted == expected


def test_hello_example_loads_with_defaults() -> None:
    agent = agentspec.load_agent_file(REPO / "examples" / "hello" / "agent.yaml")
    assert agent == {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": "hello"},
        "spec": {
            "image": "ghcr.io/rouse-dev/examples-hello:0.1.0",
            "broker": "default",
            "skills": [
                {
                    "name": "greet",
                    "handler": "hello.skills:greet",
                    "events": [{"type": "dev.rouse.hello"}],
                    "reply": {"type": "dev.rouse.hello.greeted"},
                    "scaling": {"min": 0, "max": 2, "retention": "10s"},
                    "concurrency": 10,
                    "timeoutSeconds": 300,
                    "delivery": {
                        "retries": 3,
                        "backoffPolicy": "exponential",
                        "backoffDelay": "PT1S",
                        "deadLetter": True,
                    },
                }
            ],
        },
    }


@pytest.mark.parametrize("path", sorted(REPO.glob("examples/*/agent.yaml")), ids=str)
def test_every_example_is_valid(path: Path) -> None:
    agent = agentspec.load_agent_file(path)
    assert agent["spec"]["skills"], path


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_agents_are_refused_naming_the_field(case: Invalid) -> None:
    with pytest.raises(agentspec.AgentInvalid) as caught:
        agentspec.validate_agent(case.agent())
    errors = caught.value.errors
    assert errors, "AgentInvalid without messages"
    named = [e for e in errors if e.startswith(f"{case.field}:") or f'"{case.field}"' in e]
    if case.field == "metadata.name":  # a rule on the whole object: the message names the field
        named = [e for e in errors if "metadata.name must" in e]
    assert named, f"no error names {case.field}: {errors}"
    assert case.field in str(caught.value)


def test_messages_have_the_api_server_shape() -> None:
    cases = {c.id: c for c in INVALID}
    expectations = {
        "image-missing": ["spec.image: Required value"],
        "unknown-spec-field": ['unknown field "spec.replicas"'],
        "scaling-min-above-max": [
            "spec.skills[0].scaling: Invalid value: "
            "spec.skills[].scaling.min must be less than or equal to scaling.max"
        ],
        "backoff-policy-unknown": [
            'spec.skills[0].delivery.backoffPolicy: Unsupported value: "random": '
            'supported values: "exponential", "linear"'
        ],
        "timeout-above-knative-max": [
            "spec.skills[0].timeoutSeconds: Invalid value: 601: "
            "spec.skills[0].timeoutSeconds in body should be less than or equal to 600"
        ],
    }
    for case_id, expected in expectations.items():
        with pytest.raises(agentspec.AgentInvalid) as caught:
            agentspec.validate_agent(cases[case_id].agent())
        assert caught.value.errors == expected, case_id


def test_not_an_agent() -> None:
    with pytest.raises(agentspec.AgentInvalid) as caught:
        agentspec.validate_agent({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
    assert caught.value.errors == [
        "apiVersion: Unsupported value: 'v1': supported values: \"rouse.dev/v1alpha1\"",
        "kind: Unsupported value: 'ConfigMap': supported values: \"Agent\"",
        "metadata.name: Required value: name is required",
    ]
    with pytest.raises(agentspec.AgentInvalid):
        agentspec.validate_agent(["not", "a", "mapping"])


def test_load_agent_file_wants_one_document(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump_all([base_agent("a"), base_agent("b")]))
    with pytest.raises(agentspec.AgentInvalid, match="exactly one YAML document, found 2"):
        agentspec.load_agent_file(path)
    path.write_text(yaml.safe_dump(base_agent()))
    assert agentspec.load_agent_file(path)["metadata"]["name"] == "triage-bot"


def test_child_names_fit_at_the_limit_and_the_limit_is_enforced() -> None:
    agent_name, skill_name = "a" * 40, "b" * 17  # "<agent>-<skill>" = 58, the documented limit
    agent = base_agent(agent_name)
    agent["spec"]["skills"][0]["name"] = skill_name
    agentspec.validate_agent(agent)
    names = [
        agentspec.service_name(agent_name, skill_name),
        agentspec.trigger_name(agent_name, skill_name, agentspec.MAX_EVENTS_PER_SKILL - 1),
        agentspec.pingsource_name(agent_name, skill_name),
    ]
    assert names == [
        f"{agent_name}-{skill_name}",
        f"{agent_name}-{skill_name}-9",
        f"{agent_name}-{skill_name}-cron",
    ]
    assert all(len(n) <= 63 and DNS_1035.match(n) for n in names), names
    agent["spec"]["skills"][0]["name"] = skill_name + "b"
    with pytest.raises(agentspec.AgentInvalid, match="at most 58 characters"):
        agentspec.validate_agent(agent)


def test_skill_env_contract() -> None:
    agent = agentspec.validate_agent(base_agent())
    triage = agent["spec"]["skills"][0]
    assert agentspec.skill_env(agent, triage, "http://broker/ns/default") == {
        "ROUSE_HANDLER": "support.skills:triage",
        "ROUSE_AGENT": "triage-bot",
        "ROUSE_SKILL": "triage",
        "ROUSE_REPLY_TYPE": "com.example.ticket.triaged",
        "ROUSE_BROKER_URL": "http://broker/ns/default",
        "ROUSE_MAX_STEPS": "20",
        "ROUSE_TIMEOUT_SECONDS": "300",
    }


def test_every_name_the_launcher_sets_is_refused_in_spec_env() -> None:
    """The CRD's list of reserved env names keeps up with skill_env: a skill with every
    feature (join with a deadline, compensate, tools, budget limits) gets no env name that
    spec.env could also set."""
    agent = base_agent()
    triage = agent["spec"]["skills"][0]
    triage.update(join={"deadline": "2m"}, compensate={"type": "com.example.undo"})
    triage["timeoutSeconds"] = 30
    agent["spec"]["budget"]["perInvocation"] = {"maxSteps": 5, "maxToolCalls": 3, "maxTokens": 9}
    agent["spec"]["tools"] = [{"name": "notes", "url": "http://notes/mcp"}]
    agent.setdefault("metadata", {})["namespace"] = "team-a"
    defaulted = agentspec.validate_agent(agent)
    names = set(agentspec.skill_env(defaulted, defaulted["spec"]["skills"][0], "http://b/ns/b"))
    assert {"ROUSE_JOIN", "ROUSE_JOIN_DEADLINE", "ROUSE_COMPENSATE_TYPE", "ROUSE_TOOLS"} <= names
    for name in sorted(names):
        spoofed = copy.deepcopy(agent)
        spoofed["spec"]["env"] = [{"name": name, "value": "x"}]
        with pytest.raises(agentspec.AgentInvalid, match=r"spec\.env"):
            agentspec.validate_agent(spoofed)


def test_crd_is_found_in_the_source_tree() -> None:
    assert agentspec.crd_path() == REPO / "crds" / "agent.yaml"


def test_crd_ships_inside_the_wheel(tmp_path: Path) -> None:
    """A wheel carries the CRD, and agentspec finds it there rather than in the repo."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         str(REPO / "runtime"), "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("rouse_runtime-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("rouse_runtime/crds/agent.yaml")
        archive.extractall(tmp_path / "site")
    assert shipped == (REPO / "crds" / "agent.yaml").read_bytes()
    probe = (
        "from rouse_runtime import agentspec; import rouse_testing.agents as a;"
        "print(agentspec.crd_path()); agentspec.validate_agent(a.base_agent())"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": f"{tmp_path / 'site'}:{REPO / 'tests'}", "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(tmp_path / "site" / "rouse_runtime" / "crds" / "agent.yaml")
