"""The operator against a real API server with KServe's real CRDs, as users run it."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from glassbox_testing.cluster import GRAPHS, KSERVE, REPO, XM, Cluster, api_client_for, wait_for
from glassbox_testing.cluster import get_object as get
from glassbox_testing.operator_process import RunningOperator, start_operator, stop_operator

pytestmark = pytest.mark.e2e

SAMPLES = sorted((REPO / "crds" / "samples").glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text()))


def sample(name: str) -> dict[str, Any]:
    return load(REPO / "crds" / "samples" / f"{name}.yaml")


def condition(body: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    for entry in ((body or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == kind:
            return dict(entry)
    return {}


def apply_manifest(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))


def set_ready(cluster: Cluster, kind: tuple[str, str, str], namespace: str, name: str, url: str) -> None:
    """Play KServe's part: report the object Ready with a URL on its status subresource."""
    status = {
        "url": url,
        "address": {"url": f"http://{name}.{namespace}.svc.cluster.local"},
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }
    cluster.objects.patch_namespaced_custom_object_status(*kind[:2], namespace, kind[2], name, {"status": status})


def report_address(cluster: Cluster, namespace: str, name: str, url: str | None = None) -> None:
    """Play KServe's ingress reconciler: an InferenceService gets its in-cluster address before it is ready."""
    address = url or f"http://{name}.{namespace}.svc.cluster.local"
    cluster.objects.patch_namespaced_custom_object_status(
        *KSERVE[:2], namespace, KSERVE[2], name, {"status": {"address": {"url": address}}}
    )


def create_existing(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any] | None = None) -> None:
    """An InferenceService someone else made, with the address KServe reports for it."""
    body = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://models/loans"}}},
    }
    cluster.objects.create_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], body)
    report_address(cluster, namespace, name)


def apply_with_addresses(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    """Apply an ExplainedModel and report each child's address as KServe would, so every child gets built."""
    name = manifest["metadata"]["name"]
    apply_manifest(cluster, namespace, manifest)
    if "inferenceServiceName" not in manifest["spec"]["predictor"]:
        wait_for("the predictor", lambda: get(cluster, KSERVE, namespace, name))
        report_address(cluster, namespace, name)
    wait_for("the explainer", lambda: get(cluster, KSERVE, namespace, f"{name}-explainer"))
    report_address(cluster, namespace, f"{name}-explainer")


# --------------------------------------------------------------------------- the API as users meet it


def test_kubectl_explain_teaches_the_api(cluster: Cluster, installed_chart: None) -> None:
    out = cluster.kubectl("explain", "explainedmodel.spec.explainer.methods").stdout
    assert "AnchorTabular" in out and "KernelShap" in out
    out = cluster.kubectl("explain", "xm.spec.predictor.inferenceServiceName").stdout
    assert "never changes or deletes it" in out


INVALID_BY_SCHEMA = [
    ("protocol v3", lambda m: m["spec"]["predictor"].__setitem__("protocol", "v3"), "spec.predictor.protocol"),
    ("negative GPUs", lambda m: m["spec"]["predictor"].__setitem__("gpus", -1), "spec.predictor.gpus"),
    ("unknown method", lambda m: m["spec"]["explainer"]["methods"][0].__setitem__("type", "Lime"), "type"),
    ("no methods", lambda m: m["spec"]["explainer"].__setitem__("methods", []), "spec.explainer.methods"),
    ("no explainer", lambda m: m["spec"].pop("explainer"), "spec.explainer"),
    (
        "threshold above 1",
        lambda m: m["spec"]["explainer"]["methods"][0].__setitem__("anchorTabular", {"threshold": 1.5}),
        "threshold",
    ),
    (
        "a host for a service name",
        lambda m: m["spec"]["predictor"].__setitem__("inferenceServiceName", "attacker.example.net:8080"),
        "spec.predictor.inferenceServiceName",
    ),
]


@pytest.mark.parametrize("case,mutate,field", INVALID_BY_SCHEMA, ids=[c[0] for c in INVALID_BY_SCHEMA])
def test_schema_rejects_invalid_manifests_before_the_operator_sees_them(
    cluster: Cluster, installed_chart: None, namespace: str, case: str, mutate: Any, field: str
) -> None:
    manifest = sample("tabular-pytorch-gpu")
    mutate(manifest)
    # kubectl validates against the published schema first...
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0, f"{case} was accepted"
    assert field.rsplit(".", 1)[-1] in result.stderr, result.stderr
    # ...and the API server's own structural schema rejects it when the client does not.
    result = cluster.kubectl("apply", "--validate=false", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest), check=False)
    assert result.returncode != 0, f"{case} was accepted by the server"
    assert field in result.stderr, result.stderr
    assert get(cluster, XM, namespace, "credit-risk") is None


# --------------------------------------------------------------------------- children


def test_rbac_is_least_privilege(cluster: Cluster, operator: RunningOperator) -> None:
    def can(*args: str) -> bool:
        result = cluster.kubectl(
            "auth", "can-i", *args, "--as=system:serviceaccount:glassbox-system:glassbox-operator", check=False
        )
        return result.stdout.strip() == "yes"

    assert can("patch", "inferenceservices.serving.kserve.io", "-n", "default")
    assert can("watch", "explainedmodels.glassbox.dev", "--all-namespaces")
    for verb, resource in [
        ("get", "secrets"),
        ("create", "deployments.apps"),
        ("delete", "explainedmodels.glassbox.dev"),
        ("create", "explainedmodels.glassbox.dev"),
        ("update", "servingruntimes.serving.kserve.io"),
        ("create", "customresourcedefinitions.apiextensions.k8s.io"),
        ("create", "pods"),
        ("list", "namespaces"),  # kopf scans no namespaces and no CRDs; the operator watches its kinds only
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ]:
        assert not can(verb, resource, "-n", "default"), f"the operator may {verb} {resource}"


def flag(container: dict[str, Any], name: str) -> int:
    """A whole-number flag the builders wrote on a container's command line."""
    return int(next(a.split("=", 1)[1] for a in container["args"] if a.startswith(f"--{name}=")))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_each_sample_produces_children_that_kserve_schemas_accept(
    cluster: Cluster, operator: RunningOperator, namespace: str, path: Path
) -> None:
    manifest = load(path)
    name = manifest["metadata"]["name"]
    spec = manifest["spec"]
    target = spec["predictor"].get("inferenceServiceName", name)
    if "inferenceServiceName" in spec["predictor"]:
        create_existing(cluster, namespace, target)
    cluster.kubectl("apply", "-n", namespace, "-f", str(path))
    if "inferenceServiceName" not in spec["predictor"]:
        _explainer_waits_for_the_predictors_address(cluster, namespace, name)
    _check_explainer(cluster, namespace, name, spec, target)
    _check_predictor(cluster, namespace, name, spec)
    if "detector" in spec:
        _check_detector(cluster, namespace, name)
    _check_graph(cluster, namespace, name, spec, target)
    body = wait_for(
        "status.observedGeneration",
        lambda: (b := get(cluster, XM, namespace, name)) and (b.get("status") or {}).get("observedGeneration") and b,
    )
    assert condition(body, "SpecValid")["status"] == "True"
    assert body["status"]["children"]["explainer"] == f"{name}-explainer"


def _explainer_waits_for_the_predictors_address(cluster: Cluster, namespace: str, name: str) -> None:
    """No explainer before KServe reports where the predictor answers; then playing KServe, the address."""
    wait_for("the predictor InferenceService", lambda: get(cluster, KSERVE, namespace, name))
    waiting = wait_for(
        "ExplainerReady=False waiting for the predictor's address",
        lambda: (
            (b := get(cluster, XM, namespace, name))
            and condition(b, "ExplainerReady").get("reason") == "WaitingForPredictorAddress"
            and b
        ),
    )
    assert get(cluster, KSERVE, namespace, f"{name}-explainer") is None, "the explainer needs the predictor's address first"
    assert f"InferenceService '{name}'" in condition(waiting, "ExplainerReady")["message"]
    # A headless RawDeployment Service: KServe's address carries the container port.
    report_address(cluster, namespace, name, f"http://{name}-predictor.{namespace}.svc.cluster.local:8080")


def _check_explainer(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any], target: str) -> None:
    """It calls the predictor where KServe said, and what a replica admits reaches Knative through KServe's schema."""
    explainer = wait_for("the explainer InferenceService", lambda: get(cluster, KSERVE, namespace, f"{name}-explainer"))
    container = explainer["spec"]["predictor"]["containers"][0]
    expected_host = (
        f"{name}-predictor.{namespace}.svc.cluster.local:8080" if target == name else f"{target}.{namespace}.svc.cluster.local"
    )
    assert f"--predictor_host={expected_host}" in container["args"]
    assert f"--predictor_protocol={spec['predictor'].get('protocol', 'v2' if target == name else 'v1')}" in container["args"]
    assert container["resources"]["requests"]["cpu"]
    assert explainer["metadata"]["ownerReferences"][0]["kind"] == "ExplainedModel"
    # What a replica holds reaches Knative: KServe's schema keeps the field (one it did not know would be
    # pruned without a word), equal to what the explainer admits.
    assert explainer["spec"]["predictor"]["containerConcurrency"] == flag(container, "explain_workers") + flag(
        container, "max_waiting_explanations"
    )


def _check_predictor(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> None:
    """An existing predictor is never created; a deployed one gets the spec's GPUs and placement."""
    if "inferenceServiceName" in spec["predictor"]:
        assert get(cluster, KSERVE, namespace, name) is None, "an existing predictor must not be created"
    else:
        predictor = wait_for("the predictor InferenceService", lambda: get(cluster, KSERVE, namespace, name))
        component = predictor["spec"]["predictor"]
        resources = (component.get("containers") or [component.get("model")])[0]["resources"]
        assert resources["limits"].get("nvidia.com/gpu") == (
            str(spec["predictor"]["gpus"]) if spec["predictor"].get("gpus") else None
        )
        assert component.get("nodeSelector") == spec["predictor"].get("nodeSelector")
        assert component.get("tolerations") == spec["predictor"].get("tolerations")


def _check_detector(cluster: Cluster, namespace: str, name: str) -> None:
    """The detector runs in the explainer's image, stays cluster-local, and is named in the status."""
    detector = wait_for("the detector InferenceService", lambda: get(cluster, KSERVE, namespace, f"{name}-detector"))
    detector_container = detector["spec"]["predictor"]["containers"][0]
    assert detector_container["command"][-1] == "glassbox.explainers.detector"
    assert detector["spec"]["predictor"]["containerConcurrency"] >= flag(detector_container, "detector_workers")
    assert detector["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
    report_address(cluster, namespace, f"{name}-detector")
    wait_for(
        "status.children.detector",
        lambda: (
            ((get(cluster, XM, namespace, name) or {}).get("status") or {}).get("children", {}).get("detector")
            == f"{name}-detector"
        ),
    )


def _check_graph(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any], target: str) -> None:
    """Once the explainer's address is known: a root Switch with every route twice, the unknown-route steps and the default."""
    graph_wanted = (spec.get("graph") or {}).get("enabled", True)
    if graph_wanted:
        report_address(cluster, namespace, f"{name}-explainer")
        graph = wait_for("the InferenceGraph", lambda: get(cluster, GRAPHS, namespace, f"{name}-graph"))
        root_steps = graph["spec"]["nodes"]["root"]["steps"]
        routes = (spec.get("graph") or {}).get("routes", ["predict", "explain", "predictAndExplain"])
        # Each route at the top level and in parameters, the two unknown-route steps, the default.
        assert len(root_steps) == 2 * len(routes) + 3
        if "explain" in routes:
            explain_url = f"http://{name}-explainer.{namespace}.svc.cluster.local/v1/models/{target}:explain"
            assert graph["spec"]["nodes"]["explain"]["steps"][0]["serviceUrl"] == explain_url
        if "predictAndExplainIfOutlier" in routes:
            gate = graph["spec"]["nodes"]["explain-if-outlier"]["steps"][0]["serviceUrl"]
            assert gate == f"http://{name}-detector.{namespace}.svc.cluster.local/glassbox/v1/models/{name}-detector/flagged"
    else:
        assert get(cluster, GRAPHS, namespace, f"{name}-graph") is None


def test_a_changed_spec_converges_including_removed_fields(cluster: Cluster, operator: RunningOperator, namespace: str) -> None:
    manifest = sample("tabular-pytorch-gpu")
    apply_with_addresses(cluster, namespace, manifest)
    wait_for("the graph", lambda: get(cluster, GRAPHS, namespace, "credit-risk-graph"))

    changed = copy.deepcopy(manifest)
    changed["spec"]["predictor"]["gpus"] = 2
    changed["spec"]["predictor"]["autoscaling"]["maxReplicas"] = 8
    del changed["spec"]["predictor"]["nodeSelector"]
    changed["spec"]["explainer"]["autoscaling"]["maxReplicas"] = 20
    changed["spec"]["graph"]["routes"] = ["predict", "explain"]
    apply_manifest(cluster, namespace, changed)

    def converged() -> bool:
        predictor = get(cluster, KSERVE, namespace, "credit-risk") or {}
        component = predictor.get("spec", {}).get("predictor", {})
        explainer = get(cluster, KSERVE, namespace, "credit-risk-explainer") or {}
        graph = get(cluster, GRAPHS, namespace, "credit-risk-graph") or {}
        return bool(
            component.get("maxReplicas") == 8
            and component["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
            and "nodeSelector" not in component
            and explainer["spec"]["predictor"]["maxReplicas"] == 20
            and "predict-and-explain" not in graph["spec"]["nodes"]
        )

    wait_for("the children to follow the new spec", converged)
    body = wait_for(
        "observedGeneration 2",
        lambda: (b := get(cluster, XM, namespace, "credit-risk")) and b["status"].get("observedGeneration") == 2 and b,
    )
    assert body["metadata"]["generation"] == 2


def test_switching_to_an_existing_predictor_deletes_the_owned_one(
    cluster: Cluster, operator: RunningOperator, namespace: str
) -> None:
    manifest = sample("tabular-pytorch-gpu")
    apply_with_addresses(cluster, namespace, manifest)
    create_existing(cluster, namespace, "credit-risk-v2")
    changed = copy.deepcopy(manifest)
    changed["spec"]["predictor"] = {"inferenceServiceName": "credit-risk-v2", "protocol": "v2"}
    changed["spec"]["explainer"]["modelStorageUri"] = "s3://models/credit-risk/v2/model.pt"
    cluster.kubectl("replace", "-n", namespace, "-f", "-", input=yaml.safe_dump(changed))
    wait_for("the owned predictor to be deleted", lambda: get(cluster, KSERVE, namespace, "credit-risk") is None)
    explainer = wait_for(
        "the explainer to call the existing predictor",
        lambda: (
            (b := get(cluster, KSERVE, namespace, "credit-risk-explainer"))
            and f"--predictor_host=credit-risk-v2.{namespace}.svc.cluster.local"
            in b["spec"]["predictor"]["containers"][0]["args"]
            and b
        ),
    )
    assert "--model_name=credit-risk-v2" in explainer["spec"]["predictor"]["containers"][0]["args"]


def test_a_deleted_child_is_recreated(cluster: Cluster, operator: RunningOperator, namespace: str) -> None:
    apply_with_addresses(cluster, namespace, sample("tabular-pytorch-gpu"))
    first = wait_for("the explainer", lambda: get(cluster, KSERVE, namespace, "credit-risk-explainer"))
    cluster.objects.delete_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], "credit-risk-explainer")
    again = wait_for(
        "a new explainer",
        lambda: (
            (b := get(cluster, KSERVE, namespace, "credit-risk-explainer"))
            and b["metadata"]["uid"] != first["metadata"]["uid"]
            and b
        ),
    )
    assert again["spec"] == first["spec"]


def test_status_follows_kserve_to_ready_with_urls(cluster: Cluster, operator: RunningOperator, namespace: str) -> None:
    apply_with_addresses(cluster, namespace, sample("tabular-pytorch-gpu"))
    for kind, name in [(KSERVE, "credit-risk"), (KSERVE, "credit-risk-explainer"), (GRAPHS, "credit-risk-graph")]:
        wait_for(name, lambda k=kind, n=name: get(cluster, k, namespace, n))
    body = get(cluster, XM, namespace, "credit-risk")
    assert condition(body, "Ready").get("status") != "True"
    # A child just created (the apply answers 201) is pending KServe's report, not missing, and says so
    # without waiting for another reconcile.
    pending = wait_for(
        "GraphReady Pending",
        lambda: condition(get(cluster, XM, namespace, "credit-risk"), "GraphReady").get("reason") == "Pending",
    )
    assert pending

    set_ready(cluster, KSERVE, namespace, "credit-risk", f"http://credit-risk.{namespace}.example.com")
    set_ready(cluster, KSERVE, namespace, "credit-risk-explainer", f"http://credit-risk-explainer.{namespace}.example.com")
    partly = wait_for(
        "PredictorReady", lambda: condition(get(cluster, XM, namespace, "credit-risk"), "PredictorReady").get("status") == "True"
    )
    assert partly
    assert condition(get(cluster, XM, namespace, "credit-risk"), "Ready")["reason"] == "ChildrenNotReady"

    set_ready(cluster, GRAPHS, namespace, "credit-risk-graph", f"http://credit-risk-graph.{namespace}.example.com")
    body = wait_for(
        "Ready", lambda: (b := get(cluster, XM, namespace, "credit-risk")) and condition(b, "Ready").get("status") == "True" and b
    )
    assert body["status"]["urls"] == {
        "predict": f"http://credit-risk.{namespace}.example.com/v2/models/credit-risk/infer",
        "explain": f"http://credit-risk-explainer.{namespace}.example.com/v1/models/credit-risk:explain",
        "records": f"http://credit-risk-explainer.{namespace}.example.com/glassbox/v1/models/credit-risk/records",
        "graph": f"http://credit-risk-graph.{namespace}.example.com",
    }
    table = cluster.kubectl("get", "xm", "-n", namespace).stdout
    assert "True" in table and "anchortabular,kernelshap,ig" in table
    # Ten explainer replicas share PostgreSQL; its connection string reaches their pods from the Secret by
    # reference, never through the object's text (KServe's schema accepted the reference).
    records = cluster.kubectl("get", "xm", "credit-risk", "-n", namespace, "-o", "jsonpath={.status.records}").stdout
    assert records == "PostgreSQL (Secret credit-risk-records, key url), shared by every replica"
    explainer = get(cluster, KSERVE, namespace, "credit-risk-explainer") or {}
    env = explainer["spec"]["predictor"]["containers"][0]["env"]
    assert {
        "name": "GLASSBOX_RECORDS_POSTGRES",
        "valueFrom": {"secretKeyRef": {"name": "credit-risk-records", "key": "url"}},
    } in env
    # Records name the generation the explainer was deployed from: an edit of the predictor alone (generation 2)
    # leaves the explainer (and its pods) as generation 1 made it; an edit of a method makes it generation 3's.
    generation = "glassbox.dev/explainer-generation"
    assert explainer["metadata"]["annotations"][generation] == "1"
    edit = {"spec": {"predictor": {"autoscaling": {"minReplicas": 1, "maxReplicas": 6}}}}
    cluster.objects.patch_namespaced_custom_object(*XM[:2], namespace, XM[2], "credit-risk", edit)
    wait_for(
        "the predictor rescaled", lambda: get(cluster, KSERVE, namespace, "credit-risk")["spec"]["predictor"]["maxReplicas"] == 6
    )
    assert (get(cluster, KSERVE, namespace, "credit-risk-explainer") or {})["spec"] == explainer["spec"]
    methods = body["spec"]["explainer"]["methods"]
    methods[0]["anchorTabular"]["threshold"] = 0.9
    cluster.objects.patch_namespaced_custom_object(
        *XM[:2], namespace, XM[2], "credit-risk", {"spec": {"explainer": {"methods": methods}}}
    )
    changed = wait_for(
        "the explainer of generation 3",
        lambda: (
            (b := get(cluster, KSERVE, namespace, "credit-risk-explainer"))
            and b["metadata"]["annotations"][generation] == "3"
            and b
        ),
    )
    assert "--explained_model_generation=3" in changed["spec"]["predictor"]["containers"][0]["args"]


def test_deleting_the_explained_model_collects_children_but_never_an_existing_service(
    cluster: Cluster, operator: RunningOperator, namespace: str
) -> None:
    create_existing(cluster, namespace, "loan-approval-sklearn")
    before = get(cluster, KSERVE, namespace, "loan-approval-sklearn") or {}

    apply_with_addresses(cluster, namespace, sample("existing-inferenceservice"))
    wait_for("the graph", lambda: get(cluster, GRAPHS, namespace, "loan-approval-graph"))
    # KServe reports the existing service ready: the ExplainedModel notices without a timer.
    set_ready(cluster, KSERVE, namespace, "loan-approval-sklearn", f"http://loan-approval-sklearn.{namespace}.example.com")
    body = wait_for(
        "PredictorReady from the existing service",
        lambda: (
            (b := get(cluster, XM, namespace, "loan-approval")) and condition(b, "PredictorReady").get("status") == "True" and b
        ),
    )
    assert body["status"]["urls"]["predict"].endswith("/v1/models/loan-approval-sklearn:predict")

    cluster.kubectl("delete", "xm", "loan-approval", "-n", namespace)
    wait_for("the explainer to be collected", lambda: get(cluster, KSERVE, namespace, "loan-approval-explainer") is None)
    wait_for("the graph to be collected", lambda: get(cluster, GRAPHS, namespace, "loan-approval-graph") is None)
    after = get(cluster, KSERVE, namespace, "loan-approval-sklearn") or {}
    assert after["spec"] == before["spec"]
    assert not after["metadata"].get("ownerReferences")
    managers = {entry["manager"] for entry in after["metadata"].get("managedFields") or []}
    assert "glassbox-operator" not in managers


def test_a_name_taken_by_someone_elses_inferenceservice_is_never_written(
    cluster: Cluster, operator: RunningOperator, namespace: str
) -> None:
    """The ExplainedModel 'credit-risk' would deploy its predictor as 'credit-risk': a service of that name made by
    someone else is neither overwritten nor adopted, so deleting the ExplainedModel cannot collect it."""
    create_existing(cluster, namespace, "credit-risk")
    before = get(cluster, KSERVE, namespace, "credit-risk") or {}
    apply_manifest(cluster, namespace, sample("tabular-pytorch-gpu"))
    body = wait_for(
        "PredictorReady=False NameConflict",
        lambda: (
            (b := get(cluster, XM, namespace, "credit-risk"))
            and condition(b, "PredictorReady").get("reason") == "NameConflict"
            and b
        ),
    )
    assert "InferenceService 'credit-risk' already exists" in condition(body, "PredictorReady")["message"]
    assert "was not created by Glassbox" in condition(body, "PredictorReady")["message"]
    assert condition(body, "ExplainerReady")["reason"] == "WaitingForPredictor"
    assert condition(body, "Ready")["status"] == "False"

    def conflicts() -> list[Any]:
        events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=credit-risk").items
        return [e for e in events if e.reason == "NameConflict"]

    wait_for("a NameConflict event", conflicts)
    # A child event (the taken service changing) reconciles again: still one Event.
    cluster.objects.patch_namespaced_custom_object(
        *KSERVE[:2], namespace, KSERVE[2], "credit-risk", {"metadata": {"labels": {"team": "risk"}}}
    )
    time.sleep(3)
    assert sum(e.count or 1 for e in conflicts()) == 1
    assert get(cluster, KSERVE, namespace, "credit-risk-explainer") is None

    cluster.kubectl("delete", "xm", "credit-risk", "-n", namespace)
    after = get(cluster, KSERVE, namespace, "credit-risk") or {}
    assert after["spec"] == before["spec"]
    assert not after["metadata"].get("ownerReferences")
    assert "glassbox-operator" not in {entry["manager"] for entry in after["metadata"].get("managedFields") or []}


def test_deletion_needs_no_operator(cluster: Cluster, operator: RunningOperator, namespace: str, tmp_path: Path) -> None:
    """No finalizer: with the operator stopped, deleting the ExplainedModel finishes at once and the garbage
    collector removes its children, as it would after `helm uninstall`."""
    apply_with_addresses(cluster, namespace, sample("tabular-pytorch-gpu"))
    wait_for("the graph", lambda: get(cluster, GRAPHS, namespace, "credit-risk-graph"))
    body = wait_for("a status", lambda: (b := get(cluster, XM, namespace, "credit-risk")) and b.get("status") and b)
    assert not body["metadata"].get("finalizers")

    stop_operator(operator)
    try:
        cluster.kubectl("delete", "xm", "credit-risk", "-n", namespace, "--timeout=20s")
        for kind, name in [(KSERVE, "credit-risk"), (KSERVE, "credit-risk-explainer"), (GRAPHS, "credit-risk-graph")]:
            wait_for(f"{name} to be collected", lambda k=kind, n=name: get(cluster, k, namespace, n) is None)
    finally:
        again = start_operator(operator.kubeconfig, tmp_path / "operator.log")
        operator.process, operator.log, operator.health_url = again.process, again.log, again.health_url


def test_several_replicas_get_a_disruption_budget_and_lose_it_with_one(
    cluster: Cluster, operator: RunningOperator, namespace: str
) -> None:
    manifest = sample("tabular-pytorch-gpu")
    manifest["spec"]["explainer"]["autoscaling"].update(minReplicas=2, maxReplicas=4)
    apply_with_addresses(cluster, namespace, manifest)
    versions = {g.name: [v.version for v in g.versions] for g in client.ApisApi(cluster.api).get_api_versions().groups}["policy"]
    version = "v1" if "v1" in versions else "v1beta1"  # the local API server is 1.20: policy/v1 arrived in 1.21

    def budget() -> dict[str, Any] | None:
        return get(cluster, ("policy", version, "poddisruptionbudgets"), namespace, "credit-risk-explainer")

    found = wait_for("the explainer's PodDisruptionBudget", budget)
    assert found["spec"]["maxUnavailable"] == 1
    assert found["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "credit-risk-explainer",
        "component": "predictor",
    }
    assert found["metadata"]["ownerReferences"][0]["kind"] == "ExplainedModel"
    listed = cluster.objects.list_namespaced_custom_object("policy", version, namespace, "poddisruptionbudgets")["items"]
    assert [b["metadata"]["name"] for b in listed] == ["credit-risk-explainer"]  # the predictor keeps one replica: no budget

    manifest["spec"]["explainer"]["autoscaling"].update(minReplicas=1)
    apply_manifest(cluster, namespace, manifest)
    wait_for("the budget to go with the second replica", lambda: budget() is None)


# --------------------------------------------------------------------------- bad specs


def test_a_cross_field_error_names_the_field_in_status_and_one_event(
    cluster: Cluster, operator: RunningOperator, namespace: str
) -> None:
    manifest = sample("tabular-pytorch-gpu")
    manifest["spec"]["predictor"]["inferenceServiceName"] = "also-existing"  # both storageUri and an existing service
    apply_manifest(cluster, namespace, manifest)
    body = wait_for(
        "SpecValid=False",
        lambda: (b := get(cluster, XM, namespace, "credit-risk")) and condition(b, "SpecValid").get("status") == "False" and b,
    )
    message = condition(body, "SpecValid")["message"]
    assert message.startswith("spec.predictor.storageUri:") and "not both" in message
    assert condition(body, "Ready") == {**condition(body, "Ready"), "status": "False", "reason": "InvalidSpec"}

    def warnings() -> list[Any]:
        events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=credit-risk").items
        return [e for e in events if e.reason == "InvalidSpec"]

    events = wait_for("an InvalidSpec event", warnings)
    assert "spec.predictor.storageUri" in events[0].message
    assert get(cluster, KSERVE, namespace, "credit-risk") is None
    assert get(cluster, KSERVE, namespace, "credit-risk-explainer") is None

    # No hot loop: once kopf has recorded the failure, the object is not
    # rewritten and no new events pile up.
    def settled() -> str | None:
        before = (get(cluster, XM, namespace, "credit-risk") or {})["metadata"]["resourceVersion"]
        time.sleep(1)
        after = (get(cluster, XM, namespace, "credit-risk") or {})["metadata"]["resourceVersion"]
        return str(after) if after == before else None

    version = wait_for("the ExplainedModel to stop changing", settled)
    time.sleep(5)
    assert (get(cluster, XM, namespace, "credit-risk") or {})["metadata"]["resourceVersion"] == version
    assert sum(e.count or 1 for e in warnings()) == 1

    # Fixing the spec recovers.
    del manifest["spec"]["predictor"]["inferenceServiceName"]
    cluster.kubectl("replace", "-n", namespace, "-f", "-", input=yaml.safe_dump(manifest))
    wait_for("the predictor after the fix", lambda: get(cluster, KSERVE, namespace, "credit-risk"))
    wait_for("SpecValid=True", lambda: condition(get(cluster, XM, namespace, "credit-risk"), "SpecValid").get("status") == "True")


# --------------------------------------------------------------------------- KServe missing


def test_without_kserve_a_clear_condition_then_recovery_once_installed(cluster: Cluster, tmp_path: Path) -> None:
    """A second control plane without KServe's CRDs: the operator says so, then proceeds once they are installed."""
    if not cluster.local:
        pytest.skip("needs a control plane of its own; KServe's CRDs cannot be removed from a shared cluster")
    from glassbox_testing import localcluster

    bare = localcluster.LocalCluster(tmp_path / "bare-cluster")
    info = bare.up(with_kserve=False)
    try:
        bare_cluster = Cluster(kubeconfig=info.kubeconfig, local=True, api=api_client_for(info.kubeconfig))
        bare_cluster.kubectl("apply", "-f", str(REPO / "crds"))
        localcluster.wait_established(["explainedmodels.glassbox.dev"], info.kubeconfig)
        running = start_operator(info.kubeconfig, tmp_path / "operator.log")
        try:
            bare_cluster.kubectl("apply", "-n", "default", "-f", str(REPO / "crds" / "samples" / "tabular-pytorch-gpu.yaml"))
            body = wait_for(
                "Ready=False with reason KServeNotInstalled",
                lambda: (
                    (b := get(bare_cluster, XM, "default", "credit-risk"))
                    and condition(b, "Ready").get("reason") == "KServeNotInstalled"
                    and b
                ),
            )
            assert "InferenceService" in condition(body, "Ready")["message"] and "install" in condition(body, "Ready")["message"]

            localcluster.install_kserve_crds(info.kubeconfig)
            wait_for(
                "the children once KServe is installed", lambda: get(bare_cluster, KSERVE, "default", "credit-risk"), timeout=90
            )
            wait_for(
                "the condition to clear",
                lambda: condition(get(bare_cluster, XM, "default", "credit-risk"), "Ready").get("reason") == "ChildrenNotReady",
            )
        finally:
            stop_operator(running)
    finally:
        bare.down(quiet=True)


def test_the_status_shows_the_threshold_the_ready_detector_fitted(
    cluster: Cluster, operator: RunningOperator, namespace: str, tmp_path: Path
) -> None:
    """A real detector on loopback, where KServe reports the detector InferenceService's address: once KServe
    says it is ready, the operator reads what it fitted, once, into status.detector."""
    import httpx
    import numpy as np
    import pandas as pd

    from glassbox.local import LocalDeployment

    manifest = sample("outlier-gated")
    manifest["spec"]["explainer"]["referenceData"] = {"uri": "train.csv"}
    frame = pd.DataFrame(np.random.default_rng(0).uniform(size=(400, 5)), columns=[f"f{i}" for i in range(5)])
    frame.to_csv(tmp_path / "train.csv", index=False)
    (tmp_path / "xm.yaml").write_text(yaml.safe_dump(manifest))
    deployment = LocalDeployment(tmp_path / "xm.yaml", log_dir=tmp_path / "logs")
    try:
        deployment.start_detector()
        assert deployment.detector_base is not None
        fitted = httpx.get(f"{deployment.detector_base}/glassbox/v1/models/tumour-triage-detector/fitted").json()
        apply_manifest(cluster, namespace, manifest)
        wait_for("the detector InferenceService", lambda: get(cluster, KSERVE, namespace, "tumour-triage-detector"))
        report_address(cluster, namespace, "tumour-triage-detector", deployment.detector_base)
        body = get(cluster, XM, namespace, "tumour-triage")
        assert body is not None and "detector" not in (body.get("status") or {}), "read only once KServe says it is ready"
        cluster.objects.patch_namespaced_custom_object_status(
            *KSERVE[:2],
            namespace,
            KSERVE[2],
            "tumour-triage-detector",
            {
                "status": {
                    "url": deployment.detector_base,
                    "address": {"url": deployment.detector_base},
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                }
            },
        )
        body = wait_for(
            "status.detector",
            lambda: (b := get(cluster, XM, namespace, "tumour-triage")) and (b.get("status") or {}).get("detector") and b,
        )
        shown = body["status"]["detector"]
        assert shown["threshold"] == fitted["threshold"] > 0
        assert shown["falsePositiveRate"] == 0.01 and shown["heldOutRows"] == 120 and len(shown["specHash"]) == 16
        assert shown["representation"] == fitted["representation"] and shown["representation"] in ("scaled", "whitened")
        assert shown["realisedFalsePositiveRate"] == fitted["realisedFalsePositiveRate"]
        # The sample watches drift too: the detector is ready once its drift monitor (one replica) is.
        assert "drift monitor" in condition(body, "DetectorReady")["message"]
        assert body["status"]["children"]["drift"] == "tumour-triage-drift"
        deployment.start_drift()
        assert deployment.drift_base is not None
        wait_for("the drift monitor InferenceService", lambda: get(cluster, KSERVE, namespace, "tumour-triage-drift"))
        cluster.objects.patch_namespaced_custom_object_status(
            *KSERVE[:2],
            namespace,
            KSERVE[2],
            "tumour-triage-drift",
            {
                "status": {
                    "url": deployment.drift_base,
                    "address": {"url": deployment.drift_base},
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                }
            },
        )
        body = wait_for(
            "DetectorReady with the drift monitor",
            lambda: (
                (b := get(cluster, XM, namespace, "tumour-triage")) and condition(b, "DetectorReady")["status"] == "True" and b
            ),
        )
        drift_url = body["status"]["urls"]["drift"]
        assert drift_url == f"{deployment.drift_base}/glassbox/v1/models/tumour-triage-drift/drift"
        assert httpx.get(drift_url).json()["drifted"] is None, "no request logged yet"
        # KServe's logger copies the predictor's requests to the monitor; these drifted (f0 half its range higher).
        from glassbox_testing.kserve_logger import log_rows

        shifted = np.random.default_rng(1).uniform(size=(200, 5))
        shifted[:, 0] += 0.5
        assert log_rows(deployment.drift_base + "/glassbox/v1/models/tumour-triage-drift/drift/events", shifted) == 200
        wait_for("the window tested", lambda: httpx.get(drift_url).json().get("testedInputs") == 200)
        # The periodic check reads it within two minutes; any change to the monitor's object reconciles sooner.
        cluster.objects.patch_namespaced_custom_object(
            *KSERVE[:2], namespace, KSERVE[2], "tumour-triage-drift", {"metadata": {"labels": {"touched": "1"}}}
        )
        body = wait_for(
            "status.drift",
            lambda: (b := get(cluster, XM, namespace, "tumour-triage")) and (b["status"].get("drift") or {}).get("drifted") and b,
        )
        assert body["status"]["drift"]["driftedFeatures"][0] == "f0" and body["status"]["drift"]["windowRows"] == 200

        def drift_events() -> list[Any]:
            events = cluster.core.list_namespaced_event(namespace, field_selector="involvedObject.name=tumour-triage").items
            return [e for e in events if e.reason == "DriftBegan"]

        began = wait_for("a DriftBegan event", drift_events)
        assert began[0].type == "Warning" and "f0" in began[0].message
    finally:
        deployment.stop()


def test_in_a_cluster_whose_default_is_raw_deployment_the_explainer_is_built_for_an_hpa(
    cluster: Cluster, operator: RunningOperator, namespace: str
) -> None:
    """No annotation on the object; KServe reports running the predictor as plain Deployments (its default).
    The explainer then scales on a CPU target, since KServe's HPA reads no other metric, and holds its own
    waiting room, since nothing in front of it buffers; the predictor is rebuilt on cpu too."""
    manifest = sample("outlier-gated")  # its explainer names no scaleMetric
    name = manifest["metadata"]["name"]
    apply_manifest(cluster, namespace, manifest)
    wait_for("the predictor", lambda: get(cluster, KSERVE, namespace, name))
    address = f"http://{name}-predictor.{namespace}.svc.cluster.local:8080"
    cluster.objects.patch_namespaced_custom_object_status(
        *KSERVE[:2], namespace, KSERVE[2], name, {"status": {"address": {"url": address}, "deploymentMode": "RawDeployment"}}
    )
    explainer = wait_for(
        "the explainer, built for KServe's HPA",
        lambda: (
            (e := get(cluster, KSERVE, namespace, f"{name}-explainer"))
            and e["spec"]["predictor"].get("scaleMetric") == "cpu"
            and e
        ),
    )
    component = explainer["spec"]["predictor"]
    assert "containerConcurrency" not in component and 10 <= component["scaleTarget"] <= 80
    assert "--max_waiting_explanations=32" in component["containers"][0]["args"]
    assert "serving.kserve.io/deploymentMode" not in explainer["metadata"]["annotations"]  # the cluster's choice, not pinned
    report_address(cluster, namespace, f"{name}-explainer")
    scaling = wait_for(
        "ScalingAsSpecified",
        lambda: (c := condition(get(cluster, XM, namespace, name), "ScalingAsSpecified")) and c.get("status") and c,
    )
    # The predictor too is rebuilt for the HPA once KServe has said the mode: nothing the cluster ignores.
    wait_for(
        "the predictor, rebuilt for KServe's HPA",
        lambda: (p := get(cluster, KSERVE, namespace, name)) and p["spec"]["predictor"].get("scaleMetric") == "cpu",
    )
    assert "spec.explainer" not in scaling.get("message", ""), scaling
    wait_for(
        "ScalingAsSpecified=True",
        lambda: condition(get(cluster, XM, namespace, name), "ScalingAsSpecified").get("status") == "True",
    )
