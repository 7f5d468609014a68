"""The CRD is generated from the API and checked in twice; the chart lints and renders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from glassbox.operator.crd import build_crd, render_crd
from glassbox_testing.samples import REPO

CHECKED_IN = [
    REPO / "crds" / "explainedmodels.glassbox.dev.yaml",
    REPO / "charts" / "glassbox-operator" / "crds" / "explainedmodels.glassbox.dev.yaml",
]
CHART = REPO / "charts" / "glassbox-operator"


@pytest.mark.parametrize("path", CHECKED_IN, ids=["crds", "chart"])
def test_checked_in_crd_matches_the_api(path: Path) -> None:
    assert path.read_text() == render_crd(), f"{path} drifted from glassbox.contract.api: run `make crds` and commit"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for key, child in (node.get("properties") or {}).items():
        found += _walk(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def test_the_schema_is_structural_and_documented() -> None:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema["properties"]["spec"], "spec"):
        assert not {"$ref", "anyOf", "oneOf", "allOf", "additionalProperties"} & set(node) or isinstance(
            node.get("additionalProperties"), dict
        ), path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        assert node.get("description") or path.endswith("[]") or path.endswith("{}"), f"{path} has no description"


def test_the_cli_prints_the_crd() -> None:
    out = subprocess.run([sys.executable, "-m", "glassbox.cli", "crd"], capture_output=True, text=True, check=True).stdout
    assert yaml.safe_load(out)["metadata"]["name"] == "explainedmodels.glassbox.dev"


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    from glassbox_testing import localcluster

    return subprocess.run([localcluster.tool("helm"), *args], capture_output=True, text=True)


def test_helm_lint() -> None:
    result = _helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_rejects_values_outside_the_schema() -> None:
    result = _helm("template", "x", str(CHART), "--set", "replicas=9")
    assert result.returncode != 0 and "replicas" in result.stderr


def _rendered(*sets: str) -> list[dict[str, Any]]:
    result = _helm("template", "glassbox-operator", str(CHART), "--namespace", "glassbox-system", *[f"--set={s}" for s in sets])
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_deployment_is_locked_down() -> None:
    deployment = next(d for d in _rendered() if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["limits"]["memory"]


def _scoped(documents: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return [
        (d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
        for d in documents
        if d["kind"].endswith(("Role", "RoleBinding"))
    ]


def _args(documents: list[dict[str, Any]]) -> list[str]:
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    return list(deployment["spec"]["template"]["spec"]["containers"][0]["args"])


def test_rbac_is_the_release_namespace_by_default_listed_namespaces_or_cluster_wide_on_request() -> None:
    default = _rendered()
    assert ("Role", "glassbox-operator", "glassbox-system") in _scoped(default)
    assert ("ClusterRole", "glassbox-system-glassbox-operator", None) not in _scoped(default)
    assert _args(default) == ["operator", "--namespace=glassbox-system"]

    listed = _rendered("watchNamespaces={ml,risk}")
    assert {(k, ns) for k, _, ns in _scoped(listed) if k == "Role" and _ != "glassbox-operator-leader-election"} == {
        ("Role", "ml"),
        ("Role", "risk"),
    }
    assert _args(listed) == ["operator", "--namespace=ml", "--namespace=risk"]

    wide = _rendered("clusterWide=true")
    assert ("ClusterRole", "glassbox-system-glassbox-operator", None) in _scoped(wide)
    assert _args(wide) == ["operator"]

    reader = next(d for d in default if d["kind"] == "ClusterRole")
    assert reader["metadata"]["name"] == "glassbox-system-glassbox-operator-reader"
    assert all(set(rule["verbs"]) <= {"get", "list", "watch"} for rule in reader["rules"])
    # Cluster-wide, only the ClusterServingRuntimes an existing InferenceService names: no namespaces, no CRDs
    # (kopf scans neither; the operator watches its own kinds in its own namespaces).
    wide_reader = next(d for d in wide if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-reader"))
    for rendered in (reader, wide_reader):
        assert [rule["resources"] for rule in rendered["rules"]] == [["clusterservingruntimes"]]
    # The Lease: any may be created (a name cannot restrict create), only ours read and renewed.
    lease_rules = next(
        d for d in default if d["metadata"]["name"] == "glassbox-operator-leader-election" and d["kind"] == "Role"
    )["rules"]
    assert {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "resourceNames": ["glassbox-operator"],
        "verbs": ["get", "update"],
    } in lease_rules


def test_two_namespaced_installs_share_no_cluster_scoped_name() -> None:
    def cluster_scoped(namespace: str) -> set[str]:
        result = _helm("template", "glassbox-operator", str(CHART), "--namespace", namespace)
        assert result.returncode == 0, result.stderr
        return {d["metadata"]["name"] for d in yaml.safe_load_all(result.stdout) if d and "namespace" not in d["metadata"]}

    assert cluster_scoped("team-a") and not cluster_scoped("team-a") & cluster_scoped("team-b")


def test_no_rule_grants_wildcards_or_secrets() -> None:
    for document in _rendered():
        for rule in document.get("rules") or []:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
            assert "secrets" not in rule["resources"]


def test_an_optional_network_policy_admits_only_glassbox_system_namespaces_and_listed_clients() -> None:
    assert not [d for d in _rendered() if d["kind"] == "NetworkPolicy"]
    documents = _rendered("networkPolicy.enabled=true", "watchNamespaces={ml,risk}")
    policies = [d for d in documents if d["kind"] == "NetworkPolicy"]
    assert [p["metadata"]["namespace"] for p in policies] == ["ml", "risk"]
    spec = policies[0]["spec"]
    assert spec["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/managed-by": "glassbox",
        "app.kubernetes.io/component": "predictor",
    }
    peers = spec["ingress"][0]["from"]
    assert peers[0]["podSelector"]["matchExpressions"][1] == {
        "key": "app.kubernetes.io/component",
        "operator": "In",
        "values": ["explainer", "graph"],
    }
    assert peers[1]["namespaceSelector"]["matchExpressions"][0]["values"] == ["knative-serving", "istio-system", "kserve"]
    refused = _helm("template", "x", str(CHART), "--set", "networkPolicy.enabled=true", "--set", "clusterWide=true")
    assert refused.returncode != 0 and "watchNamespaces" in refused.stderr


IMAGE_LOCKS = {
    # lock file: the extras its image installs on top of the project's dependencies
    "operator/requirements.lock": (),
    "explainers/requirements-explainer.lock": ("explainers", "storage"),
    # the -cpu images: the same pins with PyTorch's CPU-only torch (`make lock-cpu`)
    "explainers/requirements-explainer-cpu.lock": ("explainers", "storage"),
}


@pytest.mark.parametrize("lock_path,extras", IMAGE_LOCKS.items())
def test_each_image_lock_pins_every_dependency_within_pyproject_with_hashes(lock_path: str, extras: tuple[str, ...]) -> None:
    """Each image's lock (`make lock`) must still satisfy pyproject's requirements for that image, every pin hashed."""
    import tomllib

    from packaging.requirements import Requirement

    lock = (REPO / lock_path).read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.M))
    blocks = re.findall(r"^[A-Za-z0-9_.-]+==\S+ \\\n((?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", lock, re.M)
    assert pins and len(blocks) == len(pins), "every pinned package carries its hashes"
    normalized = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins.items()}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = list(project["project"]["dependencies"]) + [
        line for extra in extras for line in project["project"]["optional-dependencies"][extra]
    ]
    wanted += project["build-system"]["requires"]  # the build backend is pinned too
    for line in wanted:
        requirement = Requirement(line)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in normalized, f"{requirement.name} is not in {lock_path}: run make lock"
        assert requirement.specifier.contains(normalized[name]), (
            f"{requirement.name}=={normalized[name]} breaks {line}: run make lock"
        )
    if "explainers" in extras and not lock_path.endswith("-cpu.lock"):
        # resolved for the image's platform (linux/amd64), not this machine's CPU-only torch
        assert "nvidia-cublas" in normalized and "+cpu" not in normalized["torch"]
    if lock_path.endswith("-cpu.lock"):
        assert normalized["torch"].endswith("+cpu") and not any(name.startswith("nvidia-") for name in normalized)
        cuda = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", (REPO / lock_path.replace("-cpu", "")).read_text(), re.M))
        differing = {name for name, version in pins.items() if name in cuda and cuda[name] != version}
        assert differing == {"torch"}, f"{lock_path} pins {differing - {'torch'}} unlike its CUDA lock: run make lock-cpu"


def test_every_image_builds_from_a_base_pinned_by_digest_and_installs_only_its_lock() -> None:
    """A tag can be moved under us; a digest cannot. `make pin-images` moves all of them together. Each build
    installs its lock's wheels, hash-checked, with no index (images/wheelhouse.py fetched them), then Glassbox's;
    the predictor image is the explainer image's environment with its own entrypoint."""
    bases: set[str] = set()
    for dockerfile in (REPO / "operator" / "Dockerfile", REPO / "explainers" / "Dockerfile.explainer"):
        text = dockerfile.read_text()
        assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}"], dockerfile
        defaults = re.findall(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
        assert len(defaults) == 1 and re.fullmatch(r"[a-z0-9./:-]+@sha256:[0-9a-f]{64}", defaults[0]), (dockerfile, defaults)
        bases.update(defaults)
        joined = text.replace("\\\n", " ")  # each RUN on one line
        installs = re.findall(r"pip --python /opt/glassbox/bin/python install[^&\n]*", joined)
        assert len(installs) == 2 and all("--no-index" in line for line in installs), installs
        assert "--require-hashes --find-links=/src/$WHEELS -r /src/$LOCK" in installs[0], installs
        assert "--no-deps /src/build/wheels/glassbox/" in installs[1], installs
        assert re.findall(r"^ARG LOCK=(\S+)", text, re.M)[0] in IMAGE_LOCKS, dockerfile
        assert 'test -n "$LOCK_SHA256"' in text, "the packages' layer is cached by the lock's digest"
        assert 'test -n "$GLASSBOX_SHA256"' in text, "Glassbox's layer is cached by its wheel's digest"
    assert len(bases) == 1, f"one base image for all: {bases}"
    predictor = (REPO / "explainers" / "Dockerfile.predictor").read_text()
    assert re.findall(r"^FROM (\S+)", predictor, re.M) == ["${EXPLAINER_IMAGE}"]
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert re.findall(r"^ARG EXPLAINER_IMAGE=(\S+)", predictor, re.M) == [values["explainerImage"]]
    assert "pip" not in predictor


def test_method_spec_has_exactly_one_parameter_block_per_method_type() -> None:
    """Adding a method type means one entry in METHOD_PARAMETERS and its block on MethodSpec: neither without the other."""
    from glassbox.contract.api import METHOD_PARAMETERS, MethodSpec, MethodType

    blocks = {name for name in MethodSpec.model_fields if name not in ("name", "type", "reference_data")}
    assert blocks == {field for field, _ in METHOD_PARAMETERS.values()}
    assert set(METHOD_PARAMETERS) == set(MethodType)
    for field, model in METHOD_PARAMETERS.values():
        assert MethodSpec.model_fields[field].annotation == model | None
