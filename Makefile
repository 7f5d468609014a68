# Glassbox: everything a newcomer needs is a target here.
#   make demo   a model served and explained locally, over real HTTP
#   make demo-graph   the same model through KServe's InferenceGraph router
#   make test   lint, unit and end-to-end tests (builds what it needs first)

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: lock help venv cluster-tools cluster-up cluster-down crds lint unit e2e test demo demo-graph demo-cluster bench reliability images clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[explainers,dev]"
	touch $(STAMP)

venv: $(STAMP) ## create .venv with glassbox and its development tools

cluster-tools: $(STAMP) ## install etcd, build kube-apiserver 1.20 once (cached in ~/.cache/glassbox), fetch kubectl and helm
	PYTHON=$(PY) bash e2e/cluster/install-tools.sh

cluster-up: cluster-tools ## start the local control plane; prints the KUBECONFIG to export
	$(PY) e2e/cluster/localcluster.py up

cluster-down: ## stop the local control plane and delete its state
	$(PY) e2e/cluster/localcluster.py down

crds: $(STAMP) ## regenerate the CRD from the pydantic API (crds/ and the chart)
	$(VENV)/bin/glassbox crd > crds/explainedmodels.glassbox.dev.yaml
	cp crds/explainedmodels.glassbox.dev.yaml charts/glassbox-operator/crds/explainedmodels.glassbox.dev.yaml

lint: $(STAMP) ## ruff and strict mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

unit: $(STAMP) cluster-tools ## tests that need no cluster (helm renders the chart; the data plane runs on loopback)
	$(PY) -m pytest operator/tests explainers/tests

e2e: $(STAMP) cluster-tools ## end-to-end tests on the local control plane, or on KUBECONFIG's cluster when set
	$(PY) -m pytest e2e

test: $(STAMP) cluster-tools lint ## everything: lint, unit and end-to-end tests
	$(PY) -m pytest

demo: $(STAMP) ## train a model, serve and explain it locally over HTTP, print explanations, write PNGs
	$(VENV)/bin/glassbox demo

demo-graph: $(STAMP) ## the demo's model through KServe's own InferenceGraph router, every route (needs ../shared/kserve-router, unshare -n)
	$(PY) e2e/graph/demo_graph.py

demo-cluster: $(STAMP) cluster-tools ## start the local API server, apply a sample, print what the operator created
	$(PY) e2e/demo_control_plane.py $(ARGS)

lock: ## regenerate operator/requirements.lock (the operator image's dependencies, pinned with hashes) with pip-tools in .venv-lock
	test -x .venv-lock/bin/pip-compile || ($(PYTHON_BOOTSTRAP) -m venv .venv-lock && .venv-lock/bin/pip install -q pip-tools)
	.venv-lock/bin/pip-compile --quiet --allow-unsafe --generate-hashes --no-emit-find-links --no-emit-index-url --strip-extras \
		--output-file operator/requirements.lock pyproject.toml
	sed -i 's|^#    pip-compile .*|#    make lock  (pip-compile --allow-unsafe --generate-hashes --no-emit-find-links --no-emit-index-url --strip-extras pyproject.toml)|' operator/requirements.lock

images: ## build the container images (needs a Docker engine; not part of the tests)
	docker build -f operator/Dockerfile -t ghcr.io/glassbox-dev/glassbox-operator:0.1.0 .
	docker build -f explainers/Dockerfile.explainer -t ghcr.io/glassbox-dev/glassbox-explainer:0.1.0 .
	docker build -f explainers/Dockerfile.predictor -t ghcr.io/glassbox-dev/glassbox-predictor:0.1.0 .

clean: cluster-down
	rm -rf $(VENV) .glassbox .pytest_cache .mypy_cache .ruff_cache

reliability: $(STAMP) ## the data plane under hostile input, overload, a dripping predictor and SIGTERM, against the targets; writes bench/results/reliability.*
	$(PY) bench/reliability.py $(RELIABILITY_ARGS)

bench: $(STAMP) cluster-tools ## the benchmark: in-process alibi vs Glassbox over HTTP vs MLServer, and the control plane; writes bench/results/
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/control_plane.py
