"""Fixtures for the end-to-end tests: a real API server, the chart installed with
helm, and the operator running with the chart's ServiceAccount token.

Where KUBECONFIG is set, the tests run against that cluster (kind, k3d, a
cloud); otherwise they start the local control plane and stop it afterwards.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

sys.path.insert(0, str(Path(__file__).parent / "cluster"))
import localcluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "glassbox-operator"
OPERATOR_NAMESPACE = "glassbox-system"
RELEASE = "glassbox-operator"
SERVICE_ACCOUNT = "glassbox-operator"
# Bounds for waiting on the operator and the garbage collector.
CONVERGE_SECONDS = 45


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


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    external = os.environ.get("KUBECONFIG")
    if external:
        path = Path(external)
        api = api_client_for(path)
        crds = client.ApiextensionsV1Api(api).list_custom_resource_definition().items
        if not any(crd.metadata.name == "inferenceservices.serving.kserve.io" for crd in crds):
            localcluster.install_kserve_crds(path)
        yield Cluster(kubeconfig=path, local=False, api=api)
        return
    local = localcluster.LocalCluster()
    already_running = local.running() is not None
    info = local.up()
    try:
        yield Cluster(kubeconfig=info.kubeconfig, local=True, api=api_client_for(info.kubeconfig))
    finally:
        if not already_running:
            local.down(quiet=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


@dataclass
class RunningOperator:
    process: subprocess.Popen[bytes]
    log: Path
    kubeconfig: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def start_operator(kubeconfig: Path, log: Path, extra: list[str] | None = None) -> RunningOperator:
    port = _free_port()
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "GLASSBOX_HEALTH_ADDRESS": f"127.0.0.1:{port}"}
    handle = open(log, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "glassbox.cli", "operator", *(extra or [])],
        stdout=handle, stderr=subprocess.STDOUT, env=env,
    )
    handle.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the operator exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return RunningOperator(process=process, log=log, kubeconfig=kubeconfig)
        except OSError:
            pass
        time.sleep(0.5)
    process.kill()
    raise AssertionError(f"the operator did not become healthy in 60 s:\n{log.read_text()[-4000:]}")


def stop_operator(operator: RunningOperator) -> None:
    operator.process.terminate()
    try:
        operator.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        operator.process.kill()
        operator.process.wait()


@pytest.fixture(scope="session")
def installed_chart(cluster: Cluster) -> Iterator[None]:
    """The CRD applied as a user would, then the chart installed with helm."""
    cluster.kubectl("apply", "-f", str(REPO / "crds"))
    localcluster.wait_established(["explainedmodels.glassbox.dev"], cluster.kubeconfig)
    # The server publishes the CRD's OpenAPI schema (for kubectl explain and validation) a moment later.
    wait_for("the ExplainedModel OpenAPI schema", lambda: cluster.kubectl("explain", "xm.spec", check=False).returncode == 0)
    cluster.helm(
        "upgrade", "--install", RELEASE, str(CHART), "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
        "--set", "replicas=0",  # the test runs the operator itself, with the chart's ServiceAccount
    )
    try:
        yield
    finally:
        cluster.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, check=False)
        cluster.kubectl("delete", "namespace", OPERATOR_NAMESPACE, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(cluster: Cluster, installed_chart: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningOperator]:
    """`glassbox operator`, authenticated as the chart's ServiceAccount: proves the chart's RBAC is enough."""
    folder = tmp_path_factory.mktemp("operator")
    kubeconfig = service_account_kubeconfig(cluster, folder / "kubeconfig", OPERATOR_NAMESPACE, SERVICE_ACCOUNT)
    running = start_operator(kubeconfig, folder / "operator.log")
    try:
        yield running
    finally:
        stop_operator(running)
        print(f"\noperator log: {running.log}")


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"e2e-{secrets.token_hex(4)}"
    cluster.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        cluster.core.delete_namespace(name)


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
