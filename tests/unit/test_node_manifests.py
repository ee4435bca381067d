"""hack/node/knative/assemble.py: Knative's upstream YAML adapted for the one-node cluster."""

from __future__ import annotations

import importlib.util
import re
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ASSEMBLE_PY = Path(__file__).resolve().parents[2] / "hack" / "node" / "knative" / "assemble.py"


def _load() -> ModuleType:
    """Import assemble.py (a script, not a package)."""
    name = "rouse_node_knative_assemble"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ASSEMBLE_PY)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


assemble = _load()
IMAGES = {"knative.dev/serving/cmd/queue": "dev.local/knative/queue:v1"}


def deployment(**container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "controller", "namespace": "knative-serving"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", **container}]}}},
    }


def configmap(name: str, data: dict[str, str] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "knative-serving"},
    }
    if data is not None:
        doc["data"] = data
    return doc


def test_image_refs_tag_each_binary_with_its_module_version() -> None:
    refs = assemble.image_refs(
        {"knative.dev/serving/cmd/queue": "queue", "knative.dev/eventing/cmd/mtping": "mtping"},
        {"knative.dev/serving": "v1", "knative.dev/eventing": "v2"},
    )
    assert refs == {
        "knative.dev/serving/cmd/queue": "dev.local/knative/queue:v1",
        "knative.dev/eventing/cmd/mtping": "dev.local/knative/mtping:v2",
    }
    with pytest.raises(assemble.AssembleError, match=r"knative.dev/other/cmd/x"):
        assemble.image_refs({"knative.dev/other/cmd/x": "x"}, {"knative.dev/serving": "v1"})


def test_resolve_images_replaces_ko_strings_anywhere_and_leaves_the_input_alone() -> None:
    env = [{"name": "QUEUE_IMAGE", "value": "ko://knative.dev/serving/cmd/queue"}]
    doc = deployment(image="ko://knative.dev/serving/cmd/queue", env=env, args=["ko-like"])
    resolved = assemble.resolve_images(doc, IMAGES)
    container = resolved["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "dev.local/knative/queue:v1"
    assert container["env"][0]["value"] == "dev.local/knative/queue:v1"
    assert container["args"] == ["ko-like"]
    assert doc["spec"]["template"]["spec"]["containers"][0]["image"].startswith("ko://")

    data = configmap(
        "config-deployment", {"queue-sidecar-image": "ko://knative.dev/serving/cmd/queue"}
    )
    assert (
        assemble.resolve_images(data, IMAGES)["data"]["queue-sidecar-image"]
        == IMAGES["knative.dev/serving/cmd/queue"]
    )


def test_resolve_images_names_the_object_using_an_unbuilt_binary() -> None:
    doc = deployment(image="ko://knative.dev/eventing/cmd/jobsink")
    with pytest.raises(
        assemble.AssembleError, match=r"Deployment knative-serving/controller .*cmd/jobsink"
    ):
        assemble.resolve_images(doc, IMAGES)


def test_adapt_pods_strips_resources_and_never_pulls() -> None:
    doc = deployment(image="x", resources={"requests": {"cpu": "100m"}}, imagePullPolicy="Always")
    doc["spec"]["template"]["spec"]["initContainers"] = [
        {"name": "init", "image": "y", "resources": {"limits": {"memory": "1Gi"}}}
    ]
    pod = assemble.adapt_pods(doc)["spec"]["template"]["spec"]
    for container in pod["containers"] + pod["initContainers"]:
        assert "resources" not in container
        assert container["imagePullPolicy"] == "IfNotPresent"
    assert doc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"


def test_adapt_pods_finds_cronjob_pods_and_ignores_other_kinds() -> None:
    cronjob = {
        "kind": "CronJob",
        "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c"}]}}}}},
    }
    adapted = assemble.adapt_pods(cronjob)
    pod = adapted["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    role = {"kind": "Role", "rules": [{"resources": ["pods"], "verbs": ["get"]}]}
    assert assemble.adapt_pods(role) == role


def test_adapt_drops_hpas_pdbs_and_empty_documents() -> None:
    docs = [
        None,
        {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "webhook"}},
        {"kind": "PodDisruptionBudget", "metadata": {"name": "webhook-pdb"}},
        deployment(image="ko://knative.dev/serving/cmd/queue"),
    ]
    adapted = assemble.adapt(docs, IMAGES)
    assert [d["kind"] for d in adapted] == ["Deployment"]
    assert adapted[0]["spec"]["template"]["spec"]["containers"][0] == {
        "name": "c",
        "image": "dev.local/knative/queue:v1",
        "imagePullPolicy": "IfNotPresent",
    }


def test_set_config_merges_keys_and_keeps_the_example() -> None:
    docs = [configmap("config-features", {"_example": "# docs"}), configmap("config-gc")]
    config = {
        ("knative-serving", "config-features"): {"secure-pod-defaults": "enabled"},
        ("knative-serving", "config-gc"): {"retain-since-create-time": "48h"},
    }
    features, gc = assemble.set_config(docs, config)
    assert features["data"] == {"_example": "# docs", "secure-pod-defaults": "enabled"}
    assert gc["data"] == {"retain-since-create-time": "48h"}
    assert "secure-pod-defaults" not in docs[0]["data"]


def test_set_config_names_a_missing_configmap() -> None:
    config = {("knative-serving", "config-network"): {"ingress-class": "x"}}
    with pytest.raises(assemble.AssembleError, match="knative-serving/config-network"):
        assemble.set_config([configmap("config-features")], config)


def test_node_config_targets_the_class_and_registries_the_node_uses() -> None:
    config = assemble.SERVING_CONFIG
    assert config[("knative-serving", "config-network")]["ingress-class"] == (
        "rouse.ingress.networking.knative.dev"
    )
    registries = config[("knative-serving", "config-deployment")][
        "registries-skipping-tag-resolving"
    ]
    assert assemble.REGISTRY.split("/")[0] in registries.split(",")
    # Serving makes every Route cluster-local under the default domain (svc.cluster.local):
    # a public front door needs a domain of its own
    domains = config[("knative-serving", "config-domain")]
    assert domains == {"rouse.test": ""}


def test_check_unique_rejects_one_object_twice_but_not_one_name_in_two_kinds() -> None:
    assemble.check_unique([configmap("webhook"), deployment(), {**deployment(), "kind": "Service"}])
    with pytest.raises(assemble.AssembleError, match="ConfigMap knative-serving/config-gc"):
        assemble.check_unique([configmap("config-gc"), configmap("config-gc")])


def test_split_crds_puts_namespaces_first_and_keeps_upstream_order() -> None:
    docs = [
        {"kind": "ClusterRole", "metadata": {"name": "a"}},
        {"kind": "CustomResourceDefinition", "metadata": {"name": "services.serving.knative.dev"}},
        {"kind": "ConfigMap", "metadata": {"name": "b"}},
        {"kind": "Namespace", "metadata": {"name": "knative-serving"}},
    ]
    crds, rest = assemble.split_crds(docs)
    assert [d["metadata"]["name"] for d in crds] == ["services.serving.knative.dev"]
    assert [d["metadata"]["name"] for d in rest] == ["knative-serving", "a", "b"]


def knative_checksum(example: str) -> str:
    """knative.dev/pkg/configmap.Checksum: the webhook rejects a ConfigMap whose _example changed."""
    text = re.sub(r"(?:\r?\n)+", r"\\n", example.strip())
    return f"{zlib.crc32(text.encode()):08x}"


@pytest.mark.parametrize(
    ("example", "literal"),
    [
        ('################\n# EXAMPLE    #\n\n    key: "value"\n  other: 1\n', True),
        ("# trailing spaces cannot be a literal block  \n  key: 1\n", False),
    ],
)
def test_manifest_round_trips_examples_exactly(example: str, literal: bool) -> None:
    doc = configmap("config-domain", {"_example": example, "svc.cluster.local": ""})
    text = assemble.manifest([doc, deployment(image="x")], "knative.dev/serving@v1 config/")
    assert text.startswith(
        "# Generated by hack/node/knative/assemble.py from knative.dev/serving@v1"
    )
    loaded = list(yaml.safe_load_all(text))
    assert loaded == [doc, deployment(image="x")]
    assert knative_checksum(loaded[0]["data"]["_example"]) == knative_checksum(example)
    assert ("_example: |" in text) is literal


def test_workloads_lists_deployments_that_must_become_available() -> None:
    scaled_down = deployment()
    scaled_down["metadata"] = {"name": "pingsource-mt-adapter", "namespace": "knative-eventing"}
    scaled_down["spec"]["replicas"] = 0
    docs = [deployment(), scaled_down, configmap("config-gc")]
    assert assemble.workloads(docs) == ["knative-serving/controller"]


def test_images_txt_has_one_ref_and_binary_per_line() -> None:
    binaries = {
        "knative.dev/serving/cmd/queue": "queue",
        "knative.dev/serving/cmd/activator": "activator",
    }
    images = assemble.image_refs(binaries, {"knative.dev/serving": "v1"})
    assert assemble.images_txt(images, binaries) == (
        "dev.local/knative/activator:v1 activator\ndev.local/knative/queue:v1 queue\n"
    )


def test_readme_gives_the_apply_order() -> None:
    text = assemble.readme(
        [("a-crds.yaml", "a.yaml"), ("b-crds.yaml", "b.yaml")], ["knative-serving/activator"]
    )
    assert "1. a-crds.yaml b-crds.yaml" in text
    assert "2. a.yaml b.yaml" in text
    assert "  knative-serving/activator" in text


def test_binaries_are_the_go_mod_tools_with_distinct_names() -> None:
    go_mod = (ASSEMBLE_PY.parent / "go.mod").read_text()
    block = re.search(r"^tool \((.*?)^\)", go_mod, re.MULTILINE | re.DOTALL)
    assert block is not None, "go.mod has no tool block"
    assert set(block.group(1).split()) == set(assemble.BINARIES)
    names = list(assemble.BINARIES.values())
    assert len(set(names)) == len(names)


def test_parse_go_json_reads_concatenated_objects() -> None:
    text = (
        '{\n\t"Path": "knative.dev/serving",\n\t"Version": "v1"\n}\n{"Path": "knative.dev/pkg"}\n'
    )
    assert assemble.parse_go_json(text) == [
        {"Path": "knative.dev/serving", "Version": "v1"},
        {"Path": "knative.dev/pkg"},
    ]
    assert assemble.parse_go_json(" \n") == []
