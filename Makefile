# Glassbox: everything a newcomer needs is a target here.
#   make demo   a model served and explained locally, over real HTTP
#   make demo-graph   the same model through KServe's InferenceGraph router
#   make test   lint, unit and end-to-end tests (builds what it needs first)
#   make images-test   the container images built (buildah, no Docker engine) and run as a cluster runs them

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: lock lock-cpu image-tools base-image images images-test push pin-images format help venv cluster-tools cluster-up cluster-down crds lint unit e2e test demo demo-graph demo-cluster bench reliability scale images clean

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml testing/pyproject.toml
	$(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[explainers,dev]"
	$(PY) -m pip install -q --no-deps -e testing
	touch $(STAMP)

venv: $(STAMP) ## create .venv with glassbox and its development tools

cluster-tools: $(STAMP) ## install etcd, build kube-apiserver 1.20 once (cached in ~/.cache/glassbox), fetch kubectl and helm
	PYTHON=$(PY) bash e2e/cluster/install-tools.sh

cluster-up: cluster-tools ## start the local control plane; prints the KUBECONFIG to export
	$(PY) -m glassbox_testing.localcluster up

cluster-down: ## stop the local control plane and delete its state
	$(PY) -m glassbox_testing.localcluster down

crds: $(STAMP) ## regenerate the CRD from the pydantic API (crds/ and the chart)
	$(VENV)/bin/glassbox crd > crds/explainedmodels.glassbox.dev.yaml
	cp crds/explainedmodels.glassbox.dev.yaml charts/glassbox-operator/crds/explainedmodels.glassbox.dev.yaml

format: $(STAMP) ## format the code as make lint expects (ruff format)
	$(VENV)/bin/ruff format .

lint: $(STAMP) ## ruff (format and checks), strict mypy, the import contract between the planes, and the links between the docs
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider operator/tests/test_import_contract.py operator/tests/test_docs_links.py

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

# The images are linux/amd64 with CPython 3.11 (python:3.11-slim, glibc 2.36). uv resolves for that
# platform from package metadata alone, so the explainer's torch pin locks PyPI's CUDA wheel and its
# nvidia-* dependencies even on a machine that has only the CPU build. The index is pip's own, if set.
LOCK_UV := .venv-lock/bin/uv
LOCK_INDEX := $(shell $(PYTHON_BOOTSTRAP) -m pip config get global.index-url 2>/dev/null)
LOCK_COMPILE = echo 'setuptools>=68' | $(LOCK_UV) pip compile --quiet --no-config --python-version 3.11 \
	--python-platform x86_64-manylinux_2_28 --generate-hashes --custom-compile-command "make lock" \
	$(if $(LOCK_INDEX),--default-index $(LOCK_INDEX)) pyproject.toml -

lock: ## regenerate the images' lock files (every package pinned with hashes, the build backend setuptools too)
	test -x $(LOCK_UV) || ($(PYTHON_BOOTSTRAP) -m venv .venv-lock && .venv-lock/bin/pip install -q "uv>=0.9,<1")
	$(LOCK_COMPILE) -o operator/requirements.lock
	$(LOCK_COMPILE) --extra explainers --extra storage -o explainers/requirements-explainer.lock
	$(MAKE) lock-cpu

# The -cpu images: the same pins as the CUDA lock (its other packages as constraints) with PyTorch's
# CPU-only torch, found where TORCH_CPU_WHEELS points (a folder or an index page of such wheels; by default
# pip's own find-links, where this machine keeps one). The lock records the wheel's SHA-256.
TORCH_CPU_WHEELS ?= $(shell $(PYTHON_BOOTSTRAP) -m pip config get global.find-links 2>/dev/null)
CPU_PINS := build/lock/cuda-pins.txt
lock-cpu: ## regenerate the -cpu images' lock from the CUDA one (needs TORCH_CPU_WHEELS)
	@test -n "$(TORCH_CPU_WHEELS)" || (echo "lock-cpu: set TORCH_CPU_WHEELS to a folder or index page with torch's CPU wheel" >&2; exit 1)
	test -x $(LOCK_UV) || ($(PYTHON_BOOTSTRAP) -m venv .venv-lock && .venv-lock/bin/pip install -q "uv>=0.9,<1")
	mkdir -p build/lock && echo 'torch==2.13.0+cpu' > build/lock/torch-cpu.txt
	grep -E '^[a-z0-9]' explainers/requirements-explainer.lock | sed 's/ \\$$//' | grep -v '^torch==' > $(CPU_PINS)
	$(LOCK_COMPILE) --find-links $(TORCH_CPU_WHEELS) --override build/lock/torch-cpu.txt -c $(CPU_PINS) \
		--extra explainers --extra storage -o explainers/requirements-explainer-cpu.lock

BASE_IMAGE := python:3.11-slim
pin-images: ## point every Dockerfile's default BASE_IMAGE at $(BASE_IMAGE)'s current digest (skopeo; needs the registry)
	digest=sha256:$$(skopeo inspect --raw docker://$(BASE_IMAGE) | sha256sum | cut -d' ' -f1) && \
	sed -i -E "s|^ARG BASE_IMAGE=$(BASE_IMAGE)(@sha256:[0-9a-f]{64})?|ARG BASE_IMAGE=$(BASE_IMAGE)@$$digest|" operator/Dockerfile explainers/Dockerfile.*

image-tools: ## install buildah, podman, runc, mmdebstrap and skopeo (Debian) for the images
	bash images/install-tools.sh

base-image: ## make the images' base from Debian's packages (bookworm, CPython 3.11), for machines that reach no registry
	bash images/install-tools.sh
	bash images/base-image.sh

images: ## build the images with buildah (no Docker engine): operator, explainer, predictor, and -cpu flavours
	PYTHON=$(PYTHON_BOOTSTRAP) bash images/build.sh $(IMAGES)

images-test: $(STAMP) cluster-tools images ## run each image as a cluster would (non-root, read-only root) against the local API server and KServe's router
	$(PY) -m glassbox_testing.kserve_router
	GLASSBOX_IMAGES_TEST_NETNS=1 unshare -n $(PY) -m pytest -p no:cacheprovider images/tests $(PYTEST_ARGS)

REGISTRY ?=
push: ## copy the built images to REGISTRY (e.g. make push REGISTRY=registry.example.com/team), then helm install with --set
	@test -n "$(REGISTRY)" || (echo "push: name the registry and path, e.g. make push REGISTRY=registry.example.com/team" >&2; exit 1)
	bash images/push.sh $(REGISTRY) $(IMAGES)

clean: cluster-down
	rm -rf $(VENV) .glassbox .pytest_cache .mypy_cache .ruff_cache

scale: $(STAMP) ## explainer replicas behind a stand-in for Knative (activator, autoscaler): a burst and two ramps, before #25 and now; writes bench/results/scale.*
	$(PY) bench/scale.py $(SCALE_ARGS)

reliability: $(STAMP) ## the data plane under hostile input, overload, a dripping predictor and SIGTERM, against the targets; writes bench/results/reliability.*
	$(PY) bench/reliability.py $(RELIABILITY_ARGS)

bench: $(STAMP) cluster-tools ## the benchmark: in-process alibi vs Glassbox over HTTP vs MLServer, the generated family (speed, counterfactuals), explanation records, drift and outliers on ground truth, counterfactual sparsity, and the control plane; writes bench/results/
	$(PY) bench/run.py $(BENCH_ARGS)
	$(PY) bench/family.py $(filter --quick,$(BENCH_ARGS))
	$(PY) bench/records.py $(filter --quick,$(BENCH_ARGS))
	$(PY) bench/drift.py $(filter --quick,$(BENCH_ARGS))
	$(PY) bench/outliers.py $(filter --quick,$(BENCH_ARGS))
	$(PY) bench/counterfactuals.py $(filter --quick,$(BENCH_ARGS))
	$(PY) bench/control_plane.py
