"""Knative's YAML for the one-node cluster, assembled from the pinned modules' own config/.

Knative publishes its release YAML only on GitHub releases, which this machine cannot reach;
the Go module zips carry the `config/` directories the release is made from (minus symlinks).
This module turns those documents into what a 2-core node with locally built images can run:
`ko://` images become `dev.local/knative/<binary>:<version>`, no resource requests, no
HPAs/PDBs, nothing pulled, and the ConfigMaps the node needs (tag resolution, ingress class,
secure pod defaults). The transforms are pure (documents in, documents out); `main` does I/O.

Usage: assemble.py binaries                 (`<import path> <binary name>` per line)
       assemble.py manifests --out DIR     (module versions: this directory's go.mod)
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

Doc = dict[str, Any]

REGISTRY = "dev.local/knative"
KO_PREFIX = "ko://"
INGRESS_CLASS = "rouse.ingress.networking.knative.dev"
# The domain of public Routes (a front door's URL is http://<service>.<namespace>.<this>).
PUBLIC_DOMAIN = "rouse.test"
# The modules whose config/ makes the YAML, in upstream_files' argument order.
MODULES = (
    "knative.dev/serving",
    "knative.dev/eventing",
    "knative.dev/networking",
    "knative.dev/caching",
)
DROPPED_KINDS = frozenset({"HorizontalPodAutoscaler", "PodDisruptionBudget"})

# Every binary the assembled YAML runs (plus event-display, a sink for tests), by import path.
# The same set is the `tool` block of go.mod (a unit test keeps them equal).
BINARIES: dict[str, str] = {
    "knative.dev/serving/cmd/controller": "serving-controller",
    "knative.dev/serving/cmd/webhook": "serving-webhook",
    "knative.dev/serving/cmd/activator": "activator",
    "knative.dev/serving/cmd/autoscaler": "autoscaler",
    "knative.dev/serving/cmd/queue": "queue",
    "knative.dev/eventing/cmd/controller": "eventing-controller",
    "knative.dev/eventing/cmd/webhook": "eventing-webhook",
    "knative.dev/eventing/cmd/broker/ingress": "broker-ingress",
    "knative.dev/eventing/cmd/broker/filter": "broker-filter",
    "knative.dev/eventing/cmd/in_memory/channel_controller": "imc-controller",
    "knative.dev/eventing/cmd/in_memory/channel_dispatcher": "imc-dispatcher",
    "knative.dev/eventing/cmd/mtchannel_broker": "mtchannel-broker",
    "knative.dev/eventing/cmd/mtping": "mtping",
    "knative.dev/eventing/cmd/event_display": "event-display",
    # Required env vars of eventing-controller (ApiServerSource, OIDC auth proxy).
    "knative.dev/eventing/cmd/apiserver_receive_adapter": "apiserver-receive-adapter",
    "knative.dev/eventing/cmd/auth_proxy": "auth-proxy",
}

# ConfigMap data the node needs, by (namespace, name).
SERVING_CONFIG: dict[tuple[str, str], dict[str, str]] = {
    # Local images have no registry to resolve digests from.
    ("knative-serving", "config-deployment"): {
        "registries-skipping-tag-resolving": "kind.local,ko.local,dev.local,ghcr.io",
    },
    # Rouse writes restricted pod security contexts.
    ("knative-serving", "config-features"): {
        "kubernetes.podspec-securitycontext": "enabled",
        "secure-pod-defaults": "enabled",
    },
    # The project's own KIngress implementation (hack/node/kingress/).
    ("knative-serving", "config-network"): {"ingress-class": INGRESS_CLASS},
    # A public domain for public Routes. Under upstream's default (none configured, so
    # svc.cluster.local) Serving makes every Route cluster-local (visibility.go: a Route whose
    # domain is svc.<cluster domain> gets no ExternalIP rule), so nothing, a front door
    # included, would be reachable through the ingress's public listener. Callers name the
    # host (curl -H "Host: ..."), so no DNS is needed; `.test` is reserved (RFC 2606).
    ("knative-serving", "config-domain"): {PUBLIC_DOMAIN: ""},
}

# Upstream workloads left out: not needed for Serving, Eventing core, the in-memory channel,
# the MT channel-based broker or PingSource, and their binaries are not built.
EVENTING_SKIPPED_FILES = frozenset(
    {"core/deployments/job-sink.yaml", "core/deployments/request-reply.yaml"}
)


class AssembleError(Exception):
    """The upstream YAML is not what this module expects (a new version changed it)."""


def image_refs(binaries: Mapping[str, str], versions: Mapping[str, str]) -> dict[str, str]:
    """Import path -> local image reference, tagged with the version of the binary's module."""

    def version(path: str) -> str:
        for module, module_version in versions.items():
            if path.startswith(module + "/"):
                return module_version
        raise AssembleError(f"{path} is in none of the modules {', '.join(versions)}")

    return {path: f"{REGISTRY}/{name}:{version(path)}" for path, name in binaries.items()}


def describe(doc: Doc) -> str:
    """`Kind namespace/name`, for error messages."""
    meta = doc.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{doc.get('kind')} {where}{meta.get('name')}"


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """A copy of a YAML value with every string passed through fn."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {key: _map_strings(item, fn) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_strings(item, fn) for item in value]
    return value


def resolve_images(doc: Doc, images: Mapping[str, str]) -> Doc:
    """Replace every `ko://<import path>` string (images, env values, ConfigMap data)."""

    def resolve(text: str) -> str:
        if not text.startswith(KO_PREFIX):
            return text
        path = text.removeprefix(KO_PREFIX)
        if path not in images:
            raise AssembleError(
                f"{describe(doc)} uses {text}, which is not built (add it to BINARIES)"
            )
        return images[path]

    resolved: Doc = _map_strings(doc, resolve)
    return resolved


def _pod_spec(doc: Doc) -> Doc | None:
    """The pod spec inside a workload, or None for other kinds."""
    spec = doc.get("spec") or {}
    kind = doc.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        return (spec.get("template") or {}).get("spec")
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return (spec.get("template") or {}).get("spec")
    return None


def adapt_pods(doc: Doc) -> Doc:
    """No resource requests/limits (2 cores run everything) and never pull (images are preloaded)."""
    adapted = copy.deepcopy(doc)
    pod = _pod_spec(adapted)
    if pod is None:
        return adapted
    for key in ("initContainers", "containers"):
        for container in pod.get(key) or []:
            container.pop("resources", None)
            container["imagePullPolicy"] = "IfNotPresent"
    return adapted


def set_config(
    docs: Sequence[Doc], config: Mapping[tuple[str, str], Mapping[str, str]]
) -> list[Doc]:
    """Set ConfigMap data keys; every ConfigMap named in config must be among docs."""
    missing = set(config)
    out: list[Doc] = []
    for doc in docs:
        meta = doc.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        if doc.get("kind") == "ConfigMap" and key in config:
            doc = copy.deepcopy(doc)
            doc["data"] = {**(doc.get("data") or {}), **config[key]}
            missing.discard(key)
        out.append(doc)
    if missing:
        names = ", ".join(f"{ns}/{name}" for ns, name in sorted(missing))
        raise AssembleError(f"ConfigMap(s) to configure not found in the upstream YAML: {names}")
    return out


def check_unique(docs: Iterable[Doc]) -> None:
    """Fail on two documents for one object (a file picked up twice, or a renamed copy)."""
    seen: set[str] = set()
    for doc in docs:
        api_group = str(doc.get("apiVersion", "")).rpartition("/")[0]
        name = f"{api_group}/{describe(doc)}"
        if name in seen:
            raise AssembleError(f"{describe(doc)} is defined twice")
        seen.add(name)


def adapt(docs: Iterable[Doc | None], images: Mapping[str, str]) -> list[Doc]:
    """Upstream documents -> node documents: images, pods, no HPA/PDB, no empty documents."""
    return [
        adapt_pods(resolve_images(doc, images))
        for doc in docs
        if doc and doc.get("kind") not in DROPPED_KINDS
    ]


def split_crds(docs: Iterable[Doc]) -> tuple[list[Doc], list[Doc]]:
    """(CRDs, the rest with Namespaces first): CRDs must be Established before their objects."""
    docs = list(docs)
    crds = [d for d in docs if d.get("kind") == "CustomResourceDefinition"]
    rest = [d for d in docs if d.get("kind") != "CustomResourceDefinition"]
    rest.sort(key=lambda d: d.get("kind") != "Namespace")  # stable: upstream order otherwise
    return crds, rest


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (ConfigMaps' `_example`) as literal blocks, readable as upstream."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def manifest(docs: Sequence[Doc], source: str) -> str:
    """Multi-document YAML with a header saying where it came from."""
    header = f"# Generated by hack/node/knative/assemble.py from {source}; do not edit.\n"
    body = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    return header + "---\n" + body


def workloads(docs: Iterable[Doc]) -> list[str]:
    """`namespace/name` of each Deployment that must become Available (replicas != 0)."""
    return [
        f"{d['metadata']['namespace']}/{d['metadata']['name']}"
        for d in docs
        if d.get("kind") == "Deployment" and (d.get("spec") or {}).get("replicas", 1) != 0
    ]


def readme(files: Sequence[tuple[str, str]], available: Sequence[str]) -> str:
    """The manifests directory's README: apply order and what to wait for."""
    crds = [crd for crd, _ in files]
    rest = [other for _, other in files]
    lines = [
        "Knative for the one-node cluster (hack/node/knative/build.sh; do not edit).",
        "",
        "Apply in this order (kubectl apply --server-side -f FILE ...):",
        f"  1. {' '.join(crds)}",
        "     then wait until every CRD is Established",
        f"  2. {' '.join(rest)}",
        "",
        "Then wait for these Deployments to be Available:",
        *(f"  {name}" for name in available),
        "(pingsource-mt-adapter has 0 replicas until a PingSource exists.)",
        "",
        "Serving's webhook configurations ship with rules (failurePolicy Fail): until",
        "knative-serving/webhook is Available, creating Knative Services and re-applying",
        "step 2 (its Certificate goes through the webhook) fail. Eventing's webhooks get",
        "their rules from eventing-webhook itself once it runs.",
        "",
        "images.txt: `<image-ref> <binary-name>` per image (ko layout /ko-app/<binary-name>,",
        "user 65532); every image must be in containerd before step 2 (nothing is pulled).",
        "",
    ]
    return "\n".join(lines)


def images_txt(images: Mapping[str, str], binaries: Mapping[str, str]) -> str:
    """`<image-ref> <binary-name>` per line, for hack/node/images.sh."""
    return "".join(
        f"{images[path]} {binaries[path]}\n" for path in sorted(binaries, key=lambda p: binaries[p])
    )


# ---- I/O ----


def load_yaml(files: Iterable[Path]) -> list[Doc | None]:
    """Every document of every file, in the given order."""
    docs: list[Doc | None] = []
    for file in files:
        docs.extend(yaml.safe_load_all(file.read_text()))
    return docs


def yaml_files(root: Path, *subdirs: str, skip: Iterable[str] = ()) -> list[Path]:
    """`*.yaml` under root/subdir (recursive, lexical order like `ko resolve -R`), minus skip."""
    skipped = {root / s for s in skip}
    files: list[Path] = []
    for subdir in subdirs:
        found = sorted((root / subdir).rglob("*.yaml"))
        if not found:
            raise AssembleError(f"no YAML under {root / subdir}")
        files.extend(f for f in found if f not in skipped)
    return files


def upstream_files(
    serving: Path, eventing: Path, networking: Path, caching: Path
) -> dict[str, list[Path]]:
    """The YAML files of each product, as its release assembles them."""
    # Symlinks in the serving repository (to vendored networking and caching), dropped from
    # its module zip: taken from those modules at the versions serving pins.
    networking_files = [
        networking / "config" / name
        for name in (
            "certificate.yaml",
            "domain-claim.yaml",
            "ingress.yaml",
            "serverlessservice.yaml",
            "config-network.yaml",
        )
    ]
    return {
        "serving": yaml_files(serving / "config", "core")
        + networking_files
        + [caching / "config" / "image.yaml"],
        "eventing": yaml_files(
            eventing / "config",
            "core",
            "channels/in-memory-channel",
            "brokers/mt-channel-broker",
            skip=EVENTING_SKIPPED_FILES,
        )
        # Symlinked into config/core/configmaps/ upstream; eventing-controller reads them.
        + yaml_files(eventing, "third_party/eventing-integrations-latest"),
    }


def parse_go_json(text: str) -> list[dict[str, Any]]:
    """The JSON objects `go mod download -json` prints one after another."""
    decoder = json.JSONDecoder()
    objects: list[dict[str, Any]] = []
    pos = 0
    while (pos := _skip_space(text, pos)) < len(text):
        obj, pos = decoder.raw_decode(text, pos)
        objects.append(obj)
    return objects


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


def locate_modules(module_dir: Path) -> dict[str, tuple[str, Path]]:
    """Module path -> (version, directory) in the wrapper's build list, downloading as needed.

    The build list is what the binaries are built from, so the YAML matches them; networking
    and caching come at the versions serving pins.
    """
    try:
        proc = subprocess.run(
            ["go", "mod", "download", "-json", *MODULES],
            cwd=module_dir,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError as err:
        raise AssembleError("'go' is not on PATH; install Go >= 1.26 (https://go.dev/dl/)") from err
    found = {m["Path"]: m for m in parse_go_json(proc.stdout)} if proc.stdout.strip() else {}
    errors = [m["Error"] for m in found.values() if m.get("Error")]
    if proc.returncode != 0 or errors or set(found) != set(MODULES):
        detail = "; ".join(errors) or proc.stderr.strip() or f"got {sorted(found)}"
        raise AssembleError(f"go mod download in {module_dir} failed: {detail}")
    return {path: (m["Version"], Path(m["Dir"])) for path, m in found.items()}


def write_manifests(module_dir: Path, out: Path) -> None:
    """Read the modules' config/, write the manifests, images.txt and README into out."""
    modules = locate_modules(module_dir)
    images = image_refs(BINARIES, {path: version for path, (version, _) in modules.items()})
    sources = upstream_files(*(modules[path][1] for path in MODULES))
    config = {"serving": SERVING_CONFIG}
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[str, str]] = []
    available: list[str] = []
    for product, files in sources.items():
        docs = set_config(adapt(load_yaml(files), images), config.get(product, {}))
        check_unique(docs)
        crds, rest = split_crds(docs)
        path = f"knative.dev/{product}"
        source = f"{path}@{modules[path][0]} config/"
        names = (f"knative-{product}-crds.yaml", f"knative-{product}.yaml")
        (out / names[0]).write_text(manifest(crds, source))
        (out / names[1]).write_text(manifest(rest, source))
        print(f"knative: wrote {names[0]} ({len(crds)} CRDs), {names[1]} ({len(rest)} objects)")
        written.append(names)
        available += workloads(rest)
    (out / "images.txt").write_text(images_txt(images, BINARIES))
    (out / "README").write_text(readme(written, available))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("binaries", help="print `<import path> <binary name>` per line")
    build = sub.add_parser("manifests", help="write the manifests, images.txt and README")
    build.add_argument("--out", required=True, type=Path, help="output directory")
    build.add_argument(
        "--module-dir",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="the wrapper Go module (default: this directory)",
    )
    args = parser.parse_args(argv)
    if args.command == "binaries":
        print("".join(f"{path} {name}\n" for path, name in BINARIES.items()), end="")
        return 0
    try:
        write_manifests(args.module_dir, args.out)
    except (AssembleError, OSError, yaml.YAMLError) as err:
        print(f"knative: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
