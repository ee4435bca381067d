"""crds/agent.yaml: the shape kubectl and the API server rely on, checked offline.

The API server's own verdict (the CRD installs, bad Agents are refused) is in
tests/integration/test_agent_validation.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import yaml
from rouse_runtime import structural

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "agent.yaml"
CRD: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
VERSION = CRD["spec"]["versions"][0]
SCHEMA: dict[str, Any] = VERSION["schema"]["openAPIV3Schema"]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (spec.skills[].name, ...{} for map values)."""
    yield path, schema
    for key, child in (schema.get("properties") or {}).items():
        yield from nodes(child, f"{path}.{key}" if path else key)
    if isinstance(schema.get("items"), dict):
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


def test_identity_scope_and_names() -> None:
    assert CRD["metadata"]["name"] == "agents.rouse.dev"
    assert CRD["spec"]["group"] == "rouse.dev"
    assert CRD["spec"]["scope"] == "Namespaced"
    assert CRD["spec"]["names"] == {
        "kind": "Agent",
        "listKind": "AgentList",
        "plural": "agents",
        "singular": "agent",
        "shortNames": ["ag"],
        "categories": ["rouse"],
    }
    assert [v["name"] for v in CRD["spec"]["versions"]] == ["v1alpha1"]
    assert VERSION["served"] is True and VERSION["storage"] is True
    assert VERSION["subresources"] == {"status": {}}


def test_printer_columns() -> None:
    columns = [(c["name"], c["type"], c["jsonPath"]) for c in VERSION["additionalPrinterColumns"]]
    assert columns == [
        ("Phase", "string", ".status.phase"),
        ("Skills", "string", ".status.skillsReady"),
        ("Warm", "integer", ".status.warm"),
        ("Budget", "string", ".status.budget.used"),
        ("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason'),
        ("Message", "string", '.status.conditions[?(@.type=="Ready")].message'),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    # The condition's reason and message only in `kubectl get -o wide`.
    wide = [c["name"] for c in VERSION["additionalPrinterColumns"] if c.get("priority") == 1]
    assert wide == ["Reason", "Message"]


def test_every_field_has_a_description_and_a_type() -> None:
    missing = [p for p, n in nodes(SCHEMA) if p != "metadata" and not n.get("description")]
    assert missing == [], f"fields without description (kubectl explain shows nothing): {missing}"
    untyped = [
        p for p, n in nodes(SCHEMA) if "type" not in n and not n.get("x-kubernetes-int-or-string")
    ]
    assert untyped == [], f"non-structural nodes: {untyped}"


def test_spec_strings_and_lists_are_bounded() -> None:
    """CEL cost estimation and etcd size need bounds on everything a user writes."""
    spec = SCHEMA["properties"]["spec"]
    unbounded = [
        p
        for p, n in nodes(spec, "spec")
        if (n.get("type") == "string" and "maxLength" not in n and "enum" not in n)
        or (n.get("type") == "array" and "maxItems" not in n)
    ]
    assert unbounded == []


def test_patterns_are_re2_compatible_and_compile() -> None:
    for path, node in nodes(SCHEMA):
        pattern = node.get("pattern")
        if pattern is None:
            continue
        assert "(?" not in pattern and "\\d" not in pattern and "\\w" not in pattern, path
        re.compile(pattern)


def test_defaults_satisfy_their_own_schema_and_rules() -> None:
    """As the API server checks a CRD: each default as written (no nested defaulting), CEL too."""
    checked = 0
    for path, node in nodes(SCHEMA):
        if "default" in node:
            default = node["default"]
            assert structural.schema_errors(default, node) == [], path
            assert structural.cel_errors(default, node) == [], path
            checked += 1
    assert checked >= 10


def test_cel_rules_compile_and_messages_name_a_field() -> None:
    env = celpy.Environment()
    rules = [(p, r) for p, n in nodes(SCHEMA) for r in n.get("x-kubernetes-validations", [])]
    assert len(rules) >= 10
    for path, rule in rules:
        env.program(env.compile(rule["rule"]))
        assert re.match(r"^(spec|metadata)\.", rule["message"]), (path, rule["message"])


def test_kopf_bookkeeping_in_status_is_one_typed_field() -> None:
    """kopf's last-handled configuration rides in the status apply (rouse_operator.bookkeeping);
    its progress stays in annotations, and status stays strict: one string, nothing open."""
    status = SCHEMA["properties"]["status"]
    kopf = status["properties"]["kopf"]
    assert list(kopf["properties"]) == ["last-handled-configuration"]
    assert kopf["properties"]["last-handled-configuration"]["type"] == "string"
    assert not status.get("x-kubernetes-preserve-unknown-fields")
    assert not kopf.get("x-kubernetes-preserve-unknown-fields")


def test_skill_name_and_handler_patterns() -> None:
    skill = SCHEMA["properties"]["spec"]["properties"]["skills"]["items"]["properties"]
    name, handler = re.compile(skill["name"]["pattern"]), re.compile(skill["handler"]["pattern"])
    assert [bool(name.match(s)) for s in ["triage", "a", "a-1", "1a", "a-", "A", "a_b"]] == [
        True, True, True, False, False, False, False,
    ]  # fmt: skip
    assert [bool(handler.match(s)) for s in ["m:f", "a.b_c:f_1", "_m:_f", "m.f", "1m:f", "m:f.g", "m:1"]] == [
        True, True, True, False, False, False, False,
    ]  # fmt: skip
