"""A one-node Kubernetes from real parts, with real Knative, in private namespaces.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, containerd +
runc and the CNI bridge run inside a private network + mount namespace (`unshare`), so no route,
iptables rule or mount reaches the host; CoreDNS and Knative run as pods. The host reaches the API
server through a relay: socat on 127.0.0.1 -> a unix socket -> socat inside the namespace.

One code path for `make node-up` / `make node-down` and the e2e_cluster fixture
(tests/rouse_testing/node.py). Binaries come from `make node-build` (.cache/envtest/bin and
.cache/node/bin), images from hack/node/images.sh, Knative's YAML from hack/node/knative/build.sh.
Needs root. Standard library only, plus the CLIs named in `missing_tools`.

Usage: python hack/node/node.py up|down|status
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
# Sibling scripts, imported as modules: the pure builders and the envtest control plane's helpers.
sys.path[:0] = [str(HERE), str(HERE.parent / "envtest")]
import config  # noqa: E402
import controlplane as cp  # noqa: E402

NODE_CACHE = Path(os.environ.get("NODE_CACHE", REPO_ROOT / ".cache" / "node"))
ENVTEST_BIN = cp.BIN_DIR
NODE_BIN = NODE_CACHE / "bin"
MANIFESTS = NODE_CACHE / "manifests"
KINGRESS_YAML = HERE / "kingress" / "config.yaml"
# Prometheus for the operator's policy loop (budgets, warm pool), at the chart's default URL.
PROMETHEUS_YAML = HERE / "prometheus.yaml"
IMAGES_SH = HERE / "images.sh"
PATHS = config.Paths(NODE_CACHE)
NET = config.Network()
STATE_FILE = PATHS.run / "state.json"
READY_FILE = PATHS.run / "ready.json"
CONTEXT = "rouse-node"

# Host paths that the node's own copies shadow inside its mount namespace (tmpfs mounts).
SHADOWED = ("/run/containerd", "/run/netns", "/var/lib/cni", "/var/log/containers")
# Kernel settings the kubelet changes for the whole machine; restored at node-down.
KERNEL_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
# Images the kind path pulls from public registries, which this machine cannot reach: the node
# serves those names from local builds, so the chart and example.sh run unchanged. Debian's
# redis-server 7.0 stands in for the chart's Redis image (same commands, same protocol).
IMAGE_ALIASES = {
    "docker.io/library/redis:7.4.2": "dev.local/redis:7.0-bookworm",
    "gcr.io/knative-releases/knative.dev/eventing/cmd/event_display:latest": "dev.local/knative/event-display:v0.50.0",
}
# Knative's manifests in the order they apply (CRDs Established before the objects that use them).
KNATIVE_MANIFESTS = (
    "knative-serving-crds.yaml",
    "knative-eventing-crds.yaml",
    "knative-serving.yaml",
    "knative-eventing.yaml",
)
# Knative settings of this test node, not Knative's defaults: scale to zero after ~30 s idle
# instead of ~90 s, and give up on a Revision that cannot start after 2 minutes, not 10.
KNATIVE_TUNING = {
    ("knative-serving", "config-autoscaler"): {
        "stable-window": "20s",
        "scale-to-zero-grace-period": "10s",
    },
    ("knative-serving", "config-deployment"): {"progress-deadline": "120s"},
}
# The namespaces whose Deployments must be Available before the node counts as up.
SYSTEM_NAMESPACES = ("kube-system", "knative-serving", "knative-eventing", "monitoring")


class NodeError(RuntimeError):
    """The node cannot start or stop; the message says why and what to do."""


def log(message: str) -> None:
    print(f"node: {message}", flush=True)


def missing_tools() -> list[str]:
    """Everything `up` needs that is not there (empty when all is in place)."""
    missing = [
        str(ENVTEST_BIN / b)
        for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
        if not os.access(ENVTEST_BIN / b, os.X_OK)
    ]
    missing += [
        str(NODE_BIN / b)
        for b in ("kubelet", "kube-proxy", "kube-scheduler")
        if not os.access(NODE_BIN / b, os.X_OK)
    ]
    for tool in (
        "containerd",
        "containerd-shim-runc-v2",
        "runc",
        "ctr",
        "iptables",
        "socat",
        "unshare",
        "ip",
        "openssl",
    ):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (hack/system-deps.sh installs it)")
    for plugin in ("bridge", "host-local", "loopback", "portmap"):
        if not os.access(f"/usr/lib/cni/{plugin}", os.X_OK):
            missing.append(f"/usr/lib/cni/{plugin} (Debian package containernetworking-plugins)")
    missing += [
        f"{MANIFESTS / name} (Knative's manifests: hack/node/knative/build.sh)"
        for name in KNATIVE_MANIFESTS
        if not (MANIFESTS / name).is_file()
    ]
    return missing


# --- certificates and kubeconfigs --------------------------------------------------------------


def make_pki(pki: Path) -> None:
    """The node's CA and one certificate per component (the kubelet's serving cert included)."""
    cp.make_ca(pki, "rouse-node-ca")
    cp.make_service_account_keys(pki)
    client = cp.CLIENT_CERT_EXTENSIONS
    server = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    names = ",".join(
        f"DNS:{n}"
        for n in (
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}",
        )
    )
    ips = f"IP:127.0.0.1,IP:{NET.node_ip},IP:{NET.kubernetes_service_ip}"
    cp.issue_cert(pki, "apiserver", "/CN=kube-apiserver", f"{server}subjectAltName={ips},{names}\n")
    cp.issue_cert(
        pki,
        "kubelet-serving",
        f"/CN={config.NODE_NAME}",
        f"{server}subjectAltName=IP:{NET.node_ip},DNS:{config.NODE_NAME}\n",
    )
    for name, subject in (
        ("admin", "/O=system:masters/CN=rouse-node-admin"),
        ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"),
        ("controller-manager", "/CN=system:kube-controller-manager"),
        ("scheduler", "/CN=system:kube-scheduler"),
        ("kube-proxy", "/CN=system:kube-proxy"),
        ("kubelet", f"/O=system:nodes/CN=system:node:{config.NODE_NAME}"),
    ):
        cp.issue_cert(pki, name, subject, client)


def write_kubeconfig(path: Path, server: str, user: str, cert: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(cp.kubeconfig_text(server, PATHS.pki, user, cert, cluster=CONTEXT))
    os.chmod(path, 0o600)
    return path


def write_configs() -> None:
    """Everything the components read, written on the host before the namespace starts."""
    data = PATHS.data
    inside = f"https://127.0.0.1:{NET.apiserver_port}"
    for cert in ("admin", "controller-manager", "scheduler", "kube-proxy", "kubelet"):
        write_kubeconfig(data / f"{cert}.kubeconfig", inside, cert, cert)
    (data / "containerd.toml").write_text(config.containerd_config(PATHS))
    PATHS.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    (PATHS.cni_conf_dir / "10-rouse-node.conflist").write_text(
        json.dumps(config.cni_config(NET), indent=2)
    )
    (data / "kubelet.yaml").write_text(json.dumps(config.kubelet_config(NET, PATHS), indent=2))
    (data / "kube-proxy.yaml").write_text(
        json.dumps(config.kube_proxy_config(NET, data / "kube-proxy.kubeconfig"), indent=2)
    )
    # Pods with dnsPolicy Default (CoreDNS itself) get this; the node has no upstream resolver.
    (data / "resolv.conf").write_text("nameserver 127.0.0.1\n")


# --- the supervisor: runs inside the namespaces ------------------------------------------------


def run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed (exit {proc.returncode}): {proc.stderr.strip()}")
    return proc


def cgroup_hierarchies() -> list[Path]:
    """Each mounted cgroup hierarchy (v1 controllers, the named systemd one, the v2 `unified`)."""
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():  # a pure cgroup v2 host
        return [root]
    return [p for p in sorted(root.iterdir()) if p.is_dir() and not p.is_symlink()]


class Supervisor:
    """Starts the node's components as its children and stops them in order on SIGTERM."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = False

    def spawn(self, name: str, argv: Sequence[str]) -> None:
        self.procs[name] = cp.start_process(list(argv), PATHS.logs / f"{name}.log", detach=False)

    def alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise NodeError(
                f"{name} exited with code {proc.returncode}; last lines of {PATHS.logs / name}.log:\n"
                f"{cp.log_tail(PATHS.logs / f'{name}.log')}"
            )

    def wait(self, name: str, check: Callable[[], bool], timeout: float, what: str) -> None:
        def ok() -> bool:
            self.alive(name)
            return check()

        cp.wait_for(ok, timeout=timeout, what=what, interval=0.2)

    def setup_network(self) -> None:
        """lo with the node IP, the CNI bridge pre-created, services routed through it."""
        run("ip", "link", "set", "lo", "up")
        run("ip", "addr", "add", f"{NET.node_ip}/32", "dev", "lo")
        run("ip", "link", "add", "cni0", "type", "bridge")
        run("ip", "addr", "add", f"{NET.bridge_ip}/{NET.bridge_prefix}", "dev", "cni0")
        run("ip", "link", "set", "cni0", "up")
        # Without a route, connecting to a ClusterIP fails (ENETUNREACH) before kube-proxy's DNAT.
        run("ip", "route", "add", NET.service_cidr, "dev", "cni0")
        for key, value in (
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/all/route_localnet", "1"),
            ("net/bridge/bridge-nf-call-iptables", "1"),
        ):
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)

    def setup_mounts(self) -> None:
        """Shadow the host paths the runtime hard-codes; make the kubelet's root a shared mount."""
        for path in SHADOWED:
            Path(path).mkdir(parents=True, exist_ok=True)
            run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", path)
        root = PATHS.kubelet_root
        root.mkdir(parents=True, exist_ok=True)
        run("mount", "--bind", str(root), str(root))
        run("mount", "--make-rshared", str(root))

    def start_relay(self) -> None:
        PATHS.apiserver_socket.unlink(missing_ok=True)
        self.spawn(
            "relay-inside",
            [
                "socat",
                f"UNIX-LISTEN:{PATHS.apiserver_socket},fork,mode=600",
                f"TCP:127.0.0.1:{NET.apiserver_port}",
            ],
        )

    def start_containerd(self) -> None:
        PATHS.containerd_socket.parent.mkdir(parents=True, exist_ok=True)
        self.spawn("containerd", ["containerd", "--config", str(PATHS.data / "containerd.toml")])
        self.wait(
            "containerd",
            lambda: ctr("version", check=False).returncode == 0,
            60,
            "containerd's socket",
        )
        stale = ctr("containers", "ls", "-q", check=False).stdout.split()
        if stale:  # a node that was killed: its pods' containers must not confuse the new kubelet
            log(f"removing {len(stale)} containers left by a previous node")
            remove_containers(stale)
            self.stop_one("containerd")
            self.spawn(
                "containerd", ["containerd", "--config", str(PATHS.data / "containerd.toml")]
            )
            self.wait(
                "containerd",
                lambda: ctr("version", check=False).returncode == 0,
                60,
                "containerd's socket",
            )

    def load_images(self) -> None:
        started = time.monotonic()
        proc = subprocess.run(
            ["bash", str(IMAGES_SH), "load", "--address", str(PATHS.containerd_socket)],
            capture_output=True,
            text=True,
            check=False,
        )
        (PATHS.logs / "images-load.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise NodeError(f"loading images failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
        for alias, source in IMAGE_ALIASES.items():
            ctr("images", "tag", "--force", source, alias)
        log(f"images loaded into containerd in {time.monotonic() - started:.1f}s")

    def start_control_plane(self) -> None:
        pki, data = PATHS.pki, PATHS.data
        bin_ = ENVTEST_BIN
        etcd = "http://127.0.0.1:2379"
        self.spawn(
            "etcd",
            [
                str(bin_ / "etcd"), "--name=node", f"--data-dir={data / 'etcd'}",
                f"--listen-client-urls={etcd}", f"--advertise-client-urls={etcd}",
                "--listen-peer-urls=http://127.0.0.1:2380", "--initial-advertise-peer-urls=http://127.0.0.1:2380",
                "--initial-cluster=node=http://127.0.0.1:2380", "--unsafe-no-fsync=true", "--log-level=warn",
            ],
        )  # fmt: skip
        self.wait("etcd", lambda: http_ok(f"{etcd}/health"), 30, "etcd health")
        self.spawn(
            "kube-apiserver",
            [
                str(bin_ / "kube-apiserver"), f"--etcd-servers={etcd}",
                "--bind-address=0.0.0.0", f"--advertise-address={NET.node_ip}",
                f"--secure-port={NET.apiserver_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}", "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={cp.SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--service-cluster-ip-range={NET.service_cidr}", "--allow-privileged=true",
                f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
                f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--enable-admission-plugins=NodeRestriction", "--profiling=false",
                f"--cert-dir={data / 'apiserver-certs'}",
            ],
        )  # fmt: skip
        self.wait(
            "kube-apiserver",
            lambda: kubectl("get", "--raw", "/readyz", check=False, inside=True).returncode == 0,
            90,
            "kube-apiserver /readyz",
        )
        self.spawn(
            "kube-controller-manager",
            [
                str(bin_ / "kube-controller-manager"), f"--kubeconfig={data / 'controller-manager.kubeconfig'}",
                f"--authentication-kubeconfig={data / 'controller-manager.kubeconfig'}",
                f"--authorization-kubeconfig={data / 'controller-manager.kubeconfig'}",
                "--bind-address=127.0.0.1", "--secure-port=10257", f"--cert-dir={data / 'kcm-certs'}",
                "--leader-elect=false", "--controllers=*", "--use-service-account-credentials=true",
                f"--root-ca-file={pki / 'ca.crt'}", f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}", f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--service-cluster-ip-range={NET.service_cidr}", "--profiling=false",
            ],
        )  # fmt: skip
        self.spawn(
            "kube-scheduler",
            [
                str(NODE_BIN / "kube-scheduler"), f"--kubeconfig={data / 'scheduler.kubeconfig'}",
                f"--authentication-kubeconfig={data / 'scheduler.kubeconfig'}",
                f"--authorization-kubeconfig={data / 'scheduler.kubeconfig'}",
                "--bind-address=127.0.0.1", "--secure-port=10259", "--leader-elect=false", "--profiling=false",
            ],
        )  # fmt: skip

    def start_node(self) -> None:
        data = PATHS.data
        for hierarchy in cgroup_hierarchies():
            (hierarchy / config.CGROUP_ROOT).mkdir(exist_ok=True)
        self.spawn(
            "kubelet",
            [
                str(NODE_BIN / "kubelet"), f"--config={data / 'kubelet.yaml'}",
                f"--kubeconfig={data / 'kubelet.kubeconfig'}", f"--root-dir={PATHS.kubelet_root}",
                f"--node-ip={NET.node_ip}", f"--hostname-override={config.NODE_NAME}", "--v=1",
            ],
        )  # fmt: skip
        self.spawn(
            "kube-proxy",
            [
                str(NODE_BIN / "kube-proxy"),
                f"--config={data / 'kube-proxy.yaml'}",
                f"--hostname-override={config.NODE_NAME}",
            ],
        )
        self.wait(
            "kubelet",
            lambda: http_ok("http://127.0.0.1:10248/healthz"),
            90,
            "the kubelet's /healthz",
        )

    def stop_one(self, name: str, timeout: float = 20) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def teardown(self) -> None:
        """Pods first (while the kubelet and containerd can still stop them), then the rest."""
        if self.stopping:
            return
        self.stopping = True
        log("stopping: pods")
        for name in ("kube-proxy", "kubelet", "kube-scheduler", "kube-controller-manager"):
            self.stop_one(name)
        if "containerd" in self.procs:
            remove_containers(ctr("containers", "ls", "-q", check=False).stdout.split())
        for name in ("kube-apiserver", "etcd", "relay-inside", "containerd"):
            self.stop_one(name)
        for name in list(self.procs):
            self.stop_one(name)
        sweep_cgroups()
        kill_namespace_processes(os.stat("/proc/self/ns/net").st_ino, spare=os.getpid())
        log("stopped")

    def serve(self) -> None:
        """Bring the node up, report readiness to `up`, then wait for SIGTERM."""
        signal.signal(signal.SIGTERM, lambda *_: self._exit())
        signal.signal(signal.SIGINT, lambda *_: self._exit())
        try:
            (PATHS.run / "supervisor.pid").write_text(str(os.getpid()))
            self.setup_network()
            self.setup_mounts()
            self.start_relay()
            self.start_containerd()
            self.load_images()
            self.start_control_plane()
            record_kernel_sysctls()
            self.start_node()
            pids = {name: p.pid for name, p in self.procs.items()}
            READY_FILE.write_text(
                json.dumps(
                    {"pid": os.getpid(), "netns": os.stat("/proc/self/ns/net").st_ino, "pids": pids}
                )
            )
        except BaseException as exc:
            (PATHS.run / "failed").write_text(str(exc))
            log(f"error: {exc}")
            self.teardown()
            raise SystemExit(1) from None
        while True:
            time.sleep(2)
            for name, proc in list(self.procs.items()):
                if proc.poll() is not None and not self.stopping:
                    log(f"{name} exited with code {proc.returncode} (see {PATHS.logs / name}.log)")
                    del self.procs[name]

    def _exit(self) -> None:
        self.teardown()
        raise SystemExit(0)


def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run("ctr", "--address", str(PATHS.containerd_socket), "-n", "k8s.io", *args, check=check)


def remove_containers(ids: Sequence[str]) -> None:
    """Kill and delete containers (and so their shims) directly in containerd."""
    for cid in ids:
        ctr("tasks", "kill", "--all", "--signal", "SIGKILL", cid, check=False)
    for cid in ids:
        ctr("tasks", "delete", "--force", cid, check=False)
        ctr("containers", "delete", cid, check=False)


def http_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as resp:
        return bool(resp.status == 200)


def record_kernel_sysctls() -> None:
    values = {}
    for key in KERNEL_SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = Path("/proc/sys", key).read_text().strip()
    sysctls = PATHS.run / "kernel-sysctls.json"
    if not sysctls.exists():  # keep the values from before the first node, not a node's
        sysctls.write_text(json.dumps(values))


def restore_kernel_sysctls() -> None:
    saved = PATHS.run / "kernel-sysctls.json"
    if not saved.exists():
        return
    for key, value in json.loads(saved.read_text()).items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key).write_text(value)
    saved.unlink()


def sweep_cgroups() -> None:
    """Kill whatever is left in the node's cgroups (containers whose shim died) and remove them."""
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / config.CGROUP_ROOT
        if not root.is_dir():
            continue
        for _ in range(3):
            dirs = sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            )
            for d in [*dirs, root]:
                with contextlib.suppress(OSError):
                    for pid in (d / "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.2)
            for d in [*dirs, root]:
                with contextlib.suppress(OSError):
                    d.rmdir()
            if not root.exists():
                break


def node_cgroup_processes() -> int:
    """How many processes run in the node's cgroup root (any checkout's node), in one hierarchy."""
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / config.CGROUP_ROOT
        if root.is_dir():
            return sum(
                len((d / "cgroup.procs").read_text().split())
                for d in [root, *root.rglob("*")]
                if (d / "cgroup.procs").is_file()
            )
    return 0


def kill_namespace_processes(netns: int, spare: int) -> int:
    """SIGKILL every process in network namespace `netns` (the node's) except `spare`."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == spare:
            continue
        try:
            if os.stat(entry / "ns" / "net").st_ino != netns:
                continue
            os.kill(int(entry.name), signal.SIGKILL)
            killed += 1
        except (OSError, ProcessLookupError):
            continue
    return killed


# --- the host side: up, down, status -----------------------------------------------------------


def kubectl(
    *args: str,
    input: str | None = None,
    check: bool = True,
    timeout: float = 120,
    inside: bool = False,
) -> subprocess.CompletedProcess[str]:
    """kubectl as the node's admin: through the host relay, or (inside=True) straight to the API server."""
    kubeconfig = PATHS.data / "admin.kubeconfig" if inside else PATHS.kubeconfig
    argv = [str(ENVTEST_BIN / "kubectl"), f"--kubeconfig={kubeconfig}", *args]
    proc = subprocess.run(
        argv, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise NodeError(
            f"kubectl {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr.strip()}"
        )
    return proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_host_relay() -> tuple[int, int]:
    port = free_port()
    proc = cp.start_process(
        [
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
            f"UNIX-CONNECT:{PATHS.apiserver_socket}",
        ],
        PATHS.logs / "relay-host.log",
        detach=True,
    )
    return proc.pid, port


def wait_ready(supervisor: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if READY_FILE.exists():
            ready: dict[str, Any] = json.loads(READY_FILE.read_text())
            return ready
        if (PATHS.run / "failed").exists() or supervisor.poll() is not None:
            raise NodeError(
                f"the node did not start; last lines of {PATHS.logs}/node.log:\n{cp.log_tail(PATHS.logs / 'node.log')}"
            )
        time.sleep(0.2)
    raise NodeError(f"the node was not up after {timeout:.0f}s; see {PATHS.logs}/")


def apply(source: Path | list[dict[str, Any]], attempts: int = 30) -> None:
    """Server-side apply of a file or of manifest dicts, retried while webhooks are not up yet."""
    if isinstance(source, Path):
        args, text, what = ["-f", str(source)], None, str(source)
    else:
        args, text, what = (
            ["-f", "-"],
            json.dumps({"apiVersion": "v1", "kind": "List", "items": source}),
            "manifests",
        )
    for attempt in range(1, attempts + 1):
        proc = kubectl(
            "apply", "--server-side", "--force-conflicts", "--field-manager=rouse-node", *args,
            input=text, check=False, timeout=300,
        )  # fmt: skip
        if proc.returncode == 0:
            return
        if attempt == attempts:
            raise NodeError(f"applying {what} failed:\n{proc.stderr.strip()[-2000:]}")
        time.sleep(2)  # a webhook answers only once its pod is ready


def wait_deployments(namespace: str, timeout: float) -> None:
    kubectl(
        "-n",
        namespace,
        "wait",
        "--for=condition=Available",
        "deployment",
        "--all",
        f"--timeout={int(timeout)}s",
        timeout=timeout + 30,
    )


def install_addons() -> None:
    """CoreDNS, then Knative's manifests in their numbered order, the KIngress, Prometheus."""
    started = time.monotonic()
    cp.wait_for(
        lambda: (
            "True"
            in kubectl(
                "get",
                "node",
                config.NODE_NAME,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
                check=False,
            ).stdout
        ),
        timeout=120,
        what=f"node {config.NODE_NAME} Ready",
        interval=0.5,
    )
    log(f"node Ready ({time.monotonic() - started:.1f}s)")
    apply(config.coredns_manifests(NET))
    for path in (MANIFESTS / name for name in KNATIVE_MANIFESTS):
        log(f"applying {path.name}")
        apply(path)
        kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    apply(KINGRESS_YAML)
    apply(PROMETHEUS_YAML)
    for ns in SYSTEM_NAMESPACES:
        if kubectl("get", "namespace", ns, check=False).returncode == 0:
            wait_deployments(ns, 300)
    for (ns, name), data in KNATIVE_TUNING.items():
        kubectl(
            "-n", ns, "patch", "configmap", name, "--type=merge", "-p", json.dumps({"data": data})
        )
    log(f"CoreDNS, Knative and Prometheus Available ({time.monotonic() - started:.1f}s)")


def node_up() -> None:
    if os.geteuid() != 0:
        raise NodeError("the real node needs root (namespaces, mounts, cgroups, iptables)")
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
        if _alive(state.get("pid", 0)):
            raise NodeError(
                f"a node is already running (pid {state['pid']}); run `make node-down` first"
            )
        node_down(quiet=True)
    busy = node_cgroup_processes()
    if busy:
        raise NodeError(
            f"another node runs on this machine ({busy} processes in the cgroup {config.CGROUP_ROOT}): "
            "nodes share that cgroup root and kernel settings; stop it with `make node-down` in "
            "its checkout first"
        )
    missing = missing_tools()
    if missing:
        raise NodeError("missing: " + ", ".join(missing) + "; run `make node-build`")
    started = time.monotonic()
    for d in (PATHS.data, PATHS.run):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    if PATHS.logs.exists():
        shutil.rmtree(PATHS.logs)
    PATHS.logs.mkdir(parents=True)
    make_pki(PATHS.pki)
    write_configs()
    supervisor = cp.start_process(
        [
            "unshare",
            "--net",
            "--mount",
            "--propagation",
            "private",
            "--fork",
            "--",
            sys.executable,
            __file__,
            "supervise",
        ],
        PATHS.logs / "node.log",
        detach=True,
    )
    try:
        ready = wait_ready(supervisor, timeout=300)
        relay_pid, port = start_host_relay()
        state = {
            "pid": ready["pid"],
            "unshare": supervisor.pid,
            "netns": ready["netns"],
            "relay": relay_pid,
            "port": port,
        }
        STATE_FILE.write_text(json.dumps(state, indent=2))
        write_kubeconfig(PATHS.kubeconfig, f"https://127.0.0.1:{port}", "rouse-node-admin", "admin")
        log(
            f"components running ({time.monotonic() - started:.1f}s); API server https://127.0.0.1:{port}"
        )
        install_addons()
    except BaseException:
        node_down(quiet=True)
        raise
    log(f"up in {time.monotonic() - started:.1f}s")
    print(f"  export KUBECONFIG={PATHS.kubeconfig}")
    print(f"  export PATH={ENVTEST_BIN}:$PATH   # kubectl and helm at the pinned versions")
    print(f"  logs: {PATHS.logs}/   stop: make node-down")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not cp._is_zombie(pid)


def node_down(quiet: bool = False) -> None:
    """Stop the supervisor (it stops pods and components), then sweep whatever is left."""
    state: dict[str, Any] = {}
    if STATE_FILE.exists():
        state = json.loads(STATE_FILE.read_text())
    else:
        pid_file = PATHS.run / "supervisor.pid"
        if pid_file.exists():
            state = {"pid": int(pid_file.read_text())}
    if not state:
        # No node of this cache: leave the cgroups and settings alone (another checkout's node).
        if not quiet:
            log(f"no node of {NODE_CACHE} is running")
        return
    pid = int(state.get("pid", 0))
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    if state.get("netns"):
        kill_namespace_processes(int(state["netns"]), spare=os.getpid())
    for key in ("relay", "unshare"):
        if _alive(int(state.get(key, 0))):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(state[key]), signal.SIGKILL)
    sweep_cgroups()
    restore_kernel_sysctls()
    for done in (STATE_FILE, READY_FILE, PATHS.run / "supervisor.pid", PATHS.kubeconfig):
        done.unlink(missing_ok=True)
    if not quiet:
        log(f"down; logs kept in {PATHS.logs}/")


def node_status() -> int:
    if not STATE_FILE.exists():
        print("no node (run `make node-up`)")
        return 1
    state = json.loads(STATE_FILE.read_text())
    alive = _alive(int(state["pid"]))
    print(
        f"supervisor pid {state['pid']} {'running' if alive else 'NOT RUNNING'}; API server https://127.0.0.1:{state['port']}"
    )
    print(f"KUBECONFIG={PATHS.kubeconfig}")
    return 0 if alive else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "supervise"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            node_up()
        elif args.command == "down":
            node_down()
        elif args.command == "status":
            return node_status()
        else:
            Supervisor().serve()
    except (NodeError, cp.ControlPlaneError) as exc:
        print(f"node {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
