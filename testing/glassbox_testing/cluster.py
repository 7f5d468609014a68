"""What the end-to-end tests share: the cluster handle, waiting, ServiceAccount kubeconfigs."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

from glassbox_testing import localcluster

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "glassbox-operator"
OPERATOR_NAMESPACE = "glassbox-system"
RELEASE = "glassbox-operator"
SERVICE_ACCOUNT = "glassbox-operator"
# Bounds for waiting on the operator and the garbage collector.
CONVERGE_SECONDS = 45
# (group, version, plural) of the objects the tests read.
KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
GRAPHS = ("serving.kserve.io", "v1alpha1", "inferencegraphs")
XM = ("glassbox.dev", "v1alpha1", "explainedmodels")


@dataclass
class Cluster:
    kubeconfig: Path
    local: bool
    api: client.ApiClient

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return localcluster.kubectl(list(args), kubeconfig=self.kubeconfig, input=input, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        result = subprocess.run([localcluster.tool("helm"), *args], capture_output=True, text=True, env=env, timeout=300)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed: {result.stderr}")
        return result

    @property
    def objects(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)


def api_client_for(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def service_account_kubeconfig(cluster: Cluster, path: Path, namespace: str, name: str) -> Path:
    """A kubeconfig that authenticates as a ServiceAccount, with a token from the TokenRequest API."""
    token = cluster.kubectl("create", "token", name, "-n", namespace, "--duration=2h").stdout.strip()
    base = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in base["contexts"] if c["name"] == base["current-context"])["context"]
    server_entry = next(c for c in base["clusters"] if c["name"] == context["cluster"])
    sa_config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [server_entry],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": server_entry["name"], "user": name}}],
        "current-context": name,
    }
    path.write_text(yaml.safe_dump(sa_config))
    path.chmod(0o600)
    return path


def wait_for(what: str, probe: Callable[[], Any], timeout: float = CONVERGE_SECONDS, interval: float = 0.3) -> Any:
    """Poll until `probe` returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except client.ApiException as error:
            last = f"{error.status} {error.reason}"
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {json.dumps(last, default=str)[:2000]}")


def get_object(cluster: Cluster, kind: tuple[str, str, str], namespace: str, name: str) -> dict[str, Any] | None:
    """A namespaced custom object, or None when there is none."""
    try:
        return dict(cluster.objects.get_namespaced_custom_object(*kind[:2], namespace, kind[2], name))
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise


def install_crd_and_chart(cluster: Cluster, *values: str) -> None:
    """The CRD applied as a user would, then the chart installed with helm, `values` each a --set."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    localcluster.wait_established(["explainedmodels.glassbox.dev"], cluster.kubeconfig)
    # The server publishes the CRD's OpenAPI schema (for kubectl explain and validation) a moment later.
    wait_for("the ExplainedModel OpenAPI schema", lambda: cluster.kubectl("explain", "xm.spec", check=False).returncode == 0)
    sets = [arg for value in values for arg in ("--set", value)]
    cluster.helm("upgrade", "--install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE, "--create-namespace", *sets)
