"""A real Kubernetes control plane on loopback: etcd + kube-apiserver + kube-controller-manager.

One code path for `make cluster-up` / `make cluster-down` (the CLI at the bottom) and
for the pytest fixtures (tests/rouse_testing/cluster.py imports this file). Binaries
come from `make envtest` (.cache/envtest/bin); Knative's upstream CRDs from
.cache/envtest/knative-crds. Standard library only, plus the `openssl` and `kubectl` CLIs.

Usage: python hack/envtest/controlplane.py up|down|status
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("ENVTEST_CACHE", REPO_ROOT / ".cache" / "envtest"))
BIN_DIR = CACHE_DIR / "bin"
CRD_DIR = CACHE_DIR / "knative-crds"
STATE_FILE = CACHE_DIR / "state.json"
KUBECONFIG = CACHE_DIR / "kubeconfig"
LOG_DIR = CACHE_DIR / "logs"

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
BROKER_CLASS = "MTChannelBasedBroker"
PR_SET_PDEATHSIG = 1


class ControlPlaneError(RuntimeError):
    """The control plane cannot start or stop; the message says why and what to do."""


def default_broker(namespace: str, name: str = "default") -> dict[str, Any]:
    """The Knative Broker object every test namespace (and `default`) gets."""
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {"eventing.knative.dev/broker.class": BROKER_CLASS},
        },
    }


def missing_tools(bin_dir: Path, crd_dir: Path) -> list[str]:
    """What `make envtest` has not produced yet (empty when everything is in place)."""
    missing = [str(bin_dir / name) for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if not sorted(crd_dir.glob("*.yaml")):
        missing.append(f"{crd_dir}/*.yaml (Knative CRDs)")
    if shutil.which("openssl") is None:
        missing.append("openssl (install the openssl package)")
    return missing


def free_port() -> int:
    """A free TCP port on loopback, picked by the OS."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ensure_port_free(port: int, what: str) -> None:
    """Fail with a clear message when `port` is already taken on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise ControlPlaneError(
                f"port {port} on 127.0.0.1 (for {what}) is already in use: {exc.strerror}; "
                "stop whatever holds it (a previous cluster? run `make cluster-down`) "
                "or pick another port"
            ) from exc


def wait_for(
    check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.1
) -> None:
    """Poll `check` until it is true; raise ControlPlaneError naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the condition may raise until it holds
            last = exc
        time.sleep(interval)
    detail = f" (last error: {last})" if last else ""
    raise ControlPlaneError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


# --- certificates (openssl CLI) ---------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


def issue_cert(pki: Path, name: str, subject: str, extensions: str) -> None:
    """An EC P-256 key and a certificate for it signed by pki/ca.crt."""
    (pki / f"{name}.ext").write_text(extensions)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f"{name}.key", cwd=pki)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    _openssl(
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "30", "-sha256", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
        cwd=pki,
    )  # fmt: skip


def make_ca(pki: Path, common_name: str = "rouse-envtest-ca") -> None:
    """A fresh CA (pki/ca.key, pki/ca.crt) in a private directory."""
    pki.mkdir(parents=True, exist_ok=True)
    os.chmod(pki, 0o700)
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "30", "-subj", f"/CN={common_name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        cwd=pki,
    )  # fmt: skip


def make_service_account_keys(pki: Path) -> None:
    """The RSA key pair that signs and verifies service-account tokens."""
    _openssl(
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "sa.key",
        cwd=pki,
    )
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


CLIENT_CERT_EXTENSIONS = (
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
)


def make_pki(pki: Path) -> None:
    """CA, API server serving cert, admin and controller-manager client certs, SA key pair."""
    make_ca(pki)
    client = CLIENT_CERT_EXTENSIONS
    issue_cert(
        pki,
        "apiserver",
        "/CN=kube-apiserver",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,"
        "DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n",
    )
    issue_cert(pki, "admin", "/O=system:masters/CN=rouse-envtest-admin", client)
    issue_cert(pki, "controller-manager", "/CN=system:kube-controller-manager", client)
    make_service_account_keys(pki)


def kubeconfig_text(
    server: str, pki: Path, user: str, cert: str, cluster: str = "rouse-envtest"
) -> str:
    """A kubeconfig (JSON is valid YAML) with the CA and client cert embedded."""

    def b64(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": b64("ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": b64(f"{cert}.crt"),
                    "client-key-data": b64(f"{cert}.key"),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    return json.dumps(config, indent=2) + "\n"


# --- processes ---------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the process that started us dies (Linux prctl).

    SIGKILL, not SIGTERM: the data is throwaway, and a graceful API server shutdown
    without its etcd takes long.
    """
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def start_process(argv: Sequence[str], log: Path, *, detach: bool) -> subprocess.Popen[bytes]:
    """Start a component logging to `log`.

    detach=True (cluster-up): its own session, so it outlives us. detach=False (tests): it
    dies with us even if we are killed, so a crashed test run leaves no servers behind.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            preexec_fn=None if detach else _die_with_parent,
        )


def _is_our_process(pid: int, binary: str) -> bool:
    """True when `pid` is alive and still runs `binary` (guards against reused pids)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return False
    return cmdline == binary


def stop_pid(pid: int, binary: str, timeout: float = 15.0) -> None:
    """SIGTERM, wait, then SIGKILL: one process that we started."""
    if not _is_our_process(pid, binary):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it when it is our child
        if not _is_our_process(pid, binary) or _is_zombie(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _https_ok(url: str, context: ssl.SSLContext) -> bool:
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as resp:
            return bool(resp.status == 200)
    except urllib.error.HTTPError:
        return False


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager in `workdir`, listening on loopback only."""

    workdir: Path
    bin_dir: Path = BIN_DIR
    crd_dir: Path = CRD_DIR
    kubeconfig: Path | None = None
    log_dir: Path | None = None
    api_port: int | None = None
    detach: bool = False
    pids: dict[str, int] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.kubeconfig = Path(self.kubeconfig or self.workdir / "kubeconfig")
        self.log_dir = Path(self.log_dir or self.workdir / "logs")

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    def log(self, component: str) -> Path:
        assert self.log_dir is not None
        return self.log_dir / f"{component}.log"

    @property
    def api_log(self) -> Path:
        return self.log("kube-apiserver")

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    def env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment for tools: KUBECONFIG set, the envtest bin dir first on PATH."""
        env = dict(os.environ if base is None else base)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}"
        return env

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the envtest kubectl against this control plane."""
        argv = [str(self.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(
            argv,
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(
                f"kubectl {' '.join(args)} failed (exit {proc.returncode}):\n{proc.stderr.strip()}"
            )
        return proc

    def apply(
        self, manifests: Sequence[Mapping[str, Any]] | str, namespace: str | None = None
    ) -> str:
        """kubectl apply (server-side) of manifest dicts or YAML text; returns kubectl's output."""
        if isinstance(manifests, str):
            text = manifests
        else:
            text = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(manifests)})
        args = ["apply", "--server-side", "--field-manager=rouse-tests", "-f", "-"]
        if namespace:
            args[1:1] = ["--namespace", namespace]
        return self.kubectl(*args, input=text).stdout

    # --- lifecycle ------------------------------------------------------------------------

    def _check_alive(self, component: str) -> None:
        proc = self._procs.get(component)
        if proc is not None and proc.poll() is not None:
            raise ControlPlaneError(
                f"{component} exited with code {proc.returncode}; last lines of {self.log(component)}:\n"
                f"{log_tail(self.log(component))}"
            )

    def start(self) -> None:
        """Start all components and install Knative's CRDs and the `default` Broker; stop on failure."""
        missing = missing_tools(self.bin_dir, self.crd_dir)
        if missing:
            raise ControlPlaneError("missing: " + ", ".join(missing) + "; run `make envtest`")
        for attempt in range(1, 4):
            try:
                self._start()
                return
            except ControlPlaneError as exc:
                # A random port can be grabbed by someone else between our pick and the bind.
                raced = self.api_port is None and "address already in use" in str(exc).lower()
                self.stop(remove_workdir=raced)
                if not raced or attempt == 3:
                    raise
            except BaseException:
                self.stop(remove_workdir=False)
                raise

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "kube-apiserver": self.api_port or free_port(),
            "kube-controller-manager": free_port(),
        }
        for what, port in self.ports.items():
            ensure_port_free(port, what)
        make_pki(self.pki)
        self._start_etcd()
        self._start_apiserver()
        self._install_crds()
        self._start_controller_manager()

    def _spawn(self, component: str, argv: list[str]) -> None:
        proc = start_process(
            [str(self.bin_dir / component), *argv], self.log(component), detach=self.detach
        )
        self._procs[component] = proc
        self.pids[component] = proc.pid

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                "--name=envtest",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=envtest={peer}",
                "--unsafe-no-fsync=true",  # throwaway test data: durability buys nothing
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            self._check_alive("etcd")
            with urllib.request.urlopen(f"{client}/health", timeout=2) as resp:
                return bool(json.load(resp).get("health") == "true")

        wait_for(healthy, timeout=30, what=f"etcd health at {client}")

    def _start_apiserver(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['kube-apiserver']}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                "--profiling=false",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
            ],
        )
        assert self.kubeconfig is not None
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(
            kubeconfig_text(self.server, pki, "rouse-envtest-admin", "admin")
        )
        os.chmod(self.kubeconfig, 0o600)
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))

        def ready() -> bool:
            self._check_alive("kube-apiserver")
            return _https_ok(f"{self.server}/readyz", context)

        wait_for(ready, timeout=90, what=f"kube-apiserver /readyz at {self.server}")

    def _install_crds(self) -> None:
        files = sorted(self.crd_dir.glob("*.yaml"))
        args = ["apply", "--server-side", "--field-manager=rouse-envtest"]
        for f in files:
            args += ["-f", str(f)]
        out = self.kubectl(*args).stdout
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
        for name in names:
            # No Knative webhook runs here to convert between served versions (PingSource
            # serves v1beta2 and v1); stored objects are v1, so a plain apiVersion swap suffices.
            crd = json.loads(self.kubectl("get", name, "-o", "json").stdout)
            if crd["spec"].get("conversion", {}).get("strategy") == "Webhook":
                patch = {"spec": {"conversion": {"strategy": "None", "webhook": None}}}
                self.kubectl("patch", name, "--type=merge", "-p", json.dumps(patch))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)
        # The API server may take a moment to serve a just-established CRD.
        wait_for(
            lambda: (
                self.kubectl("get", "brokers.eventing.knative.dev", "-A", check=False).returncode
                == 0
            ),
            timeout=30,
            what="the Broker API to be served",
        )
        self.apply([default_broker("default")])

    def _start_controller_manager(self) -> None:
        pki = self.pki
        kcm_kubeconfig = self.workdir / "controller-manager.kubeconfig"
        kcm_kubeconfig.write_text(
            kubeconfig_text(
                self.server, pki, "system:kube-controller-manager", "controller-manager"
            )
        )
        os.chmod(kcm_kubeconfig, 0o600)
        port = self.ports["kube-controller-manager"]
        self._spawn(
            "kube-controller-manager",
            [
                f"--kubeconfig={kcm_kubeconfig}",
                f"--authentication-kubeconfig={kcm_kubeconfig}",
                f"--authorization-kubeconfig={kcm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                "--leader-elect=false",
                "--controllers=*",
                "--use-service-account-credentials=true",
                f"--root-ca-file={pki / 'ca.crt'}",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--cluster-signing-cert-file={pki / 'ca.crt'}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                "--profiling=false",
            ],
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = (
            ssl.CERT_NONE
        )  # its self-signed serving cert; loopback health probe only

        def healthy() -> bool:
            self._check_alive("kube-controller-manager")
            return _https_ok(f"https://127.0.0.1:{port}/healthz", insecure)

        wait_for(healthy, timeout=60, what="kube-controller-manager /healthz")

    def stop(self, remove_workdir: bool = True) -> None:
        """Stop the components in reverse start order; remove the data dir unless told not to."""
        for component in reversed(list(self.pids)):
            stop_pid(self.pids[component], str(self.bin_dir / component))
        for proc in self._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)
        self.pids.clear()
        self._procs.clear()
        if remove_workdir:
            shutil.rmtree(self.workdir / "etcd", ignore_errors=True)
            shutil.rmtree(self.pki, ignore_errors=True)

    # --- state for `cluster-up` / `cluster-down` -----------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "bin_dir": str(self.bin_dir),
            "kubeconfig": str(self.kubeconfig),
            "log_dir": str(self.log_dir),
            "server": self.server,
            "pids": dict(self.pids),
            "ports": dict(self.ports),
        }


# --- CLI --------------------------------------------------------------------------------


def _running(state: Mapping[str, Any]) -> dict[str, int]:
    bin_dir = Path(state["bin_dir"])
    return {c: p for c, p in state["pids"].items() if _is_our_process(p, str(bin_dir / c))}


def cluster_up(api_port: int | None) -> None:
    if STATE_FILE.exists():
        running = _running(json.loads(STATE_FILE.read_text()))
        if running:
            raise ControlPlaneError(
                f"a cluster is already running (pids {running}); run `make cluster-down` first"
            )
        cluster_down(quiet=True)
    started = time.monotonic()
    if LOG_DIR.exists():
        shutil.rmtree(LOG_DIR)
    workdir = Path(tempfile.mkdtemp(prefix="rouse-envtest-"))
    plane = ControlPlane(
        workdir=workdir, kubeconfig=KUBECONFIG, log_dir=LOG_DIR, api_port=api_port, detach=True
    )
    try:
        plane.start()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    STATE_FILE.write_text(json.dumps(plane.state(), indent=2) + "\n")
    took = time.monotonic() - started
    print(f"cluster-up: API server {plane.server} ready in {took:.1f}s")
    print(f"  export KUBECONFIG={KUBECONFIG}")
    print(f"  export PATH={BIN_DIR}:$PATH   # kubectl and helm at the pinned versions")
    print(f"  logs: {LOG_DIR}/  state: {STATE_FILE}  stop: make cluster-down")


def cluster_down(quiet: bool = False) -> None:
    if not STATE_FILE.exists():
        if not quiet:
            print("cluster-down: no cluster is running (no state file)")
        return
    state = json.loads(STATE_FILE.read_text())
    bin_dir = Path(state["bin_dir"])
    for component, pid in reversed(list(state["pids"].items())):
        stop_pid(pid, str(bin_dir / component))
    shutil.rmtree(state["workdir"], ignore_errors=True)
    STATE_FILE.unlink()
    KUBECONFIG.unlink(missing_ok=True)
    if not quiet:
        print(f"cluster-down: stopped {', '.join(state['pids'])}; logs kept in {state['log_dir']}")


def cluster_status() -> int:
    if not STATE_FILE.exists():
        print("no cluster (run `make cluster-up`)")
        return 1
    state = json.loads(STATE_FILE.read_text())
    running = _running(state)
    for component, pid in state["pids"].items():
        print(f"{component:26} pid {pid:<8} {'running' if component in running else 'NOT RUNNING'}")
    print(f"server {state['server']}  kubeconfig {state['kubeconfig']}")
    return 0 if len(running) == len(state["pids"]) else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument(
        "--api-port", type=int, default=None, help="API server port (default: a free one)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            cluster_up(args.api_port)
        elif args.command == "down":
            cluster_down()
        else:
            return cluster_status()
    except ControlPlaneError as exc:
        print(f"{args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
