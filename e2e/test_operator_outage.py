"""An API server outage while ExplainedModels are being created: everything converges, nothing twice.
An authorization gap longer than kopf's own retries: the operator stays up and catches up."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from typing import Any

import pytest
from kubernetes import client

from glassbox.contract.api import (
    ExplainedModelSpec,
    ExplainerSpec,
    GraphSpec,
    MethodSpec,
    MethodType,
    PredictorSpec,
    ReferenceData,
    Route,
    explained_model,
)
from glassbox_testing import localcluster
from glassbox_testing.cluster import OPERATOR_NAMESPACE, SERVICE_ACCOUNT, Cluster, wait_for
from glassbox_testing.operator_process import RunningOperator

pytestmark = pytest.mark.e2e

KSERVE = ("serving.kserve.io", "v1beta1", "inferenceservices")
GRAPHS = ("serving.kserve.io", "v1alpha1", "inferencegraphs")
XM = ("glassbox.dev", "v1alpha1", "explainedmodels")
COUNT = 20
# kopf's default retries of a refused or forbidden request give up after about 54 s (1+1+2+3+5+8+13+21).
KOPF_DEFAULT_RETRY_SECONDS = 54


def _manifest(name: str) -> dict[str, Any]:
    spec = ExplainedModelSpec(
        predictor=PredictorSpec(model_format="pytorch", storage_uri=f"s3://models/{name}.pt"),
        explainer=ExplainerSpec(
            methods=[MethodSpec(type=MethodType.KernelShap)], reference_data=ReferenceData(uri="s3://data/train.csv")
        ),
        graph=GraphSpec(routes=[Route.predict, Route.explain]),
    )
    return explained_model(name, spec)


def _get(cluster: Cluster, kind: tuple[str, str, str], namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(cluster.objects.get_namespaced_custom_object(*kind[:2], namespace, kind[2], name))
    except Exception:  # 404, or the API server still starting
        return None


def _report_address(cluster: Cluster, namespace: str, name: str) -> None:
    status = {"status": {"address": {"url": f"http://{name}.{namespace}.svc.cluster.local"}}}
    cluster.objects.patch_namespaced_custom_object_status(*KSERVE[:2], namespace, KSERVE[2], name, status)


def test_an_api_server_outage_during_creation_converges_without_duplicates(
    cluster: Cluster, operator: RunningOperator, namespace: str
) -> None:
    if not cluster.local:
        pytest.skip("stops the API server: only on the local control plane")
    names = [f"m{i:02d}" for i in range(COUNT)]
    log_start = operator.log.stat().st_size

    def create_all() -> None:
        for name in names:
            for _ in range(100):  # the client retries through the outage, as kubectl in a CI job would
                try:
                    cluster.objects.create_namespaced_custom_object(*XM[:2], namespace, XM[2], _manifest(name))
                    break
                except Exception as error:  # connection refused while the server is down; 409 if it was stored
                    if getattr(error, "status", None) == 409:
                        break
                    time.sleep(0.5)

    creating = threading.Thread(target=create_all)
    creating.start()
    time.sleep(0.5)  # some created and being reconciled, some not yet
    localcluster.LocalCluster().restart_api_server(down_seconds=10)
    creating.join(timeout=120)
    assert operator.process.poll() is None, "the operator died in the outage"

    for name in names:  # play KServe: report each address as it appears
        wait_for(f"the predictor {name}", lambda n=name: _get(cluster, KSERVE, namespace, n), timeout=120)
        _report_address(cluster, namespace, name)
    for name in names:
        wait_for(f"the explainer of {name}", lambda n=name: _get(cluster, KSERVE, namespace, f"{n}-explainer"), timeout=120)
        _report_address(cluster, namespace, f"{name}-explainer")
    for name in names:
        wait_for(f"the graph of {name}", lambda n=name: _get(cluster, GRAPHS, namespace, f"{n}-graph"), timeout=120)

    services = cluster.objects.list_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2])["items"]
    graphs = cluster.objects.list_namespaced_custom_object(*GRAPHS[:2], namespace, GRAPHS[2])["items"]
    assert len(services) == 2 * COUNT and len(graphs) == COUNT
    for child in services + graphs:
        owners = child["metadata"]["ownerReferences"]
        assert len(owners) == 1 and owners[0]["name"] == child["metadata"]["labels"]["glassbox.dev/explained-model"]

    def settled() -> bool:
        before = {
            x["metadata"]["name"]: x["metadata"]["resourceVersion"]
            for x in cluster.objects.list_namespaced_custom_object(*XM[:2], namespace, XM[2])["items"]
        }
        time.sleep(3)
        after = {
            x["metadata"]["name"]: x["metadata"]["resourceVersion"]
            for x in cluster.objects.list_namespaced_custom_object(*XM[:2], namespace, XM[2])["items"]
        }
        return before == after and all(_get(cluster, XM, namespace, n) for n in names)

    wait_for("every ExplainedModel to stop changing", settled, timeout=60)
    assert operator.process.poll() is None, "the operator died in the outage"
    with urllib.request.urlopen(operator.health_url, timeout=5) as answer:
        assert answer.status == 200
    text = operator.log.read_text()[log_start:]
    applies = re.findall(rf"applying InferenceService {namespace}/(\S+)", text)
    assert sorted(set(applies)) == sorted(names + [f"{n}-explainer" for n in names])


def _operator_cluster_bindings(cluster: Cluster) -> list[client.V1ClusterRoleBinding]:
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    return [
        binding
        for binding in rbac.list_cluster_role_binding().items
        if any(s.name == SERVICE_ACCOUNT and s.namespace == OPERATOR_NAMESPACE for s in binding.subjects or [])
    ]


def test_an_authorization_gap_longer_than_kopfs_retries_does_not_stop_the_operator(
    cluster: Cluster, operator: RunningOperator, namespace: str
) -> None:
    """The operator's ServiceAccount is forbidden everything for a minute while its watches reconnect (an API
    server whose authorizer is still warming up after a restart, or a helm upgrade that replaces the bindings).
    kopf's own retries give up after about 54 s and an abandoned watch ends the operator; ours keep trying.
    What was created during the gap converges once the bindings are back."""
    if not cluster.local:
        pytest.skip("restarts the API server: only on the local control plane")
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    bindings = _operator_cluster_bindings(cluster)
    assert bindings, "the chart's ClusterRoleBindings for the operator were not found"
    log_start = operator.log.stat().st_size
    try:
        for binding in bindings:
            rbac.delete_cluster_role_binding(binding.metadata.name)
        # Open watches were authorized when they started: the restart makes every one of them reconnect, refused.
        localcluster.LocalCluster().restart_api_server(down_seconds=1)
        cluster.objects.create_namespaced_custom_object(*XM[:2], namespace, XM[2], _manifest("gap"))
        time.sleep(KOPF_DEFAULT_RETRY_SECONDS + 10)
        assert "403" in operator.log.read_text()[log_start:], "the operator was never refused: the gap tested nothing"
        assert operator.process.poll() is None, "the operator stopped during the authorization gap"
    finally:
        present = {b.metadata.name for b in _operator_cluster_bindings(cluster)}
        for binding in bindings:
            if binding.metadata.name not in present:
                binding.metadata = client.V1ObjectMeta(name=binding.metadata.name, labels=binding.metadata.labels)
                rbac.create_cluster_role_binding(binding)

    wait_for(
        "the predictor of the ExplainedModel created during the gap", lambda: _get(cluster, KSERVE, namespace, "gap"), timeout=120
    )
    with urllib.request.urlopen(operator.health_url, timeout=5) as answer:
        assert answer.status == 200
