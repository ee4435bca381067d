"""Agents for tests: a valid base and the table of invalid ones.

The invalid table is shared by the API-server test (kubectl apply refuses each one)
and the offline validator test (agentspec.validate_agent refuses each one), so both
are held to the same cases and the same field names.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Agent = dict[str, Any]


def base_agent(name: str = "triage-bot") -> Agent:
    """A small valid Agent with two skills (one scheduled), warm pool and budget."""
    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example/triage:1.0",
            "skills": [
                {
                    "name": "triage",
                    "handler": "support.skills:triage",
                    "events": [{"type": "com.example.ticket.created"}],
                    "reply": {"type": "com.example.ticket.triaged"},
                    "scaling": {"min": 0, "max": 5},
                },
                {
                    "name": "digest",
                    "handler": "support.skills:digest",
                    "schedule": {"cron": "*/15 * * * *", "data": {"window": "15m"}},
                },
            ],
            "warmPool": {"max": 2},
            "budget": {"perInvocation": {"maxSteps": 20}, "onExhausted": "park"},
        },
    }


@dataclass(frozen=True)
class Invalid:
    """One invalid Agent: how to break the base, and the field the refusal must name."""

    id: str
    mutate: Callable[[Agent], None]
    field: str  # the field path every refusal must name

    def agent(self, name: str = "triage-bot") -> Agent:
        obj = base_agent(name)
        self.mutate(obj)
        return obj


def _skill(obj: Agent, index: int = 0) -> dict[str, Any]:
    skill: dict[str, Any] = obj["spec"]["skills"][index]
    return skill


def _set(path: list[str | int], value: Any) -> Callable[[Agent], None]:
    def mutate(obj: Agent) -> None:
        node: Any = obj
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value

    return mutate


def _duplicate_skill(obj: Agent) -> None:
    obj["spec"]["skills"].append(copy.deepcopy(_skill(obj)))


def _long_names(obj: Agent) -> None:
    obj["metadata"]["name"] = "a" * 40
    _skill(obj)["name"] = "b" * 18  # 40 + 1 + 18 = 59 > 58


def _front_door(http: dict[str, Any], **extra: Any) -> Callable[[Agent], None]:
    """Add a third skill, a front door with this `http` block (and `extra` fields)."""

    def mutate(obj: Agent) -> None:
        obj["spec"]["skills"].append(
            {"name": "ask", "handler": "support.skills:ask", "http": http, **extra}
        )

    return mutate


KEYS = {"apiKeys": {"secretKeyRef": {"name": "ask-keys", "key": "keys"}}}


def _drop_image(obj: Agent) -> None:
    del obj["spec"]["image"]


def tool_server(**changes: Any) -> dict[str, Any]:
    """A valid spec.tools entry (an MCP server), with changes."""
    server: dict[str, Any] = {
        "name": "files",
        "url": "http://files.tools.svc.cluster.local/mcp",
        "headers": [{"name": "Authorization", "secretKeyRef": {"name": "files", "key": "token"}}],
        "allow": ["read", "delete"],
        "approval": ["delete"],
    }
    server.update(changes)
    return server


INVALID: list[Invalid] = [
    Invalid("duplicate-skill-names", _duplicate_skill, "spec.skills"),
    Invalid(
        "scaling-min-above-max",
        _set(["spec", "skills", 0, "scaling"], {"min": 6, "max": 5}),
        "spec.skills[0].scaling",
    ),
    Invalid(
        "handler-not-module-function",
        _set(["spec", "skills", 0, "handler"], "support.skills.triage"),
        "spec.skills[0].handler",
    ),
    Invalid(
        "skill-name-not-dns-label",
        _set(["spec", "skills", 0, "name"], "Triage_1"),
        "spec.skills[0].name",
    ),
    Invalid("agent-name-not-dns-1035", _set(["metadata", "name"], "triage.bot"), "metadata.name"),
    Invalid("generated-names-too-long", _long_names, "spec.skills"),
    Invalid(
        "unknown-skill-field", _set(["spec", "skills", 0, "retries"], 3), "spec.skills[0].retries"
    ),
    Invalid("unknown-spec-field", _set(["spec", "replicas"], 2), "spec.replicas"),
    Invalid("image-missing", _drop_image, "spec.image"),
    Invalid(
        "warm-pool-above-scaling-max", _set(["spec", "warmPool", "max"], 6), "spec.warmPool.max"
    ),
    Invalid(
        "concurrency-negative",
        _set(["spec", "skills", 0, "concurrency"], -1),
        "spec.skills[0].concurrency",
    ),
    Invalid(
        "timeout-above-knative-max",
        _set(["spec", "skills", 0, "timeoutSeconds"], 601),
        "spec.skills[0].timeoutSeconds",
    ),
    Invalid(
        "backoff-policy-unknown",
        _set(["spec", "skills", 0, "delivery"], {"backoffPolicy": "random"}),
        "spec.skills[0].delivery.backoffPolicy",
    ),
    Invalid(
        "backoff-delay-not-iso8601",
        _set(["spec", "skills", 0, "delivery"], {"backoffDelay": "1s"}),
        "spec.skills[0].delivery.backoffDelay",
    ),
    Invalid(
        "env-reserved-name", _set(["spec", "env"], [{"name": "PORT", "value": "9090"}]), "spec.env"
    ),
    Invalid(  # a skill's store keys and ledger lines are its namespace's: not the user's choice
        "env-namespace-spoofed",
        _set(["spec", "env"], [{"name": "ROUSE_NAMESPACE", "value": "other-team"}]),
        "spec.env",
    ),
    Invalid(
        "event-attribute-not-cloudevents",
        _set(["spec", "skills", 0, "events"], [{"Type": "x"}]),
        "spec.skills[0].events[0]",
    ),
    Invalid(
        "skill-wakes-itself",
        _set(["spec", "skills", 0, "events"], [{"type": "com.example.ticket.triaged"}]),
        "spec.skills[0].events",
    ),
    Invalid("no-skills", _set(["spec", "skills"], []), "spec.skills"),
    Invalid(
        "warm-schedule-above-max",
        _set(
            ["spec", "warmPool", "schedules"], [{"cron": "0 8 * * *", "duration": "1h", "min": 3}]
        ),
        "spec.warmPool.schedules",
    ),
    Invalid(
        "on-exhausted-unknown",
        _set(["spec", "budget", "onExhausted"], "drop"),
        "spec.budget.onExhausted",
    ),
    Invalid(
        "env-value-and-value-from",
        _set(
            ["spec", "env"],
            [
                {
                    "name": "KEY",
                    "value": "x",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
                }
            ],
        ),
        "spec.env[0]",
    ),
    Invalid(
        "tools-duplicate-server",
        _set(["spec", "tools"], [tool_server(), tool_server(url="http://other/mcp")]),
        "spec.tools",
    ),
    Invalid(
        "tools-approval-outside-allow",
        _set(["spec", "tools"], [tool_server(approval=["drop_all"])]),
        "spec.tools[0].approval",
    ),
    Invalid(
        "tools-url-not-http",
        _set(["spec", "tools"], [tool_server(url="files.tools:80")]),
        "spec.tools[0].url",
    ),
    Invalid(  # secrets by reference only: an inline header value is not a field
        "tools-header-inline-value",
        _set(["spec", "tools"], [tool_server(headers=[{"name": "X-Key", "value": "k"}])]),
        "spec.tools[0].headers[0].value",
    ),
    Invalid(
        "tools-header-twice",
        _set(
            ["spec", "tools"],
            [
                tool_server(
                    headers=[
                        {"name": "X-Key", "secretKeyRef": {"name": "a", "key": "k"}},
                        {"name": "x-key", "secretKeyRef": {"name": "b", "key": "k"}},
                    ]
                )
            ],
        ),
        "spec.tools[0].headers",
    ),
    Invalid(  # the header variables are the operator's, filled from the Secret
        "env-tool-header-spoofed",
        _set(["spec", "env"], [{"name": "ROUSE_TOOL_FILES__AUTHORIZATION", "value": "x"}]),
        "spec.env",
    ),
    Invalid(
        "scaling-max-wrong-type",
        _set(["spec", "skills", 0, "scaling"], {"max": "ten"}),
        "spec.skills[0].scaling.max",
    ),
    Invalid(
        "join-without-events",
        _set(["spec", "skills", 1, "join"], {}),
        "spec.skills[1].join",
    ),
    Invalid(
        "join-deadline-not-a-duration",
        _set(["spec", "skills", 0, "join"], {"deadline": "soon"}),
        "spec.skills[0].join.deadline",
    ),
    Invalid(
        "compensate-without-type",
        _set(["spec", "skills", 0, "compensate"], {}),
        "spec.skills[0].compensate.type",
    ),
    # A front door must say how callers authenticate: keys by reference, or public: true.
    Invalid("front-door-neither-keys-nor-public", _front_door({}), "spec.skills[2].http"),
    Invalid("front-door-public-false", _front_door({"public": False}), "spec.skills[2].http"),
    Invalid(
        "front-door-keys-and-public", _front_door({**KEYS, "public": True}), "spec.skills[2].http"
    ),
    Invalid(  # the keys by reference only: no literal key in the Agent
        "front-door-keys-inline",
        _front_door({"apiKeys": {"value": "k-123"}}),
        "spec.skills[2].http.apiKeys.value",
    ),
    Invalid(  # reachable from outside: an event endpoint there would bypass the broker
        "front-door-with-events",
        _front_door({"public": True}, events=[{"type": "com.example.question"}]),
        "spec.skills[2].http",
    ),
    Invalid(
        "env-api-keys-reserved",
        _set(["spec", "env"], [{"name": "ROUSE_API_KEYS", "value": "k-123"}]),
        "spec.env",
    ),
    *(
        Invalid(  # set from spec.skills[].join / compensate: a user value would lie about them
            f"env-{name.lower().replace('_', '-')}-reserved",
            _set(["spec", "env"], [{"name": name, "value": "true"}]),
            "spec.env",
        )
        for name in ("ROUSE_JOIN", "ROUSE_JOIN_DEADLINE", "ROUSE_COMPENSATE_TYPE")
    ),
]
