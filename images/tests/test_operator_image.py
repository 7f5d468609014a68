"""The operator image as the chart's Deployment runs it: its container spec read back from the API server,
in-cluster credentials (the ServiceAccount's token where a pod has it), against a real API server."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import yaml
from kubernetes import client

from glassbox.local import free_port
from glassbox_testing import containers, localcluster
from glassbox_testing.cluster import (
    GRAPHS,
    KSERVE,
    OPERATOR_NAMESPACE,
    RELEASE,
    REPO,
    SERVICE_ACCOUNT,
    XM,
    Cluster,
    api_client_for,
    install_crd_and_chart,
    wait_for,
)
from glassbox_testing.cluster import get_object as get

from .conftest import record, require_image, tag

# Where the kubelet puts a pod's ServiceAccount credentials.
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, localcluster.LocalCluster]]:
    """A control plane of its own, in this network namespace (the tests run under `unshare -n`)."""
    local = localcluster.LocalCluster(state=tmp_path_factory.mktemp("cluster"))
    info = local.up()
    try:
        yield Cluster(kubeconfig=info.kubeconfig, local=True, api=api_client_for(info.kubeconfig)), local
    finally:
        local.down(quiet=True)


@pytest.fixture(scope="module")
def operator_container(
    cluster: tuple[Cluster, localcluster.LocalCluster], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[containers.Container]:
    """The chart installed with helm (its image defaults are what `make images` tags); the operator's container
    as the API server holds it in the Deployment, run with the ServiceAccount's token, CA and namespace."""
    api, local = cluster
    image = require_image(tag("operator"))
    require_image(tag("explainer"))
    install_crd_and_chart(api, "clusterWide=true")
    deployment = client.AppsV1Api(api.api).read_namespaced_deployment(RELEASE, OPERATOR_NAMESPACE)
    pod = api.api.sanitize_for_serialization(deployment.spec.template.spec)
    spec = dict(pod["containers"][0])
    assert spec["image"] == image, f"the chart deploys {spec['image']}, make images builds {image}"
    # The pod's securityContext (user, group) applies to the container unless it sets its own.
    pod_context = pod.get("securityContext") or {}
    spec["securityContext"] = {
        **{k: pod_context[k] for k in ("runAsUser", "runAsGroup") if k in pod_context},
        **spec["securityContext"],
    }
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True

    credentials = tmp_path_factory.mktemp("serviceaccount")
    token = api.kubectl("create", "token", SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE, "--duration=2h").stdout.strip()
    (credentials / "token").write_text(token)
    (credentials / "ca.crt").write_bytes(local.ca_file.read_bytes())
    (credentials / "namespace").write_text(OPERATOR_NAMESPACE)
    for path in (credentials, *credentials.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    server = yaml.safe_load(api.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    host, port = server.removeprefix("https://").rsplit(":", 1)
    health_port = free_port()
    env = {
        # What the kubelet sets in every pod, pointing at the API server.
        "KUBERNETES_SERVICE_HOST": host,
        "KUBERNETES_SERVICE_PORT": port,
        # The chart's fieldRef (metadata.namespace), resolved as the kubelet would.
        "GLASSBOX_LEADER_ELECTION_NAMESPACE": OPERATOR_NAMESPACE,
        # The chart's port is taken by KServe's router in this shared namespace.
        "GLASSBOX_HEALTH_ADDRESS": f"127.0.0.1:{health_port}",
    }
    running = containers.start(spec, image, "operator", env=env, mounts=[(credentials, SERVICE_ACCOUNT_DIR)])
    try:
        seconds = running.wait_ready(f"http://127.0.0.1:{health_port}/healthz", timeout=120)
        record(image, cold_start_to_healthy_s=round(seconds, 1))
        yield running
    finally:
        print(f"--- operator log\n{running.logs()}")
        running.remove()


def report_address(api: Cluster, namespace: str, name: str) -> None:
    address = {"status": {"address": {"url": f"http://{name}.{namespace}.svc.cluster.local"}}}
    api.objects.patch_namespaced_custom_object_status(*KSERVE[:2], namespace, KSERVE[2], name, address)


def test_a_sample_becomes_its_children_and_its_status(
    cluster: tuple[Cluster, localcluster.LocalCluster], operator_container: containers.Container
) -> None:
    api, _ = cluster
    namespace = f"images-{secrets.token_hex(3)}"
    api.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    sample = REPO / "crds" / "samples" / "tabular-pytorch-gpu.yaml"
    name = yaml.safe_load(sample.read_text())["metadata"]["name"]
    api.kubectl("apply", "-n", namespace, "-f", str(sample))
    predictor = wait_for("the predictor InferenceService", lambda: get(api, KSERVE, namespace, name), timeout=90)
    assert predictor["spec"]["predictor"]["containers"][0]["image"] == tag("predictor")
    # KServe's part: each InferenceService's in-cluster address, which the explainer and the graph are built from.
    report_address(api, namespace, name)
    explainer = wait_for("the explainer InferenceService", lambda: get(api, KSERVE, namespace, f"{name}-explainer"), timeout=90)
    assert explainer["spec"]["predictor"]["containers"][0]["image"] == tag("explainer")
    report_address(api, namespace, f"{name}-explainer")
    wait_for("the InferenceGraph", lambda: get(api, GRAPHS, namespace, f"{name}-graph"), timeout=90)
    status = wait_for(
        "the ExplainedModel's status for generation 1",
        lambda: (
            ((get(api, XM, namespace, name) or {}).get("status") or {}).get("observedGeneration") == 1
            and get(api, XM, namespace, name)["status"]
        ),  # type: ignore[index]
        timeout=90,
    )
    kinds = {c["type"]: c["status"] for c in status["conditions"]}
    assert {"Ready", "PredictorReady", "ExplainerReady", "GraphReady"} <= set(kinds) and kinds["Ready"] == "False", status
    assert not operator_container.logs().count("Traceback"), operator_container.logs()


def test_the_operator_stops_on_sigterm(operator_container: containers.Container) -> None:
    code = operator_container.stop(30)  # the chart's pod keeps Kubernetes' default grace period
    assert code == 0, f"exit {code} after {operator_container.stopped_in:.1f} s; log:\n{operator_container.logs()}"
    record(tag("operator"), sigterm_stopped_in_s=round(operator_container.stopped_in or 0, 1))
