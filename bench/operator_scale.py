"""Operator scale, measured side by side in one run on one control plane.

For N Agents (default N = 100 and 1000; one skill, one event filter each, so two
children per Agent) created while no operator runs, start an operator and time
until every Agent carries kopf's last-handled annotation (written after the
handler succeeded). Three operators take turns, each in a fresh namespace:

- baseline: a no-op kopf operator (same kopf settings, handlers that do nothing);
- reconcile: the reconciler's handlers alone (rouse_operator.handlers, no policy timers);
- rouse: `python -m rouse_operator`, the whole operator (reconciler + policy timers that
  query Prometheus for every Agent).

Prints Agents reconciled per second and peak RSS of each, and the ratios
to the baseline. Usage (needs `make envtest`):
    python bench/operator_scale.py [--sizes 100 1000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kubernetes import client, config  # noqa: E402
from rouse_testing.cluster import start_cluster  # noqa: E402
from rouse_testing.operator import install_agent_crd  # noqa: E402
from rouse_testing.wait import free_port  # noqa: E402

NOOP_OPERATOR = """
import logging, sys
import kopf

@kopf.on.startup()
def configure(settings, **_):
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="rouse.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="rouse.dev", key="last-handled-configuration")
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 16
    settings.watching.server_timeout = 300

@kopf.on.resume("rouse.dev", "v1alpha1", "agents")
@kopf.on.create("rouse.dev", "v1alpha1", "agents")
@kopf.on.update("rouse.dev", "v1alpha1", "agents")
def noop(**_):
    pass

kopf.configure(verbose=False)
kopf.run(standalone=True, namespaces=sys.argv[1:])
"""
# The reconciler's handlers alone (no policy timers), to show where the time goes.
RECONCILER_ONLY = (
    "import sys, kopf; from rouse_operator import handlers; kopf.configure(verbose=False); "
    "kopf.run(standalone=True, namespaces=sys.argv[1:])"
)
HANDLED = "rouse.dev/last-handled-configuration"


def agent(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "rouse.dev/v1alpha1",
        "kind": "Agent",
        "metadata": {"name": name},
        "spec": {
            "image": "registry.example/bench:1.0",
            "skills": [{"name": "s", "handler": "m:f", "events": [{"type": f"bench.{name}"}]}],
        },
    }


def create_agents(api: client.CustomObjectsApi, namespace: str, count: int) -> None:
    def create(i: int) -> None:
        api.create_namespaced_custom_object(
            "rouse.dev", "v1alpha1", namespace, "agents", agent(f"a{i:04d}")
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))


def handled(api: client.CustomObjectsApi, namespace: str) -> int:
    items = api.list_namespaced_custom_object("rouse.dev", "v1alpha1", namespace, "agents")["items"]
    return sum(1 for a in items if HANDLED in (a["metadata"].get("annotations") or {}))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_one(
    cluster: Any, api: client.CustomObjectsApi, argv: list[str], count: int, log: Path
) -> tuple[float, float]:
    """(agents reconciled per second, peak RSS MiB) of one operator over `count` fresh Agents."""
    namespace = cluster.create_namespace("bench")
    create_agents(api, namespace, count)
    env = cluster.env | {"ROUSE_METRICS_PORT": str(free_port()), "ROUSE_RESYNC_INTERVAL": "3600"}
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen([*argv, namespace], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = started + 600
        while handled(api, namespace) < count:
            if proc.poll() is not None:
                raise SystemExit(f"operator exited {proc.returncode}; see {log}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out: {handled(api, namespace)}/{count} handled; see {log}")
            time.sleep(0.2)
        elapsed = time.perf_counter() - started
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # kopf waits for in-flight handlers: do not hang
            print("  (operator slow to stop after SIGTERM; killed)", flush=True)
            proc.kill()
            proc.wait(timeout=10)
        cluster.delete_namespace(namespace)
    return count / elapsed, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rouse-bench-") as tmp:
        work = Path(tmp)
        noop = work / "noop_operator.py"
        noop.write_text(NOOP_OPERATOR)
        cluster = start_cluster(work / "envtest")
        try:
            install_agent_crd(cluster)
            config.load_kube_config(str(cluster.kubeconfig))
            api = client.CustomObjectsApi()
            operators = {
                "baseline": [sys.executable, str(noop)],
                "reconcile": [sys.executable, "-c", RECONCILER_ONLY],
                "rouse": [sys.executable, "-m", "rouse_operator", "--namespace"],
            }
            print(f"{'N':>6} {'operator':>10} {'agents/s':>9} {'peak RSS MiB':>13}")
            for count in args.sizes:
                results = {}
                for name, argv in operators.items():
                    rate, rss = run_one(cluster, api, argv, count, work / f"{name}-{count}.log")
                    results[name] = (rate, rss)
                    print(f"{count:>6} {name:>10} {rate:>9.1f} {rss:>13.1f}", flush=True)
                rate_b, rss_b = results["baseline"]
                for name in ("reconcile", "rouse"):
                    rate, rss = results[name]
                    print(
                        f"{count:>6} ratio {name}/baseline: throughput {rate / rate_b:.2f}, "
                        f"peak RSS {rss / rss_b:.2f}",
                        flush=True,
                    )
        finally:
            cluster.plane.stop()
    print(
        f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, kube-apiserver + etcd on the same host)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
