# Thin wrappers: the work is in scripts/ and in uv-run tools. Every target is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export DAPR_RUNTIME_PATH := $(CURDIR)/.runtime
DAPR := $(DAPR_RUNTIME_PATH)/bin/dapr
# Which broker/store set `make up` uses: default (Redis, components/), a folder name under
# components/profiles/ (rabbitmq-postgres, nats-postgres), or the path of any folder of components
# with a profile.yaml naming its servers (components/profiles/README.md).
PROFILE ?= default
# Keep the model caches of every clone and run in one place.
export HF_HUB_OFFLINE := 1

.PHONY: help setup python dapr victorialogs toxiproxy k8s images infra secrets up down test fuzz test-unit test-integration lint

help:
	@echo "make up     set up what is missing and start the whole platform (PROFILE=$(PROFILE))"
	@echo "make test   set up what is missing and run every test"
	@echo "make down   stop what make up started: apps, sidecars, control plane, servers"

setup: python dapr victorialogs toxiproxy k8s infra  ## everything the platform and the tests need, installed once

python:
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	@echo "python: syncing the workspace (uv.lock)"
	@uv sync --all-packages --frozen
	@uv run --frozen python -m genai_models.prepare

dapr:
	@bash scripts/build-dapr.sh

# The log store and its file collector, built from VictoriaLogs' Go module (Prometheus and
# Alertmanager come from Debian with `infra`).
victorialogs:
	@bash scripts/build-victorialogs.sh

# The TCP fault proxy the network-cut test cuts links with (tests/integration/test_faults_network.py).
toxiproxy:
	@bash scripts/build-toxiproxy.sh

# A real Kubernetes API server, kwok, Dapr's injector and operator, actionlint (tests/k8s).
k8s:
	@bash scripts/build-k8s.sh

infra:
	@bash scripts/infra.sh install
	@bash scripts/infra.sh secrets
	@bash scripts/ui-assets.sh

up: setup
	@bash scripts/run-platform.sh $(PROFILE)

# Every app, sidecar and the control plane of a `make up` (wherever it runs), then the servers.
down:
	@bash scripts/run-platform.sh stop
	@bash scripts/run-platform.sh stop-servers

# The light apps' images from the Dockerfile, built with podman (tests/containers); the model
# apps' (~6 GB each) on demand: scripts/build-images.sh features inference training.
images: infra
	@bash scripts/build-images.sh

# Starts every profile's servers and Zipkin, runs pytest, then stops the servers this run started
# (not those running before, e.g. a `make up`'s), so no port stays held for another checkout.
test: setup images
	@bash scripts/run-tests.sh

# The long schemathesis run over the gateway's OpenAPI document, a new random seed each time
# (bench/fuzz/run.py; against `make up`'s platform when it runs, else one it starts and stops).
fuzz: setup
	@uv run --frozen python bench/fuzz/run.py

test-unit: python
	@uv run --frozen pytest -m unit

lint: python
	@uv run --frozen ruff check .
	@uv run --frozen ruff format --check .
