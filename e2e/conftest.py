"""Fixtures for the end-to-end tests: a real API server, the chart installed with
helm, and the operator running with the chart's ServiceAccount token.

Where KUBECONFIG is set, the tests run against that cluster (kind, k3d, a
cloud); otherwise they start the local control plane and stop it afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from glassbox_testing import localcluster
from glassbox_testing.cluster import (
    OPERATOR_NAMESPACE,
    RELEASE,
    SERVICE_ACCOUNT,
    Cluster,
    api_client_for,
    install_crd_and_chart,
    service_account_kubeconfig,
)
from glassbox_testing.operator_process import RunningOperator, start_operator, stop_operator


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test that ran the operator shows the end of the operator's log beside the failure
    (CI keeps the test output, not the log file)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    running = getattr(item, "funcargs", {}).get("operator")
    if report.when == "call" and report.failed and isinstance(running, RunningOperator):
        state = "running" if running.process.poll() is None else f"exited with {running.process.returncode}"
        tail = running.log.read_text(errors="replace")[-6000:]
        report.sections.append((f"operator log ({state}), its end", tail))


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


@pytest.fixture(scope="session")
def installed_chart(cluster: Cluster) -> Iterator[None]:
    """The CRD applied as a user would, then the chart installed with helm."""
    install_crd_and_chart(
        cluster,
        "replicas=0",  # the test runs the operator itself, with the chart's ServiceAccount
        "clusterWide=true",  # the tests make a namespace each
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
