"""Pure builders of the real node's configuration: addresses in, config text and manifests out.

hack/node/node.py does the I/O (namespaces, processes, files); everything here is plain data so
tests/unit/test_node_config.py can check it without root. Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

NODE_NAME = "rouse-node"
CLUSTER_DOMAIN = "cluster.local"
COREDNS_IMAGE = "dev.local/coredns:v1.15.0"
PAUSE_IMAGE = "dev.local/pause:3.10"
# The kubelet's cgroup root in every hierarchy: one name to sweep at node-down.
CGROUP_ROOT = "rouse-node"


@dataclass(frozen=True)
class Network:
    """Addresses inside the node's private network namespace (nothing here exists on the host)."""

    node_ip: str = "10.77.0.1"  # on lo as a /32: the kernel here has no dummy links
    pod_cidr: str = "10.78.0.0/24"
    bridge_ip: str = "10.78.0.1"  # cni0, the pods' gateway
    service_cidr: str = "10.96.0.0/16"
    kubernetes_service_ip: str = "10.96.0.1"  # first address of service_cidr
    dns_service_ip: str = "10.96.0.10"
    apiserver_port: int = 6443

    @property
    def bridge_prefix(self) -> int:
        return int(self.pod_cidr.split("/")[1])


@dataclass(frozen=True)
class Paths:
    """Where each component keeps its files; `data` is wiped at every node-up, `images` is kept."""

    cache: Path

    @property
    def data(self) -> Path:
        return self.cache / "data"

    @property
    def run(self) -> Path:
        return self.cache / "run"

    @property
    def logs(self) -> Path:
        return self.cache / "logs"

    @property
    def pki(self) -> Path:
        return self.data / "pki"

    @property
    def containerd_root(self) -> Path:
        # Kept across node-up runs so imported images survive (a warm bring-up loads none).
        return self.cache / "containerd"

    @property
    def containerd_state(self) -> Path:
        return self.run / "containerd-state"

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd" / "containerd.sock"

    @property
    def apiserver_socket(self) -> Path:
        # A unix socket crosses network namespaces: the host's relay reaches the API server through it.
        return self.run / "apiserver.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.data / "kubelet"

    @property
    def cni_conf_dir(self) -> Path:
        return self.data / "cni"

    @property
    def kubeconfig(self) -> Path:
        return self.cache / "kubeconfig"


def containerd_config(paths: Paths) -> str:
    """containerd 1.6 (config version 2): own root, state and socket; CRI with the bridge CNI.

    restrict_oom_score_adj: the VM lacks CAP_SYS_RESOURCE, so runc cannot set the negative
    oom_score_adj the kubelet asks for and every sandbox would fail.
    """
    return f"""version = 2
root = "{paths.containerd_root}"
state = "{paths.containerd_state}"

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{paths.cni_conf_dir}"
"""


def cni_config(net: Network) -> dict[str, Any]:
    """A bridge network on cni0 with host-local addresses and port mapping."""
    return {
        "cniVersion": "0.4.0",
        "name": "rouse-node",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.bridge_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(net: Network, paths: Paths) -> dict[str, Any]:
    """The kubelet's KubeletConfiguration for cgroup v1 with the cgroupfs driver on this VM."""
    pki = paths.pki
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": net.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [net.dns_service_ip],
        "resolvConf": str(paths.data / "resolv.conf"),
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(paths.data / "pod-logs"),
        "hairpinMode": "hairpin-veth",
        "serializeImagePulls": False,
        # Images are loaded, never pulled: nothing may garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "maxPods": 110,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
    }


def kube_proxy_config(net: Network, kubeconfig: Path) -> dict[str, Any]:
    """kube-proxy in iptables mode; conntrack sysctls left alone (not settable in the namespace)."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clusterCIDR": net.pod_cidr,
        "hostnameOverride": NODE_NAME,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "conntrack": {"maxPerCore": 0, "min": 0},
        "iptables": {"masqueradeAll": False},
    }


def corefile() -> str:
    """Cluster DNS only: no forwarders (the node has no network beyond itself)."""
    return f""".:53 {{
    errors
    health :8080
    ready :8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    loadbalance
}}
"""


def coredns_manifests(net: Network) -> list[dict[str, Any]]:
    """CoreDNS as a restricted Deployment behind the kube-dns Service at the cluster DNS address."""
    labels = {"k8s-app": "kube-dns"}
    ns = "kube-system"
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "coredns", "namespace": ns},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services", "namespaces", "pods"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "system:coredns"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "system:coredns",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": ns}],
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "coredns", "namespace": ns},
            "data": {"Corefile": corefile()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "coredns", "namespace": ns, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": "coredns",
                        "dnsPolicy": "Default",
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                            # Port 53 as non-root: a namespaced sysctl the restricted profile allows.
                            "sysctls": [
                                {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}
                            ],
                        },
                        "containers": [
                            {
                                "name": "coredns",
                                "image": COREDNS_IMAGE,
                                "imagePullPolicy": "IfNotPresent",
                                "args": ["-conf", "/etc/coredns/Corefile"],
                                "ports": [
                                    {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                    {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                ],
                                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181}},
                                "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                                "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}],
                            }
                        ],
                        "volumes": [{"name": "config", "configMap": {"name": "coredns"}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": ns, "labels": labels},
            "spec": {
                "selector": labels,
                "clusterIP": net.dns_service_ip,
                "ports": [
                    {"name": "dns", "port": 53, "targetPort": 53, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": 53, "targetPort": 53, "protocol": "TCP"},
                ],
            },
        },
    ]
