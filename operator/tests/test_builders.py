"""The pure builders, against golden YAML a reviewer can read.

Regenerate the golden files after an intended change with
`GLASSBOX_UPDATE_GOLDEN=1 pytest operator/tests/test_builders.py` and review the diff.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from glassbox.contract.api import ExplainedModelSpec, ExplainerFit
from glassbox.contract.wire import DETECTOR_FIT_ENV, RECORDS_POSTGRES_ENV
from glassbox.operator.builders import (
    EXPLAINER_SPEC_ENV,
    RECORDS_MOUNT_PATH,
    SPEC_HASH_ANNOTATION,
    TIMEOUT_MARGIN_SECONDS,
    OperatorConfig,
    Parent,
    build_children,
    build_disruption_budgets,
    build_explainer_isvc,
    build_predictor_isvc,
    explainer_generation,
    predictor_target_of_own,
)
from glassbox.operator.kserve_addressing import model_version_of, predict_target
from glassbox_testing.samples import SAMPLES, load_sample

GOLDEN = Path(__file__).parent / "golden"
CONFIG = OperatorConfig()


def reported(name: str, namespace: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    """An InferenceService as KServe reports it in Serverless mode: status.address.url is the cluster-local host."""
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec or {"predictor": {"model": {"modelFormat": {"name": "sklearn"}}}},
        "status": {"address": {"url": f"http://{name}.{namespace}.svc.cluster.local"}},
    }


def children_of(manifest: dict[str, Any], namespace: str = "ml", uid: str = "0000-uid") -> list[dict[str, Any]]:
    """Every child, built once KServe has reported the addresses of the predictor, the explainer and the detector."""
    parent = Parent(name=manifest["metadata"]["name"], namespace=namespace, uid=uid)
    spec = ExplainedModelSpec.model_validate(manifest["spec"])
    if spec.predictor.deploys_model:
        target = predictor_target_of_own(parent, spec, reported(parent.name, namespace))
    else:
        existing = reported(str(spec.predictor.inference_service_name), namespace)
        target = predict_target(existing, protocol_override=spec.predictor.protocol)
    explainer_base = f"http://{parent.name}-explainer.{namespace}.svc.cluster.local"
    detector_base = f"http://{parent.name}-detector.{namespace}.svc.cluster.local" if spec.detector else None
    return build_children(parent, spec, CONFIG, target, explainer_base, detector_base).objects()


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_children_of_each_sample_match_golden(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    rendered = yaml.safe_dump_all(children_of(manifest), sort_keys=True)
    golden = GOLDEN / f"{path.stem}.children.yaml"
    if os.environ.get("GLASSBOX_UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert golden.exists(), f"no golden file {golden}; run with GLASSBOX_UPDATE_GOLDEN=1 and review it"
    assert rendered == golden.read_text(), f"children of {path.name} differ from {golden.name}"


def test_builders_are_deterministic(credit_risk: dict[str, Any]) -> None:
    assert children_of(credit_risk) == children_of(copy.deepcopy(credit_risk))


def test_gpu_node_selector_and_tolerations_reach_the_predictor(credit_risk: dict[str, Any]) -> None:
    predictor = children_of(credit_risk)[0]
    component = predictor["spec"]["predictor"]
    container = component["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert component["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert component["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "--device=cuda" in container["args"]
    assert "--max_batch_size=512" in container["args"]


def test_the_explainer_scales_independently_and_carries_only_what_it_fits_from(credit_risk: dict[str, Any]) -> None:
    explainer = children_of(credit_risk)[1]
    component = explainer["spec"]["predictor"]
    assert (component["minReplicas"], component["maxReplicas"], component["scaleTarget"]) == (1, 10, 2)
    env = {e["name"]: e.get("value") for e in component["containers"][0]["env"]}
    carried = ExplainerFit.model_validate_json(env[EXPLAINER_SPEC_ENV])
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"]).explainer
    assert (carried.methods, carried.default_method, carried.reference_data) == (
        spec.methods,
        spec.default_method,
        spec.reference_data,
    )
    # A white-box method (ig) needs the weights: the storage initializer fetches them.
    assert env["STORAGE_URI"] == credit_risk["spec"]["predictor"]["storageUri"]
    # A scaling, resources or placement edit changes the component, never the container: no pod rolls, nothing refits.
    edited = copy.deepcopy(credit_risk)
    edited["spec"]["explainer"]["autoscaling"]["maxReplicas"] = 30
    edited["spec"]["explainer"]["resources"] = {"cpuRequest": "4", "memoryRequest": "4Gi"}
    edited["spec"]["explainer"]["tolerations"] = [{"key": "spot", "operator": "Exists"}]
    rescaled = children_of(edited)[1]["spec"]["predictor"]
    assert rescaled["containers"][0]["env"] == component["containers"][0]["env"]
    assert rescaled["containers"][0]["args"] == component["containers"][0]["args"]
    assert rescaled["maxReplicas"] == 30


def test_a_black_box_explainer_does_not_download_the_model(credit_risk: dict[str, Any]) -> None:
    credit_risk["spec"]["explainer"]["methods"] = [
        m for m in credit_risk["spec"]["explainer"]["methods"] if m["type"] != "IntegratedGradients"
    ]
    env = {e["name"] for e in children_of(credit_risk)[1]["spec"]["predictor"]["containers"][0]["env"]}
    assert "STORAGE_URI" not in env


def test_other_formats_use_kserve_runtimes_and_its_batcher(credit_risk: dict[str, Any]) -> None:
    credit_risk["spec"]["predictor"]["modelFormat"] = "sklearn"
    component = children_of(credit_risk)[0]["spec"]["predictor"]
    assert "containers" not in component
    assert component["model"]["modelFormat"] == {"name": "sklearn"}
    assert component["model"]["protocolVersion"] == "v2"
    assert component["batcher"] == {"maxBatchSize": 512, "maxLatency": 5}


def test_every_child_is_owned_and_labelled(credit_risk: dict[str, Any]) -> None:
    for child in children_of(credit_risk, uid="abc"):
        meta = child["metadata"]
        assert meta["namespace"] == "ml"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "glassbox.dev/v1alpha1",
                "kind": "ExplainedModel",
                "name": "credit-risk",
                "uid": "abc",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        assert meta["labels"]["glassbox.dev/explained-model"] == "credit-risk"


def test_the_spec_hash_changes_with_the_spec_and_only_then(credit_risk: dict[str, Any]) -> None:
    before = [c["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for c in children_of(credit_risk)]
    assert before == [c["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for c in children_of(credit_risk)]
    del credit_risk["spec"]["predictor"]["nodeSelector"]
    after = [c["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for c in children_of(credit_risk)]
    assert after[0] != before[0]
    assert after[1:] == before[1:]


def test_graph_routes_switch_on_the_route_field_then_on_the_body_shape(credit_risk: dict[str, Any]) -> None:
    graph = children_of(credit_risk)[2]
    nodes = graph["spec"]["nodes"]
    root = nodes["root"]
    assert root["routerType"] == "Switch"
    assert [s["name"] for s in root["steps"]] == [
        "predict",
        "predict-in-parameters",
        "explain",
        "explain-in-parameters",
        "predict-and-explain",
        "predict-and-explain-in-parameters",
        "unknown-route",
        "unknown-route-in-parameters",
        "default",
    ]
    assert root["steps"][2]["condition"] == '[@this].#(route=="explain")'
    assert root["steps"][3]["condition"] == '[@this].#(parameters.route=="explain")'
    assert root["steps"][-1] == {"name": "default", "nodeName": "predict", "condition": "@this"}
    assert root["steps"][-3]["serviceUrl"] == (
        "http://credit-risk-explainer.ml.svc.cluster.local/glassbox/v1/unknown-route?routes=predict,explain,predictAndExplain"
    )
    predictor = "http://credit-risk.ml.svc.cluster.local"
    assert nodes["predict"] == {
        "routerType": "Switch",
        "steps": [
            {
                "name": "v2-body",
                "serviceUrl": f"{predictor}/v2/models/credit-risk/infer",
                "condition": "inputs",
                "dependency": "Hard",
            },
            {
                "name": "v1-body",
                "serviceUrl": f"{predictor}/v1/models/credit-risk:predict",
                "condition": "instances",
                "dependency": "Hard",
            },
            {
                "name": "predictor",
                "serviceUrl": f"{predictor}/v2/models/credit-risk/infer",
                "condition": "@this",
                "dependency": "Hard",
            },
        ],
    }
    explain_url = "http://credit-risk-explainer.ml.svc.cluster.local/v1/models/credit-risk:explain"
    assert nodes["explain"]["steps"][0]["serviceUrl"] == explain_url
    assert nodes["predict-and-explain"]["routerType"] == "Ensemble"
    assert nodes["predict-and-explain"]["steps"] == [
        {"name": "prediction", "nodeName": "predict", "dependency": "Hard"},
        {"name": "explanation", "serviceUrl": explain_url, "dependency": "Soft"},
    ]


def test_timeouts_let_the_explainers_own_504_arrive_first(credit_risk: dict[str, Any]) -> None:
    credit_risk["spec"]["explainer"]["timeoutSeconds"] = 300
    _, explainer, graph = children_of(credit_risk)
    assert "--explain_timeout_seconds=300" in explainer["spec"]["predictor"]["containers"][0]["args"]
    component_timeout = explainer["spec"]["predictor"]["timeout"]
    timeouts = graph["spec"]["routerTimeouts"]
    assert 300 < component_timeout == 300 + TIMEOUT_MARGIN_SECONDS
    # Knative answers (the explainer's 504, or its own past the revision's timeout) before the router gives up.
    assert timeouts["serviceClient"] > component_timeout
    assert timeouts["serverWrite"] > timeouts["serviceClient"]


def test_a_graph_without_predict_defaults_to_its_first_route(credit_risk: dict[str, Any]) -> None:
    credit_risk["spec"]["graph"]["routes"] = ["explain", "predictAndExplain"]
    nodes = children_of(credit_risk)[2]["spec"]["nodes"]
    assert nodes["root"]["steps"][-1] == {"name": "default", "nodeName": "explain", "condition": "@this"}
    assert "predict" in nodes  # the Ensemble's prediction step
    credit_risk["spec"]["graph"]["defaultRoute"] = "predictAndExplain"
    nodes = children_of(credit_risk)[2]["spec"]["nodes"]
    assert nodes["root"]["steps"][-1]["nodeName"] == "predict-and-explain"


def test_nothing_that_needs_an_address_is_built_before_kserve_reports_it(credit_risk: dict[str, Any]) -> None:
    parent = Parent("credit-risk", "ml", "u")
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    assert predictor_target_of_own(parent, spec, {"metadata": {"name": "credit-risk"}}) is None
    nothing_reported = build_children(parent, spec, CONFIG)
    assert nothing_reported.predictor is not None and nothing_reported.explainer is None and nothing_reported.graph is None
    target = predictor_target_of_own(parent, spec, reported("credit-risk", "ml"))
    predictor_only = build_children(parent, spec, CONFIG, target)
    assert predictor_only.explainer is not None and predictor_only.graph is None


def test_a_headless_raw_deployment_address_keeps_its_port(credit_risk: dict[str, Any]) -> None:
    """KServe's createAddress adds the target port when the entry Service is headless (no ClusterIP)."""
    parent = Parent("credit-risk", "ml", "u")
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    live = {"status": {"address": {"url": "http://credit-risk-predictor.ml.svc.cluster.local:8080"}}}
    target = predictor_target_of_own(parent, spec, live)
    assert target is not None
    explainer = build_children(parent, spec, CONFIG, target).explainer
    assert explainer is not None
    assert (
        "--predictor_host=credit-risk-predictor.ml.svc.cluster.local:8080"
        in explainer["spec"]["predictor"]["containers"][0]["args"]
    )


def test_body_limits_reach_the_servers(credit_risk: dict[str, Any]) -> None:
    credit_risk["spec"]["predictor"]["maxBodyBytes"] = 128 * 2**20
    credit_risk["spec"]["explainer"]["maxBodyBytes"] = 16 * 2**20
    predictor, explainer, _ = children_of(credit_risk)
    assert f"--max_body_bytes={128 * 2**20}" in predictor["spec"]["predictor"]["containers"][0]["args"]
    assert f"--max_body_bytes={16 * 2**20}" in explainer["spec"]["predictor"]["containers"][0]["args"]


@pytest.mark.parametrize(
    "mode,grace", [(None, None), ("Serverless", None), ("Knative", None), ("RawDeployment", 75), ("Standard", 75)]
)
def test_kserve_deployment_mode_is_copied_and_a_plain_deployment_drains_past_the_timeout(
    credit_risk: dict[str, Any], mode: str | None, grace: int | None
) -> None:
    """Knative sets a pod's grace period to the revision's timeout and refuses the field (knative.dev/serving
    fieldmask.go PodSpecMask); KServe copies it into a plain Deployment as given."""
    parent = Parent("credit-risk", "ml", "u", deployment_mode=mode)
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    target = predictor_target_of_own(parent, spec, reported("credit-risk", "ml"))
    children = build_children(
        parent, spec, CONFIG, target, explainer_base_url="http://credit-risk-explainer.ml.svc.cluster.local"
    )
    assert children.explainer is not None and children.graph is not None and children.predictor is not None
    for child in (children.predictor, children.explainer, children.graph):
        assert child["metadata"]["annotations"].get("serving.kserve.io/deploymentMode") == mode
    assert children.explainer["spec"]["predictor"].get("terminationGracePeriodSeconds") == grace  # timeoutSeconds 60 + 15
    assert "terminationGracePeriodSeconds" not in children.predictor["spec"]["predictor"]


def test_service_accounts_reach_the_pods(credit_risk: dict[str, Any]) -> None:
    credit_risk["spec"]["predictor"]["serviceAccountName"] = "model-reader"
    credit_risk["spec"]["explainer"]["serviceAccountName"] = "bucket-reader"
    predictor, explainer, _ = children_of(credit_risk)
    assert predictor["spec"]["predictor"]["serviceAccountName"] == "model-reader"
    assert explainer["spec"]["predictor"]["serviceAccountName"] == "bucket-reader"


def test_an_existing_inference_service_is_referenced_never_built() -> None:
    from glassbox_testing.samples import load_sample

    manifest = load_sample("existing-inferenceservice")
    children = children_of(manifest)
    assert [c["metadata"]["name"] for c in children] == ["loan-approval-explainer", "loan-approval-graph"]
    args = children[0]["spec"]["predictor"]["containers"][0]["args"]
    assert "--predictor_host=loan-approval-sklearn.ml.svc.cluster.local" in args
    assert "--model_name=loan-approval-sklearn" in args
    assert "--predictor_protocol=v1" in args


@pytest.mark.parametrize(("min_replicas", "probe"), [(0, ["--predictor_probe=after_failure"]), (1, [])])
def test_a_predictor_that_may_scale_to_zero_is_probed_only_after_a_failed_call(
    credit_risk: dict[str, Any], min_replicas: int, probe: list[str]
) -> None:
    """A readiness probe every 2 s is a request through KServe's activator: it would never let the predictor go."""
    credit_risk["spec"]["predictor"]["autoscaling"]["minReplicas"] = min_replicas
    parent = Parent(name="credit-risk", namespace="ml", uid="0000-uid")
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    live = {**build_predictor_isvc(parent, spec, CONFIG), "status": {"address": {"url": "http://credit-risk-predictor.ml"}}}
    assert live["spec"]["predictor"]["minReplicas"] == min_replicas
    target = predictor_target_of_own(parent, spec, live)
    assert target is not None
    args = build_explainer_isvc(parent, spec, target, CONFIG)["spec"]["predictor"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--predictor_probe")] == probe
    # Another's InferenceService: what KServe was told, read from the live object.
    existing = reported("loan-approval-sklearn", "ml")
    existing["spec"]["predictor"]["minReplicas"] = min_replicas
    target = predict_target(existing)
    assert target is not None
    args = build_explainer_isvc(parent, spec, target, CONFIG)["spec"]["predictor"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--predictor_probe")] == probe


def restricted_profile_violations(container: dict[str, Any]) -> list[str]:
    """Pod Security Standards, "restricted" level, for one container whose pod sets no securityContext
    (Knative refuses a pod-level one): each rule the container breaks."""
    context = container.get("securityContext") or {}
    problems = []
    if context.get("privileged"):
        problems.append("privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation must be false")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append("capabilities must drop ALL")
    if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
        problems.append("capabilities may add only NET_BIND_SERVICE")
    if context.get("runAsNonRoot") is not True or context.get("runAsUser") == 0:
        problems.append("must run as non-root")
    if (context.get("seccompProfile") or {}).get("type") not in ("RuntimeDefault", "Localhost"):
        problems.append("seccompProfile must be RuntimeDefault or Localhost")
    for field in ("hostPort",):
        if any(port.get(field) for port in container.get("ports") or []):
            problems.append(f"{field} is not allowed")
    return problems


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_container_glassbox_builds_meets_the_restricted_profile(path: Path) -> None:
    checked = 0
    for child in children_of(yaml.safe_load(path.read_text())):
        if child["kind"] != "InferenceService":
            continue
        component = child["spec"]["predictor"]
        pod_fields = {"hostNetwork", "hostPID", "hostIPC"}
        assert not pod_fields & set(component), f"{child['metadata']['name']} sets pod fields {pod_fields & set(component)}"
        # The restricted profile's volume types (a hostPath would break it) and the pod's group, nothing else.
        for volume in component.get("volumes") or []:
            assert set(volume) - {"name"} <= {"emptyDir", "persistentVolumeClaim", "secret", "configMap"}, volume
        assert set(component.get("securityContext") or {}) <= {"fsGroup"}, component["securityContext"]
        for container in component.get("containers") or [component["model"]]:
            assert restricted_profile_violations(container) == [], (child["metadata"]["name"], container.get("name"))
            checked += 1
    assert checked >= 1


def test_the_checker_catches_what_the_profile_forbids() -> None:
    assert set(restricted_profile_violations({"securityContext": {"privileged": True, "runAsUser": 0}})) >= {
        "privileged",
        "allowPrivilegeEscalation must be false",
        "must run as non-root",
        "capabilities must drop ALL",
    }


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_children_are_cluster_local_unless_the_spec_asks_for_external(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    for child in children_of(manifest):
        assert child["metadata"]["labels"]["networking.kserve.io/visibility"] == "cluster-local"
        assert child["metadata"]["labels"]["networking.knative.dev/visibility"] == "cluster-local"
    manifest["spec"]["exposure"] = "External"
    for child in children_of(manifest):
        assert not any("visibility" in label for label in child["metadata"]["labels"])


def test_a_disruption_budget_for_each_deployed_service_with_more_than_one_replica() -> None:
    manifest = yaml.safe_load((SAMPLES[0].parent / "tabular-pytorch-gpu.yaml").read_text())
    parent = Parent(name="credit-risk", namespace="ml", uid="u")
    spec = ExplainedModelSpec.model_validate(manifest["spec"])
    assert build_disruption_budgets(parent, spec, "policy/v1") == []  # one replica: a budget would block every drain

    manifest["spec"]["predictor"]["autoscaling"].update(minReplicas=2, maxReplicas=4)
    manifest["spec"]["explainer"]["autoscaling"].update(minReplicas=3, maxReplicas=6)
    budgets = build_disruption_budgets(parent, ExplainedModelSpec.model_validate(manifest["spec"]), "policy/v1beta1")
    assert [(b["apiVersion"], b["metadata"]["name"]) for b in budgets] == [
        ("policy/v1beta1", "credit-risk"),
        ("policy/v1beta1", "credit-risk-explainer"),
    ]
    assert budgets[1]["spec"] == {
        "maxUnavailable": 1,
        # KServe's own labels on the component's pods.
        "selector": {"matchLabels": {"serving.kserve.io/inferenceservice": "credit-risk-explainer", "component": "predictor"}},
    }
    assert budgets[0]["metadata"]["ownerReferences"][0]["uid"] == "u"


def test_the_detector_gets_only_its_fit_and_a_scaling_edit_leaves_its_pods_alone() -> None:
    manifest = load_sample("outlier-gated")
    parent = Parent("tumour-triage", "ml", "0000-uid")
    spec = ExplainedModelSpec.model_validate(manifest["spec"])
    detector = build_children(parent, spec, CONFIG).detector
    assert detector is not None and detector["metadata"]["name"] == "tumour-triage-detector"
    container = detector["spec"]["predictor"]["containers"][0]
    assert container["command"][-1] == "glassbox.explainers.detector" and container["image"] == CONFIG.explainer_image
    fit = json.loads(next(e["value"] for e in container["env"] if e["name"] == DETECTOR_FIT_ENV))
    assert (
        fit["referenceData"]["uri"] == manifest["spec"]["explainer"]["referenceData"]["uri"]
    )  # the explainer's, when it names none
    assert not {"autoscaling", "resources", "nodeSelector", "tolerations", "serviceAccountName"} & set(fit)
    manifest["spec"]["detector"]["autoscaling"]["maxReplicas"] = 12
    manifest["spec"]["detector"]["resources"] = {"cpuRequest": "2", "memoryRequest": "4Gi"}
    rescaled = build_children(parent, ExplainedModelSpec.model_validate(manifest["spec"]), CONFIG).detector
    assert rescaled is not None
    assert rescaled["spec"]["predictor"]["containers"][0]["env"] == container["env"]  # the pod's fit is unchanged
    assert rescaled["spec"]["predictor"]["maxReplicas"] == 12


def test_the_gated_route_waits_for_the_detectors_address_and_a_detector_with_two_replicas_gets_a_budget() -> None:
    manifest = load_sample("outlier-gated")
    parent = Parent("tumour-triage", "ml", "0000-uid")
    spec = ExplainedModelSpec.model_validate(manifest["spec"])
    target = predictor_target_of_own(parent, spec, reported("tumour-triage", "ml"))
    assert build_children(parent, spec, CONFIG, target, "http://tumour-triage-explainer.ml").graph is None
    budgets = build_disruption_budgets(parent, spec, "policy/v1")
    assert [b["metadata"]["name"] for b in budgets] == ["tumour-triage-detector"]  # minReplicas 2; the others have 1
    assert budgets[0]["spec"]["selector"]["matchLabels"]["serving.kserve.io/inferenceservice"] == "tumour-triage-detector"


def _flag(container: dict[str, Any], name: str) -> str:
    return next(a.split("=", 1)[1] for a in container["args"] if a.startswith(f"--{name}="))


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_each_sample_tells_knative_what_its_explainer_and_detector_hold(path: Path) -> None:
    """Serverless: containerConcurrency is what the server admits (workers + waiting), the target its workers."""
    children = {
        (c["kind"], c["metadata"]["labels"]["app.kubernetes.io/component"]): c
        for c in children_of(yaml.safe_load(path.read_text()))
    }
    explainer = children[("InferenceService", "explainer")]["spec"]["predictor"]
    container = explainer["containers"][0]
    workers, waiting = int(_flag(container, "explain_workers")), int(_flag(container, "max_waiting_explanations"))
    assert explainer["containerConcurrency"] == workers + waiting
    detector = children.get(("InferenceService", "detector"))
    components = [explainer] if detector is None else [explainer, detector["spec"]["predictor"]]
    for component in components:
        assert component["containerConcurrency"] >= int(
            _flag(component["containers"][0], "explain_workers" if component is explainer else "detector_workers")
        )
        if component["scaleMetric"] == "concurrency":  # a target in requests in flight, which the limit caps
            assert 1 <= component["scaleTarget"] <= component["containerConcurrency"]
        else:  # rps: the user's own target, kept
            assert "scaleTarget" in component


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_under_raw_deployment_each_sample_scales_on_a_cpu_target_one_busy_core_reaches(path: Path) -> None:
    manifest = yaml.safe_load(path.read_text())
    spec = ExplainedModelSpec.model_validate(manifest["spec"])
    parent = Parent(manifest["metadata"]["name"], "ml", "u", deployment_mode="RawDeployment")
    target = predict_target(reported("p", "ml"), protocol_override=spec.predictor.protocol)
    explainer = build_explainer_isvc(parent, spec, target, CONFIG)["spec"]["predictor"]
    assert "containerConcurrency" not in explainer  # no queue-proxy to enforce it
    if "scaleMetric" not in manifest["spec"]["explainer"].get("autoscaling", {}):
        assert explainer["scaleMetric"] == "cpu"  # what KServe's HPA reads
        assert 10 <= explainer["scaleTarget"] <= 80
    # Nothing in front buffers a burst: the explainer holds a waiting room of its own.
    assert int(_flag(explainer["containers"][0], "max_waiting_explanations")) >= 32 or "capacity" in manifest["spec"]["explainer"]


def test_derived_scaling_follows_capacity_and_what_the_user_set(credit_risk: dict[str, Any]) -> None:
    spec = credit_risk["spec"]
    spec["explainer"]["autoscaling"] = {"maxReplicas": 10}

    def explainer_of(raw: bool = False) -> dict[str, Any]:
        parent = Parent("credit-risk", "ml", "u", deployment_mode="RawDeployment" if raw else None)
        built = ExplainedModelSpec.model_validate(spec)
        target = predictor_target_of_own(parent, built, reported("credit-risk-predictor", "ml"))
        assert target is not None
        return build_explainer_isvc(parent, built, target, CONFIG)["spec"]["predictor"]

    derived = explainer_of()
    assert (derived["containerConcurrency"], derived["scaleTarget"]) == (8, 4)
    spec["explainer"]["capacity"] = {"workers": 2, "maxWaiting": 6}
    assert (explainer_of()["containerConcurrency"], explainer_of()["scaleTarget"]) == (8, 2)
    # A hard limit the user sets leaves the rest of it to wait.
    spec["explainer"]["capacity"] = {"workers": 2}
    spec["explainer"]["autoscaling"] = {"containerConcurrency": 12, "scaleTarget": 3}
    chosen = explainer_of()
    assert (chosen["containerConcurrency"], chosen["scaleTarget"]) == (12, 3)
    assert _flag(chosen["containers"][0], "max_waiting_explanations") == "10"
    # RawDeployment: an HPA on CPU, the target one busy core reaches on the request.
    spec["explainer"]["autoscaling"] = {}
    spec["explainer"]["resources"] = {"cpuRequest": "2", "memoryRequest": "4Gi"}
    raw = explainer_of(raw=True)
    assert (raw["scaleMetric"], raw["scaleTarget"]) == ("cpu", 35)
    spec["explainer"]["resources"] = {"cpuRequest": "500m", "memoryRequest": "4Gi", "cpuLimit": "1"}
    assert explainer_of(raw=True)["scaleTarget"] == 80  # one core on a half-core request: 140% reachable, capped
    # A metric the user chose is theirs (KEDA reads concurrency, for one).
    spec["explainer"]["autoscaling"] = {"scaleMetric": "concurrency"}
    assert explainer_of(raw=True)["scaleMetric"] == "concurrency"


def test_the_mode_kserve_reports_decides_where_the_object_names_none(credit_risk: dict[str, Any]) -> None:
    """A cluster whose default is RawDeployment: the explainer is built for an HPA once KServe reports the mode."""
    spec = credit_risk["spec"]
    spec["explainer"]["autoscaling"] = {"maxReplicas": 10}
    built = ExplainedModelSpec.model_validate(spec)

    def explainer_of(parent: Parent) -> dict[str, Any]:
        target = predictor_target_of_own(parent, built, reported("credit-risk-predictor", "ml"))
        assert target is not None
        return build_explainer_isvc(parent, built, target, CONFIG)

    reported_raw = explainer_of(Parent("credit-risk", "ml", "u", reported_mode="RawDeployment"))
    assert reported_raw["spec"]["predictor"]["scaleMetric"] == "cpu"
    assert "serving.kserve.io/deploymentMode" not in reported_raw["metadata"]["annotations"]  # the cluster's choice, not pinned
    # What the object says wins over what was reported.
    said = explainer_of(Parent("credit-risk", "ml", "u", deployment_mode="Serverless", reported_mode="RawDeployment"))
    assert said["spec"]["predictor"]["scaleMetric"] == "concurrency" and said["spec"]["predictor"]["containerConcurrency"] == 8


def _explainer_pod(manifest: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The explainer's component (pod spec), its container, and its arguments."""
    component = children_of(manifest)[1]["spec"]["predictor"]
    container = component["containers"][0]
    return component, container, container["args"]


def test_records_shared_by_replicas_are_in_postgresql_read_from_a_secret_never_from_the_object(
    credit_risk: dict[str, Any],
) -> None:
    component, container, args = _explainer_pod(credit_risk)
    assert "--records_postgres=true" in args and not any(a.startswith("--records_path") for a in args)
    secret = [e for e in container["env"] if e["name"] == RECORDS_POSTGRES_ENV]
    assert secret == [
        {"name": RECORDS_POSTGRES_ENV, "valueFrom": {"secretKeyRef": {"name": "credit-risk-records", "key": "url"}}}
    ]
    assert "--records_retention_days=400" in args and "--job_slots=1" in args and "--job_timeout_seconds=3600" in args
    # The model's version keys a record: the artifact's URI when no SHA-256 pins it, the pin when one does.
    assert "--model_digest=s3://models/credit-risk/model.pt" in args
    credit_risk["spec"]["predictor"]["storageSha256"] = "ab" * 32
    assert f"--model_digest=sha256:{'ab' * 32}" in _explainer_pod(credit_risk)[2]
    assert "volumes" not in component and "volumeMounts" not in container


def test_one_replica_keeps_records_in_sqlite_on_a_volume_and_more_replicas_without_postgres_keep_none(
    credit_risk: dict[str, Any],
) -> None:
    del credit_risk["spec"]["explainer"]["records"]
    credit_risk["spec"]["explainer"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    component, container, args = _explainer_pod(credit_risk)
    assert f"--records_path={RECORDS_MOUNT_PATH}/records.sqlite" in args
    assert component["volumes"] == [{"name": "glassbox-records", "emptyDir": {}}]
    assert container["volumeMounts"] == [{"name": "glassbox-records", "mountPath": RECORDS_MOUNT_PATH}]
    assert RECORDS_POSTGRES_ENV not in {e["name"] for e in container["env"]}
    # On a claim, the records outlive the pod; the pod's group may write the claim's files.
    credit_risk["spec"]["explainer"]["records"] = {"persistentVolumeClaim": "credit-records", "storeInputs": True}
    component, container, args = _explainer_pod(credit_risk)
    assert component["volumes"] == [{"name": "glassbox-records", "persistentVolumeClaim": {"claimName": "credit-records"}}]
    assert component["securityContext"] == {"fsGroup": 65532} and "--records_store_inputs=true" in args
    # Ten replicas would keep ten files: without PostgreSQL, no records (validation refuses `enabled: true`).
    credit_risk["spec"]["explainer"]["records"] = {}
    credit_risk["spec"]["explainer"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 10}
    component, container, args = _explainer_pod(credit_risk)
    assert not any(a.startswith(("--records", "--job_", "--model_digest")) for a in args)
    assert "volumes" not in component
    credit_risk["spec"]["explainer"]["records"] = {"enabled": False, "postgres": {"secretName": "db"}}
    assert not any(a.startswith("--records") for a in _explainer_pod(credit_risk)[2])


def test_records_of_an_existing_service_are_keyed_to_its_artifact_or_images() -> None:
    served = {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://m/v3", "runtimeVersion": "1.5"}}}
    assert model_version_of({"spec": served}) == "gs://m/v3 (1.5)"
    assert model_version_of({"spec": {"predictor": {"sklearn": {"storageUri": "gs://m/v4"}}}}) == "gs://m/v4"
    custom = {"predictor": {"containers": [{"name": "kserve-container", "image": "registry.example/model:7"}]}}
    assert model_version_of({"spec": custom}) == "registry.example/model:7"
    assert model_version_of({"spec": {"predictor": {}}}) is None
    # Scaling the existing service is not a new version: the explainer's arguments stay as they were.
    scaled = {"predictor": {**served["predictor"], "minReplicas": 3}}
    assert model_version_of({"spec": scaled}) == model_version_of({"spec": served})


def test_records_name_the_generation_the_explainer_was_deployed_from_and_other_edits_roll_no_pod(
    credit_risk: dict[str, Any],
) -> None:
    parent = Parent(name="credit-risk", namespace="ml", uid="0000-uid", generation=3)
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    target = predictor_target_of_own(parent, spec, reported("credit-risk", "ml"))
    assert target is not None

    def builder(model: ExplainedModelSpec) -> Any:
        return lambda generation: build_explainer_isvc(parent, model, target, CONFIG, generation)

    deployed = builder(spec)(3)
    args = deployed["spec"]["predictor"]["containers"][0]["args"]
    assert "--explained_model=ml/credit-risk" in args and "--explained_model_generation=3" in args
    assert explainer_generation(None, builder(spec), 3) == 3, "a new explainer is deployed from this generation"
    # Generation 4 changes the predictor's scaling only: the explainer is as generation 3 left it.
    assert explainer_generation(deployed, builder(spec), 4) == 3
    # Generation 5 changes a method: the explainer's records name generation 5 from then on.
    edited = copy.deepcopy(credit_risk)
    edited["spec"]["explainer"]["methods"][0]["anchorTabular"]["threshold"] = 0.9
    assert explainer_generation(deployed, builder(ExplainedModelSpec.model_validate(edited["spec"])), 5) == 5


def test_drift_runs_in_one_replica_fed_by_kserves_request_logger_and_its_edits_leave_the_detector_alone() -> None:
    gated = load_sample("outlier-gated")
    children = {c["metadata"]["name"]: c for c in children_of(gated)}
    monitor = children["tumour-triage-drift"]["spec"]["predictor"]
    assert (monitor["minReplicas"], monitor["maxReplicas"]) == (1, 1), "one window: one replica"
    assert "--drift_only=true" in monitor["containers"][0]["args"]
    logger = children["tumour-triage"]["spec"]["predictor"]["logger"]
    assert logger == {
        "mode": "request",
        "url": "http://tumour-triage-drift-predictor.ml.svc.cluster.local/glassbox/v1/models/tumour-triage-drift/drift/events",
        "metadataHeaders": ["Glassbox-Caller"],
    }
    detector_fit = {
        e["name"]: e["value"] for e in children["tumour-triage-detector"]["spec"]["predictor"]["containers"][0]["env"]
    }
    assert "drift" not in json.loads(detector_fit[DETECTOR_FIT_ENV])
    edited = copy.deepcopy(gated)
    edited["spec"]["detector"]["drift"]["windowRows"] = 5000
    after = {c["metadata"]["name"]: c for c in children_of(edited)}
    assert after["tumour-triage-detector"] == children["tumour-triage-detector"], "a drift edit refits no outlier detector"
    assert after["tumour-triage-drift"] != children["tumour-triage-drift"]
    del edited["spec"]["detector"]["drift"]
    names = {c["metadata"]["name"] for c in children_of(edited)}
    assert "tumour-triage-drift" not in names
    assert "logger" not in next(c for c in children_of(edited) if c["metadata"]["name"] == "tumour-triage")["spec"]["predictor"]


def test_an_existing_services_drift_is_fed_by_the_graph_through_the_detector_never_by_modifying_it() -> None:
    existing = load_sample("existing-inferenceservice")
    existing["spec"]["detector"] = {"drift": {"windowRows": 200}}
    children = {c["metadata"]["name"]: c for c in children_of(existing)}
    assert "loan-approval-sklearn" not in children, "the existing service is never written"
    detector_args = children["loan-approval-detector"]["spec"]["predictor"]["containers"][0]["args"]
    events = "http://loan-approval-drift-predictor.ml.svc.cluster.local/glassbox/v1/models/loan-approval-drift/drift/events"
    assert f"--drift_events_url={events}" in detector_args
    assert "--observed_inference_service=loan-approval-sklearn" in detector_args
    nodes = children["loan-approval-graph"]["spec"]["nodes"]
    assert nodes["predict"] == {
        "routerType": "Sequence",
        "steps": [
            {
                "name": "drift",
                "serviceUrl": "http://loan-approval-detector.ml.svc.cluster.local/glassbox/v1/models/loan-approval-detector/observe",
                "dependency": "Soft",
            },
            {"name": "prediction", "nodeName": "predict-to-model", "dependency": "Hard"},
        ],
    }
    # The prediction itself is the Switch on the body's shape the predict node is without drift.
    without = {c["metadata"]["name"]: c for c in children_of(load_sample("existing-inferenceservice"))}
    assert nodes["predict-to-model"] == without["loan-approval-graph"]["spec"]["nodes"]["predict"]
    assert "detect" not in nodes, "the detector is called to observe, not offered as a route"
    # No graph, or none of its routes predicts: nothing feeds the monitor, and the detector forwards nothing.
    for graph in ({"enabled": False}, {"routes": ["explain"]}):
        edited = copy.deepcopy(existing)
        edited["spec"]["graph"] = graph
        detector = next(c for c in children_of(edited) if c["metadata"]["name"] == "loan-approval-detector")
        assert not any(a.startswith("--drift_events_url") for a in detector["spec"]["predictor"]["containers"][0]["args"])
