"""tests/knative-validate runs Knative's own SetDefaults + Validate: it must refuse what Knative refuses."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from rouse_testing.knative import knative_objects, knative_validate, run_knative_validate


def knative_service(concurrency: int) -> dict[str, Any]:
    return knative_objects("demo", concurrency=concurrency)[0]


_, TRIGGER, PING_SOURCE = knative_objects("demo")


def test_valid_service_trigger_and_ping_source_are_accepted() -> None:
    manifests = [knative_service(10), TRIGGER, PING_SOURCE]
    proc = run_knative_validate("\n---\n".join(json.dumps(m) for m in manifests))
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0,
        'valid: serving.knative.dev/v1 Service "demo/hello"\n'
        'valid: eventing.knative.dev/v1 Trigger "demo/hello-greeting"\n'
        'valid: sources.knative.dev/v1 PingSource "demo/hello-every-15m"\n',
        "",
    )
    knative_validate(manifests)  # the helper the builder tests use: no exception


def test_negative_container_concurrency_is_refused_with_knatives_message() -> None:
    with pytest.raises(AssertionError) as refused:
        knative_validate([TRIGGER, knative_service(-1)])
    assert str(refused.value) == (
        "Knative refuses a manifest:\n"
        'knative-validate: invalid: <stdin> document 2: serving.knative.dev/v1 Service "demo/hello": '
        "expected 0 <= -1 <= 1000: spec.template.spec.containerConcurrency"
    )


def test_bad_cron_schedule_is_refused() -> None:
    bad = copy.deepcopy(PING_SOURCE)
    bad["spec"]["schedule"] = "every quarter hour"
    proc = run_knative_validate(json.dumps(bad))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "knative-validate: invalid: <stdin> document 1: sources.knative.dev/v1 PingSource "
        '"demo/hello-every-15m": invalid value: expected 5 to 6 fields, found 3: '
        "[every quarter hour]: spec.schedule"
    )


def test_unknown_field_is_refused_like_knatives_webhook_does() -> None:
    bad = knative_service(0)
    bad["spec"]["template"]["spec"]["containerConcurency"] = 5  # typo
    with pytest.raises(AssertionError, match='unknown field "containerConcurency"'):
        knative_validate([bad])


def test_insecure_security_context_is_a_warning_not_an_error() -> None:
    svc = knative_service(0)
    del svc["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    proc = run_knative_validate(json.dumps(svc))
    assert proc.returncode == 0
    assert "warning" in proc.stderr and "Kubernetes default value is insecure" in proc.stderr


def test_kind_it_does_not_know_is_a_usage_error() -> None:
    proc = run_knative_validate(
        '{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}'
    )
    assert proc.returncode == 2
    assert "is not a kind knative-validate knows" in proc.stderr


def test_env_from_a_field_ref_is_refused_so_the_namespace_is_a_plain_value() -> None:
    """Knative refuses `fieldRef` in env unless `kubernetes.podspec-fieldref` is enabled: the
    operator gives a skill its namespace as a plain ROUSE_NAMESPACE value instead."""
    svc = copy.deepcopy(knative_service(10))
    (container,) = svc["spec"]["template"]["spec"]["containers"]
    ref = {"fieldRef": {"fieldPath": "metadata.namespace"}}
    container["env"] = [{"name": "ROUSE_NAMESPACE", "valueFrom": ref}]
    proc = run_knative_validate(json.dumps(svc))
    assert proc.returncode == 1
    assert (
        "must not set the field(s): spec.template.spec.containers[0].env[0].valueFrom.fieldRef"
        in (proc.stderr)
    )
