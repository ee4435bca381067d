"""Operator scale, measured side by side in one run on one control plane.

For N Agents (default N = 100 and 1000; one skill, one event filter each, so two
children per Agent) created while no operator runs, start an operator and time
until every Agent carries kopf's last-handled configuration (written after the
handler succeeded: an annotation for the no-op operator, status.kopf for Rouse; counted
from a watch). The operators take turns, each in a fresh namespace:

- baseline: a no-op kopf operator (same kopf settings, handlers that do nothing);
- floor: bench/floor_operator.py, only the writes the contract asks for a new Agent (its
  children by server-side apply, as Rouse's builders make them, and one status apply that
  carries kopf's bookkeeping), with Rouse's kopf settings: the most any operator honouring
  the contract could do on this host;
- reconcile: the reconciler's handlers alone (rouse_operator.handlers, no policy timers);
- rouse: `python -m rouse_operator`, the whole operator (reconciler + policy timers that
  query Prometheus for every Agent).

Prints Agents reconciled per second and peak RSS of each, the API writes each
made (counted by the API server itself: `apiserver_request_total` by verb, for
Agents, their children and Events), every API request per Agent by verb and resource
(reads and watches too, everyone's: the bench's own watch and the control plane's
controllers included, so compare the operators' lines) and the watch events the API
server sent, and the ratios to the baseline and to the floor. For `rouse`
it then waits for the policy loop to have evaluated every Agent (its first evaluation
writes the WithinBudget condition), lets two drift resync rounds pass
(ROUSE_RESYNC_INTERVAL) and counts the writes of the second: a resync of unchanged
Agents should write nothing. The
headline ratios are the last lines, with the CPU per Agent of each operator against the
no-op's (operator and control plane together) and the throughput ratio the control plane's
share alone would allow. Usage (needs `make envtest`):
    python bench/operator_scale.py [--sizes 100 1000] [--operators baseline floor reconcile rouse]
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import urllib3  # noqa: E402
from kubernetes import client, config, watch  # noqa: E402
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
AGENTS = ("rouse.dev", "v1alpha1")
WRITE_VERBS = ("POST", "PUT", "PATCH", "APPLY", "DELETE")
# What an Agent operator writes: Agents (status, kopf's annotations), children, Events.
WRITTEN = {"agents", "services", "triggers", "pingsources", "events"}


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


class Handled:
    """Agents handled so far: carrying kopf's last-handled annotation (the no-op operator) or
    status.kopf.last-handled-configuration (Rouse keeps it there, written with the status).

    Counted from a watch: the API server sends each Agent write once; polling the list cost
    it every Agent per interval for the whole pass, the slower operator's the most.
    """

    def __init__(self, api: client.CustomObjectsApi, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.names: set[str] = set()
        self.stopped = False
        self.version = self._list()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def count(self) -> int:
        return len(self.names)

    def stop(self) -> None:
        self.stopped = True
        self._watch.stop()

    def _list(self) -> str:
        listed = self.api.list_namespaced_custom_object(*AGENTS, self.namespace, "agents")
        for item in listed["items"]:
            self._see(item)
        return str(listed["metadata"]["resourceVersion"])

    def _see(self, agent: dict[str, Any]) -> None:
        annotations = agent["metadata"].get("annotations") or {}
        if HANDLED in annotations or ((agent.get("status") or {}).get("kopf") or {}).get(
            "last-handled-configuration"
        ):
            self.names.add(agent["metadata"]["name"])

    def _follow(self) -> None:
        while not self.stopped:
            try:
                for event in self._watch.stream(
                    self.api.list_namespaced_custom_object, *AGENTS, self.namespace, "agents",
                    resource_version=self.version, timeout_seconds=300,
                ):  # fmt: skip
                    if event["type"] == "ERROR":  # the version expired: list again
                        self.version = self._list()
                        break
                    self.version = event["object"]["metadata"]["resourceVersion"]
                    self._see(event["object"])
            except (OSError, client.ApiException, urllib3.exceptions.HTTPError):
                if self.stopped:  # the pass is over (its namespace going, the cluster stopping)
                    return
                self.version = self._list()


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def api_counts() -> collections.Counter[str]:
    """What the API server has served so far, from its own /metrics: requests by verb and
    resource.group[/subresource] ("APPLY agents.rouse.dev/status"), watch events sent by kind
    ("watch event agents.rouse.dev")."""
    api = client.ApiClient()  # the kubeconfig's client certificate authenticates
    response = api.call_api("GET", f"{api.configuration.host}/metrics")
    counts: collections.Counter[str] = collections.Counter()
    for line in response.read().decode().splitlines():
        name, brace, rest = line.partition("{")
        if not brace or name not in ("apiserver_request_total", "apiserver_watch_events_total"):
            continue
        labels = {
            k: v.strip('"')
            for k, v in (part.split("=", 1) for part in rest[: rest.rindex("}")].split(","))
        }
        value = int(float(line.rsplit(" ", 1)[1]))
        if name == "apiserver_watch_events_total":
            kind = labels.get("kind") or labels.get("resource") or "-"
            counts[f"watch event {kind}.{labels.get('group', '')}".rstrip(".")] += value
            continue
        resource = labels.get("resource", "")
        if labels.get("group"):  # core Services and Knative Services apart
            resource = f"{resource}.{labels['group']}"
        if labels.get("subresource"):
            resource = f"{resource}/{labels['subresource']}"
        counts[f"{labels.get('verb', '')} {resource or '-'}"] += value
    return counts


def writes_of(counts: collections.Counter[str]) -> collections.Counter[str]:
    """The writes to Agents, their children and Events, by verb."""
    writes: collections.Counter[str] = collections.Counter()
    for key, value in counts.items():
        verb, _, resource = key.partition(" ")
        if verb in WRITE_VERBS and resource.split("/")[0].split(".")[0] in WRITTEN:
            writes[verb] += value
    return writes


def per_agent(counts: collections.Counter[str], count: int) -> str:
    """Requests and watch events per Agent, the most first (those under 0.01 per Agent left out)."""
    shown = [f"{k} {v / count:.2f}" for k, v in counts.most_common() if v >= count / 100]
    return ", ".join(shown) or "none"


def operator_metric(port: int, name: str) -> float:
    """A counter the operator exposes (summed over its labels)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return float("nan")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def show(writes: collections.Counter[str]) -> str:
    return " ".join(f"{verb}={writes[verb]}" for verb in WRITE_VERBS if writes[verb]) or "none"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (Linux /proc, 10 ms ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def plane_cpu(cluster: Any) -> dict[str, float]:
    return {name: cpu_seconds(pid) for name, pid in cluster.plane.pids.items()}


@dataclass
class Run:
    rate: float  # Agents reconciled per second
    rss: float  # peak RSS MiB when every Agent was handled
    writes: collections.Counter[str]  # API writes until then
    requests: collections.Counter[str]  # every request and watch event until then (api_counts)
    cpu: dict[str, float]  # CPU seconds until then: the operator and the control plane's parts
    reconciles: float  # Rouse's reconciles until then (NaN for the no-op operator)
    resync_writes: collections.Counter[str] | None = None  # writes of one resync round


def run_one(
    cluster: Any,
    api: client.CustomObjectsApi,
    argv: list[str],
    count: int,
    log: Path,
    resync: float | None = None,
) -> Run:
    """One operator over `count` fresh Agents; with `resync` (seconds), also one resync round."""
    namespace = cluster.create_namespace("bench")
    create_agents(api, namespace, count)
    port = free_port()
    interval = resync if resync is not None else 3600
    env = cluster.env | {"ROUSE_METRICS_PORT": str(port), "ROUSE_RESYNC_INTERVAL": str(interval)}
    seen = Handled(api, namespace)
    before, cpu_before = api_counts(), plane_cpu(cluster)
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen([*argv, namespace], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = started + 1800

        def alive() -> None:
            if proc.poll() is not None:
                raise SystemExit(f"operator exited {proc.returncode}; see {log}")
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out: {seen.count()}/{count} handled; see {log}")

        while seen.count() < count:
            alive()
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        seen.stop()
        rss = peak_rss_mib(proc.pid)
        cpu = {"operator": cpu_seconds(proc.pid)}
        cpu |= {k: v - cpu_before[k] for k, v in plane_cpu(cluster).items()}
        reconciles = operator_metric(port, "rouse_operator_reconciles_total")
        served = api_counts() - before
        result = Run(count / elapsed, rss, writes_of(served), served, cpu, reconciles)
        if resync is not None:
            # Count from the end of a round that began after every Agent was handled to the
            # end of the next: exactly one resync round of settled Agents (and its pause).
            def round_ends() -> None:
                rounds = operator_metric(port, "rouse_operator_resyncs_total")
                while operator_metric(port, "rouse_operator_resyncs_total") <= rounds:
                    alive()
                    time.sleep(0.2)

            # The policy loop's first evaluation of an Agent writes its WithinBudget condition
            # (once): let it have seen every Agent, so the round counted is a settled one.
            while operator_metric(port, "rouse_operator_policy_evaluation_seconds_count") < count:
                alive()
                time.sleep(0.5)
            round_ends()
            mark = api_counts()
            round_ends()
            result.resync_writes = writes_of(api_counts() - mark)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # kopf waits for in-flight handlers: do not hang
            print("  (operator slow to stop after SIGTERM; killed)", flush=True)
            proc.kill()
            proc.wait(timeout=10)
        cluster.delete_namespace(namespace)
        # The next operator starts on a quiet control plane: no cascade of deletions to
        # compete with, and none of its writes counted as that operator's.
        wait_gone(namespace, time.perf_counter() + 600)
        settle(time.perf_counter() + 120)
    return result


def settle(deadline: float) -> None:
    """Wait until nobody touches Agents or their children any more: after the namespace is
    gone the garbage collector still GETs the deleted children (hundreds of requests, counted
    as the next operator's otherwise)."""

    def touched() -> dict[str, int]:
        counts = api_counts()
        return {k: v for k, v in counts.items() if k.rsplit(" ", 1)[1].split(".")[0] in WRITTEN}

    last = touched()
    while time.perf_counter() < deadline:
        time.sleep(2)
        now = touched()
        if now == last:
            return
        last = now


def wait_gone(namespace: str, deadline: float) -> None:
    core = client.CoreV1Api()
    while time.perf_counter() < deadline:
        try:
            core.read_namespace(namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)
    raise SystemExit(f"namespace {namespace} still there after 600 s")


def floor_lines(count: int, results: dict[str, Run]) -> list[str]:
    """Each operator against the write floor (its own overhead), then the three headline ratios:
    Rouse/no-op (the issue's), Rouse/floor, floor/no-op (the most the contract allows here)."""
    floor, base, rouse = (results.get(k) for k in ("floor", "baseline", "rouse"))
    if floor is None:
        return []
    lines = [
        f"{count:>6} ratio {name}/floor: throughput {run.rate / floor.rate:.2f}, CPU per Agent"
        f" {sum(run.cpu.values()) / sum(floor.cpu.values()):.2f} (operator alone"
        f" {run.cpu['operator'] / floor.cpu['operator']:.2f})"
        for name, run in results.items()
        if name not in ("baseline", "floor")
    ]
    if base is not None and rouse is not None:
        lines.append(
            f"{count:>6} headline: rouse/no-op {rouse.rate / base.rate:.2f} (aim >= 0.5, goal 0.8);"
            f" rouse/floor {rouse.rate / floor.rate:.2f}; floor/no-op {floor.rate / base.rate:.2f}"
            " (the most an operator making the contract's writes reaches on this host)"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument(
        "--operators", nargs="+", default=["baseline", "floor", "reconcile", "rouse"],
        choices=["baseline", "floor", "reconcile", "rouse"],
    )  # fmt: skip
    parser.add_argument(
        "--resync",
        type=float,
        default=30.0,
        help="rouse's resync interval, seconds (default 30: longer than a 1000-Agent pass, whose"
        " Agents a round would otherwise read and whose children it would list again)",
    )
    args = parser.parse_args()
    headlines: list[str] = []
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
                "floor": [sys.executable, str(REPO / "bench" / "floor_operator.py")],
                "reconcile": [sys.executable, "-c", RECONCILER_ONLY],
                "rouse": [sys.executable, "-m", "rouse_operator", "--namespace"],
            }
            print(f"{'N':>6} {'operator':>10} {'agents/s':>9} {'peak RSS MiB':>13}  API writes")
            for count in args.sizes:
                results: dict[str, Run] = {}
                for name in args.operators:
                    resync = args.resync if name == "rouse" else None
                    log = work / f"{name}-{count}.log"
                    run = run_one(cluster, api, operators[name], count, log, resync)
                    results[name] = run
                    print(
                        f"{count:>6} {name:>10} {run.rate:>9.1f} {run.rss:>13.1f}  {show(run.writes)}"
                        f" ({sum(run.writes.values()) / count:.1f} per Agent)",
                        flush=True,
                    )
                    cpu = ", ".join(f"{k} {v:.1f}" for k, v in run.cpu.items())
                    print(f"{count:>6} {name:>10} CPU seconds: {cpu}", flush=True)
                    print(
                        f"{count:>6} {name:>10} per Agent: {per_agent(run.requests, count)}",
                        flush=True,
                    )
                    if run.reconciles == run.reconciles:  # not NaN: Rouse's metrics answered
                        print(
                            f"{count:>6} {name:>10} reconciles: {run.reconciles:.0f}"
                            f" ({run.reconciles / count:.2f} per Agent)",
                            flush=True,
                        )
                    if run.resync_writes is not None:
                        print(
                            f"{count:>6} {name:>10} one resync round of {count} settled Agents:"
                            f" API writes {show(run.resync_writes)}",
                            flush=True,
                        )
                base = results.get("baseline")
                for name, run in results.items():
                    if name == "baseline" or base is None:
                        continue
                    headlines.append(
                        f"{count:>6} ratio {name}/baseline: throughput {run.rate / base.rate:.2f}"
                        f" (aim >= 0.5, goal 0.8), peak RSS {run.rss / base.rss:.2f} (aim <= 1.5)"
                    )
                    # CPU-bound on a shared machine: the rate ratio follows the CPU ratio. The
                    # control plane's CPU for this operator's writes alone bounds it, however
                    # cheap the operator itself became.
                    plane = sum(run.cpu.values()) - run.cpu["operator"]
                    headlines.append(
                        f"{count:>6} CPU per Agent {name}/baseline (operator + control plane):"
                        f" {sum(run.cpu.values()) / sum(base.cpu.values()):.2f}; with an operator"
                        f" costing nothing the throughput ratio would be at most"
                        f" {sum(base.cpu.values()) / plane:.2f}"
                    )
                    if run.resync_writes is not None:
                        headlines.append(
                            f"{count:>6} resync writes ({name}): {sum(run.resync_writes.values())}"
                            " (aim 0)"
                        )
                headlines += floor_lines(count, results)
        finally:
            cluster.plane.stop()
    print(
        f"(python {sys.version.split()[0]}, {os.cpu_count()} CPUs, kube-apiserver + etcd on the same host)"
    )
    for line in headlines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
