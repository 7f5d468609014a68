"""Status computed from what KServe reports: conditions, transitions, URLs."""

from __future__ import annotations

import dataclasses
from typing import Any

from glassbox.contract.api import ExplainedModelSpec, Protocol
from glassbox.operator.kserve_addressing import PredictTarget
from glassbox.operator.status import (
    ChildReport,
    Observation,
    awaits_an_address,
    compute_status,
    drift_changes,
    status_changed,
    status_patch,
)
from glassbox.operator.validation import SpecProblem
from glassbox_testing.samples import load_sample


def ready(url: str) -> dict[str, Any]:
    return {"status": {"url": url, "conditions": [{"type": "Ready", "status": "True"}]}}


def observation(
    spec: ExplainedModelSpec, predictor: dict[str, Any] | None, explainer: dict[str, Any] | None, graph: dict[str, Any] | None
) -> Observation:
    return Observation(
        generation=3,
        spec=spec,
        predictor=ChildReport("InferenceService", "credit-risk", predictor),
        explainer=ChildReport("InferenceService", "credit-risk-explainer", explainer),
        graph=ChildReport("InferenceGraph", "credit-risk-graph", graph),
        predictor_target=PredictTarget("http://credit-risk.ml.svc.cluster.local", "credit-risk", Protocol.v2)
        if predictor
        else None,
    )


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in status["conditions"]}


def test_ready_only_when_every_child_is_ready(credit_risk: dict[str, Any]) -> None:
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    status = compute_status(observation(spec, ready("http://p"), {"status": {}}, None), None, "credit-risk", "t0")
    by_type = conditions(status)
    assert by_type["PredictorReady"]["status"] == "True"
    assert by_type["ExplainerReady"]["status"] == "Unknown"
    assert by_type["GraphReady"]["reason"] == "NotFound"
    assert by_type["Ready"]["status"] == "False" and "ExplainerReady" in by_type["Ready"]["message"]
    assert status["urls"] == {"predict": "http://p/v2/models/credit-risk/infer"}

    status = compute_status(
        observation(spec, ready("http://p/"), ready("http://e"), ready("http://g")), status, "credit-risk", "t1"
    )
    assert conditions(status)["Ready"]["status"] == "True"
    assert status["urls"] == {
        "predict": "http://p/v2/models/credit-risk/infer",
        "explain": "http://e/v1/models/credit-risk:explain",
        "records": "http://e/glassbox/v1/models/credit-risk/records",
        "graph": "http://g",
    }
    assert status["observedGeneration"] == 3
    assert status["children"] == {"predictor": "credit-risk", "explainer": "credit-risk-explainer", "graph": "credit-risk-graph"}
    assert status["methods"] == "anchortabular,kernelshap,ig"


def test_transition_time_moves_only_when_status_changes(credit_risk: dict[str, Any]) -> None:
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    first = compute_status(observation(spec, ready("http://p"), None, None), None, "credit-risk", "t0")
    second = compute_status(observation(spec, ready("http://p"), None, None), first, "credit-risk", "t1")
    assert not status_changed(first, second)
    third = compute_status(observation(spec, ready("http://p"), ready("http://e"), None), second, "credit-risk", "t2")
    assert conditions(third)["ExplainerReady"]["lastTransitionTime"] == "t2"
    assert conditions(third)["PredictorReady"]["lastTransitionTime"] == "t0"


def test_kserve_reasons_are_passed_on(credit_risk: dict[str, Any]) -> None:
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    failing = {
        "status": {"conditions": [{"type": "Ready", "status": "False", "reason": "RevisionMissing", "message": "no GPU node"}]}
    }
    status = compute_status(observation(spec, failing, None, None), None, "credit-risk", "t0")
    predictor = conditions(status)["PredictorReady"]
    assert (predictor["status"], predictor["reason"]) == ("False", "RevisionMissing")
    assert "no GPU node" in predictor["message"]


def test_an_invalid_spec_keeps_the_last_children_and_names_the_field() -> None:
    previous = {"children": {"predictor": "credit-risk"}, "urls": {"predict": "http://p"}, "methods": "anchortabular"}
    problems = [SpecProblem("spec.predictor.storageUri", "set either ... not both")]
    status = compute_status(Observation(generation=4, spec=None, problems=problems), previous, "credit-risk", "t0")
    by_type = conditions(status)
    assert by_type["SpecValid"] == {**by_type["SpecValid"], "status": "False", "reason": "InvalidSpec"}
    assert by_type["SpecValid"]["message"].startswith("spec.predictor.storageUri:")
    assert by_type["Ready"]["reason"] == "InvalidSpec"
    assert status["children"] == previous["children"] and status["urls"] == previous["urls"]


def test_kserve_missing_blocks_with_one_clear_reason(credit_risk: dict[str, Any]) -> None:
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    blocked = Observation(generation=1, spec=spec, blocked=("KServeNotInstalled", "install KServe"))
    status = compute_status(blocked, None, "credit-risk", "t0")
    assert conditions(status)["Ready"]["reason"] == "KServeNotInstalled"
    assert conditions(status)["PredictorReady"]["status"] == "Unknown"


def test_status_patch_removes_keys_that_are_gone() -> None:
    previous = {"urls": {"predict": "a", "graph": "g"}, "methods": "x", "conditions": []}
    new = {"urls": {"predict": "a"}, "conditions": []}
    assert status_patch(previous, new) == {"urls": {"graph": None, "predict": "a"}, "methods": None, "conditions": []}


def test_a_child_waiting_for_an_address_says_which(credit_risk: dict[str, Any]) -> None:
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])
    waiting = Observation(
        generation=1,
        spec=spec,
        predictor=ChildReport("InferenceService", "credit-risk", {"status": {}}),
        explainer=ChildReport(
            "InferenceService", "credit-risk-explainer", None, waiting=("WaitingForPredictorAddress", "waiting for KServe")
        ),
        graph=ChildReport("InferenceGraph", "credit-risk-graph", None, waiting=("WaitingForAddresses", "waiting too")),
    )
    by_type = conditions(compute_status(waiting, None, "credit-risk", "t0"))
    assert (by_type["ExplainerReady"]["status"], by_type["ExplainerReady"]["reason"]) == ("False", "WaitingForPredictorAddress")
    assert by_type["GraphReady"]["reason"] == "WaitingForAddresses"
    assert "waiting for KServe" in by_type["Ready"]["message"]
    assert awaits_an_address(waiting)  # a status the next report is about to replace
    failed = dataclasses.replace(
        waiting, predictor=ChildReport("InferenceService", "credit-risk", None, failure=("NameConflict", "x"))
    )
    assert not awaits_an_address(failed)  # someone must act: never held back
    assert not awaits_an_address(dataclasses.replace(waiting, blocked=("KServeNotInstalled", "x")))
    assert not awaits_an_address(dataclasses.replace(waiting, problems=[SpecProblem("spec.x", "bad")]))
    built = dataclasses.replace(waiting, explainer=ChildReport("InferenceService", "credit-risk-explainer", {"status": {}}))
    assert awaits_an_address(built)  # the graph still waits
    everything = dataclasses.replace(built, graph=ChildReport("InferenceGraph", "credit-risk-graph", {"status": {}}))
    assert not awaits_an_address(everything)  # all built: KServe's readiness may take minutes


def test_what_kserves_raw_deployment_mode_cannot_do_is_named(credit_risk: dict[str, Any]) -> None:
    """KServe's RawDeployment mode: an HPA on cpu or memory (hpa_reconciler.go), at least one replica."""
    spec = ExplainedModelSpec.model_validate(credit_risk["spec"])  # concurrency on both, explainer minReplicas 1
    raw = {"status": {"deploymentMode": "RawDeployment", "conditions": [{"type": "Ready", "status": "True"}]}}
    serverless = {"status": {"deploymentMode": "Serverless", "conditions": [{"type": "Ready", "status": "True"}]}}
    fine = conditions(compute_status(observation(spec, serverless, serverless, None), None, "credit-risk", "t0"))
    assert fine["ScalingAsSpecified"]["status"] == "True"
    raw_state = conditions(compute_status(observation(spec, raw, serverless, None), None, "credit-risk", "t0"))[
        "ScalingAsSpecified"
    ]
    assert raw_state["status"] == "False"
    assert raw_state["message"].startswith("spec.predictor.autoscaling.scaleMetric: concurrency needs KServe's Serverless mode")
    assert "annotate the ExplainedModel" not in raw_state["message"]  # the sample chose concurrency itself
    # An explainer left at the default metric: the default went to a cluster whose mode the object does not say.
    credit_risk["spec"]["explainer"]["autoscaling"] = {"maxReplicas": 10}
    unsaid = ExplainedModelSpec.model_validate(credit_risk["spec"])
    hint = conditions(compute_status(observation(unsaid, serverless, raw, None), None, "credit-risk", "t0"))
    assert "annotate the ExplainedModel serving.kserve.io/deploymentMode: RawDeployment" in hint["ScalingAsSpecified"]["message"]
    # Annotated, the explainer was given a CPU target: nothing to say of it.
    derived = {**raw, "spec": {"predictor": {"scaleMetric": "cpu", "scaleTarget": 70}}}
    quiet = conditions(compute_status(observation(unsaid, serverless, derived, None), None, "credit-risk", "t0"))
    assert quiet["ScalingAsSpecified"]["status"] == "True", quiet["ScalingAsSpecified"]
    refused = {
        "status": {
            "deploymentMode": "Serverless",
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "message": "admission webhook denied: must not set the field(s): spec.nodeSelector",
                }
            ],
        }
    }
    knative = conditions(compute_status(observation(spec, refused, serverless, None), None, "credit-risk", "t0"))[
        "ScalingAsSpecified"
    ]
    assert (
        "spec.predictor.nodeSelector/tolerations" in knative["message"]
        and "kubernetes.podspec-nodeselector" in knative["message"]
    )


def test_the_detector_has_its_own_condition_child_and_url() -> None:
    spec = ExplainedModelSpec.model_validate(load_sample("outlier-gated")["spec"])
    base = observation(spec, ready("http://p"), ready("http://e"), ready("http://g"))
    waiting = Observation(
        **{**base.__dict__, "detector": ChildReport("InferenceService", "tumour-triage-detector", {"status": {}})}
    )
    status = compute_status(waiting, None, "tumour-triage", "t0")
    assert conditions(status)["DetectorReady"]["status"] == "Unknown"
    assert conditions(status)["Ready"]["status"] == "False" and "DetectorReady" in conditions(status)["Ready"]["message"]
    done = Observation(
        **{**base.__dict__, "detector": ChildReport("InferenceService", "tumour-triage-detector", ready("http://d"))}
    )
    status = compute_status(done, status, "tumour-triage", "t1")
    assert conditions(status)["Ready"]["status"] == "True" and "detector" in conditions(status)["Ready"]["message"]
    assert status["children"]["detector"] == "tumour-triage-detector"
    assert status["urls"]["detect"] == "http://d/v1/models/tumour-triage-detector:predict"
    without = compute_status(base, None, "tumour-triage", "t0")
    assert conditions(without)["DetectorReady"]["status"] == "Unknown"  # the spec has a detector; none was reported
    no_detector = ExplainedModelSpec.model_validate({**load_sample("outlier-gated")["spec"], "detector": None, "graph": {}})
    plain = compute_status(observation(no_detector, ready("http://p"), ready("http://e"), ready("http://g")), None, "x", "t0")
    assert conditions(plain)["DetectorReady"]["reason"] == "NoDetector" and conditions(plain)["Ready"]["status"] == "True"


def test_the_status_says_where_records_are_kept_or_why_none_are(credit_risk: dict[str, Any]) -> None:
    def summary(records: dict[str, Any], max_replicas: int = 10) -> str:
        manifest = {**credit_risk["spec"]}
        manifest["explainer"] = {**manifest["explainer"], "records": records, "autoscaling": {"maxReplicas": max_replicas}}
        spec = ExplainedModelSpec.model_validate(manifest)
        return str(compute_status(observation(spec, None, None, None), None, "credit-risk", "t0")["records"])

    assert summary({"postgres": {"secretName": "db"}}) == "PostgreSQL (Secret db, key url), shared by every replica"
    assert summary({}).startswith("off: the explainer may run 10 replicas") and "records.postgres" in summary({})
    assert summary({}, max_replicas=1).startswith("SQLite on an emptyDir, lost with the pod")
    assert summary({"persistentVolumeClaim": "kept"}, max_replicas=1) == "SQLite on PersistentVolumeClaim kept"
    assert summary({"enabled": False, "postgres": {"secretName": "db"}}) == "off (spec.explainer.records.enabled is false)"


def test_the_detector_is_ready_once_its_drift_monitor_is_too() -> None:
    gated = load_sample("outlier-gated")
    spec = ExplainedModelSpec.model_validate(gated["spec"])

    def status_with(drift: dict[str, Any] | None) -> dict[str, Any]:
        seen = Observation(
            generation=1,
            spec=spec,
            predictor=ChildReport("InferenceService", "tumour-triage", ready("http://p")),
            explainer=ChildReport("InferenceService", "tumour-triage-explainer", ready("http://e")),
            detector=ChildReport("InferenceService", "tumour-triage-detector", ready("http://d")),
            drift=ChildReport("InferenceService", "tumour-triage-drift", drift),
            graph=ChildReport("InferenceGraph", "tumour-triage-graph", ready("http://g")),
            predictor_target=PredictTarget("http://p", "tumour-triage", Protocol.v2),
        )
        return compute_status(seen, None, "tumour-triage", "t0")

    waiting = conditions(status_with({"status": {}}))["DetectorReady"]
    assert waiting["status"] != "True" and waiting["message"].startswith("the drift monitor:")
    done = status_with(ready("http://m"))
    assert conditions(done)["DetectorReady"]["status"] == "True" and conditions(done)["Ready"]["status"] == "True"
    assert done["urls"]["drift"] == "http://m/glassbox/v1/models/tumour-triage-drift/drift"
    assert done["children"]["drift"] == "tumour-triage-drift"


def test_one_event_when_drift_begins_and_one_when_it_ends() -> None:
    drifted = {"drifted": True, "pValue": 0.001, "falseAlarmRate": 0.01, "windowRows": 500, "driftedFeatures": ["age"]}
    calm = {**drifted, "drifted": False, "pValue": 0.4, "driftedFeatures": []}
    began = drift_changes({"drift": calm}, {"drift": drifted})
    assert [(kind, reason) for kind, reason, _ in began] == [("Warning", "DriftBegan")] and "age" in began[0][2]
    assert drift_changes({"drift": drifted}, {"drift": {**drifted, "pValue": 0.002}}) == [], "still drifted: no new Event"
    assert [reason for _, reason, _ in drift_changes({"drift": drifted}, {"drift": calm})] == ["DriftEnded"]
    assert drift_changes({}, {"drift": calm}) == [] and drift_changes({}, {}) == []
    correlations = drift_changes({}, {"drift": {**drifted, "driftedFeatures": []}})
    assert "correlations" in correlations[0][2], "drift no single feature shows is named as such"
