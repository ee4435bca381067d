"""The real node's configuration builders (hack/node/config.py): plain data, no root needed."""

from __future__ import annotations

import ipaddress
import tomllib
from pathlib import Path
from typing import Any

from rouse_testing.cluster import REPO_ROOT, load_module

config = load_module("rouse_node_config", REPO_ROOT / "hack" / "node" / "config.py")
NET = config.Network()
PATHS = config.Paths(Path("/cache/node"))


def test_addresses_are_consistent() -> None:
    services = ipaddress.ip_network(NET.service_cidr)
    pods = ipaddress.ip_network(NET.pod_cidr)
    assert ipaddress.ip_address(NET.kubernetes_service_ip) == services.network_address + 1
    assert ipaddress.ip_address(NET.dns_service_ip) in services
    assert ipaddress.ip_address(NET.bridge_ip) in pods
    assert ipaddress.ip_address(NET.node_ip) not in pods
    assert not services.overlaps(pods)
    assert NET.bridge_prefix == pods.prefixlen


def test_containerd_config_is_its_own_and_tolerates_the_vm() -> None:
    doc = tomllib.loads(config.containerd_config(PATHS))
    assert doc["root"] == "/cache/node/containerd"
    assert doc["state"] == "/cache/node/run/containerd-state"
    assert doc["grpc"]["address"] == "/cache/node/run/containerd/containerd.sock"
    cri = doc["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True
    assert cri["sandbox_image"] == config.PAUSE_IMAGE
    assert cri["cni"] == {"bin_dir": "/usr/lib/cni", "conf_dir": "/cache/node/data/cni"}
    runc = cri["containerd"]["runtimes"]["runc"]
    assert runc["options"]["SystemdCgroup"] is False


def test_cni_bridge_serves_the_pod_network() -> None:
    bridge, portmap = config.cni_config(NET)["plugins"]
    assert bridge["bridge"] == "cni0" and bridge["isGateway"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": NET.pod_cidr, "gateway": NET.bridge_ip}]]
    assert portmap["type"] == "portmap"


def test_kubelet_config() -> None:
    kubelet: dict[str, Any] = config.kubelet_config(NET, PATHS)
    assert kubelet["clusterDNS"] == [NET.dns_service_ip]
    assert kubelet["address"] == NET.node_ip
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["cgroupRoot"] == f"/{config.CGROUP_ROOT}"
    assert kubelet["failCgroupV1"] is False
    assert kubelet["authentication"]["anonymous"]["enabled"] is False
    assert kubelet["authorization"]["mode"] == "Webhook"
    assert kubelet["containerRuntimeEndpoint"] == f"unix://{PATHS.containerd_socket}"
    # Images are loaded, never pulled: nothing may garbage-collect them.
    assert kubelet["imageGCHighThresholdPercent"] == 100


def test_coredns_is_restricted_and_at_the_cluster_dns_address() -> None:
    docs = {d["kind"]: d for d in config.coredns_manifests(NET)}
    assert docs["Service"]["spec"]["clusterIP"] == NET.dns_service_ip
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == config.COREDNS_IMAGE
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert f"kubernetes {config.CLUSTER_DOMAIN}" in docs["ConfigMap"]["data"]["Corefile"]
    verbs = {v for rule in docs["ClusterRole"]["rules"] for v in rule["verbs"]}
    assert verbs == {"list", "watch"}


def test_image_aliases_name_what_the_chart_and_example_pull() -> None:
    """The node serves the kind path's public images under their own names; drift breaks deploy."""
    import yaml

    node = load_module("rouse_node", REPO_ROOT / "hack" / "node" / "node.py")
    values = yaml.safe_load((REPO_ROOT / "charts" / "rouse" / "values.yaml").read_text())
    redis = f"{values['redis']['image']['repository']}:{values['redis']['image']['tag']}"
    lib = (REPO_ROOT / "hack" / "kind" / "lib.sh").read_text()
    display = lib.split('EVENT_DISPLAY_IMAGE="${EVENT_DISPLAY_IMAGE:-', 1)[1].split("}", 1)[0]
    assert set(node.IMAGE_ALIASES) == {redis, f"{display}:latest"}
