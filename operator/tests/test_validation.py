"""Rules between fields: each names the field to change and what would be right."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from glassbox.operator.validation import find_spec_problems, policy_problems
from glassbox_testing.samples import SAMPLES, load_sample


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_every_sample_is_valid(path: Any) -> None:
    manifest = load_sample(path.stem)
    spec, problems = find_spec_problems(manifest["metadata"]["name"], manifest["spec"])
    assert problems == [] and spec is not None


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        node = spec
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _delete(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def mutate(spec: dict[str, Any]) -> None:
        node = spec
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


CASES: list[tuple[str, Callable[[dict[str, Any]], None], str, str]] = [
    (
        "both storageUri and an existing service",
        _set(["predictor", "inferenceServiceName"], "other"),
        "spec.predictor.storageUri",
        "not both",
    ),
    (
        "neither storageUri nor an existing service",
        _delete(["predictor", "storageUri"]),
        "spec.predictor",
        "inferenceServiceName",
    ),
    ("storageUri without modelFormat", _delete(["predictor", "modelFormat"]), "spec.predictor.modelFormat", "pytorch"),
    (
        "maxReplicas below minReplicas",
        _set(["predictor", "autoscaling", "minReplicas"], 5),
        "spec.predictor.autoscaling.maxReplicas",
        "at least minReplicas",
    ),
    (
        "cpu metric from zero",
        _set(["explainer", "autoscaling"], {"minReplicas": 0, "maxReplicas": 2, "scaleMetric": "cpu"}),
        "spec.explainer.autoscaling.scaleMetric",
        "concurrency or rps",
    ),
    (
        "bad quantity",
        _set(["predictor", "resources", "memoryRequest"], "8 gigs"),
        "spec.predictor.resources.memoryRequest",
        "quantity",
    ),
    (
        "parameters of another type",
        _set(["explainer", "methods", 0, "kernelShap"], {"nsamples": 10}),
        "spec.explainer.methods[0].kernelShap",
        "anchorTabular",
    ),
    (
        "duplicate method names",
        _set(["explainer", "methods", 1, "name"], "anchortabular"),
        "spec.explainer.methods[1].name",
        "distinct",
    ),
    (
        "no reference data",
        _delete(["explainer", "referenceData"]),
        "spec.explainer.methods[0].referenceData",
        "AnchorTabular is fitted",
    ),
    ("explainer GPU without white-box", _set(["explainer", "gpus"], 1), "spec.explainer.gpus", "white-box"),
    ("duplicate routes", _set(["graph", "routes"], ["predict", "predict"]), "spec.graph.routes", "once"),
    ("unknown field", _set(["predictor", "gpu"], 1), "spec.predictor.gpu", "Extra inputs"),
    ("default method not served", _set(["explainer", "defaultMethod"], "lime"), "spec.explainer.defaultMethod", "anchortabular"),
    (
        "default route not offered",
        _set(["graph", "routes"], ["predict"]),
        "spec.graph.defaultRoute",
        "not one of the graph's routes",
    ),
    (
        "predictAndExplain with an explainer that scales to zero",
        _set(["explainer", "autoscaling", "minReplicas"], 0),
        "spec.explainer.autoscaling.minReplicas",
        "predictAndExplain",
    ),
    (
        "KServe's batcher on a v2 runtime",
        _set(["predictor", "modelFormat"], "sklearn"),
        "spec.predictor.batching",
        "v1 ':predict'",
    ),
    ("wrong type", _set(["predictor", "gpus"], "one"), "spec.predictor.gpus", "integer"),
    (
        "a body limit for another runtime",
        lambda s: s["predictor"].update(modelFormat="onnx", maxBodyBytes=2**20, batching=None),
        "spec.predictor.maxBodyBytes",
        "Glassbox's predictor",
    ),
    (
        "a scheme Glassbox does not read",
        _set(["explainer", "referenceData", "uri"], "ftp://files.example.net/train.csv"),
        "spec.explainer.referenceData.uri",
        "not a storage scheme",
    ),
    ("a malformed digest", _set(["predictor", "storageSha256"], "abc"), "spec.predictor.storageSha256", "pattern"),
    (
        "a digest for a runtime's artifact",
        lambda s: s["predictor"].update(modelFormat="onnx", storageSha256="a" * 64, batching=None),
        "spec.predictor.storageSha256",
        "only Glassbox's predictor",
    ),
    (
        "a body limit past 1 GiB",
        _set(["explainer", "maxBodyBytes"], 2**31),
        "spec.explainer.maxBodyBytes",
        "less than or equal to 1073741824",
    ),
    (
        "a detect route without a detector",
        _set(["graph", "routes"], ["explain", "predictAndExplainIfOutlier"]),
        "spec.graph.routes",
        "add spec.detector",
    ),
    (
        "a detector with no reference data",
        lambda s: (
            s.update(detector={}),
            s["explainer"]["methods"].__setitem__(slice(None), [{"type": "IntegratedGradients"}]),
            s["explainer"].pop("referenceData"),
        ),
        "spec.detector.referenceData",
        "fitted on reference data",
    ),
    (
        "too few held-out rows for the alarm rate",
        lambda s: (s.update(detector={"falsePositiveRate": 0.001}), s["explainer"]["referenceData"].update(maxRows=2000)),
        "spec.detector.calibrationFraction",
        "needs at least 999 held-out rows",
    ),
    (
        "an alarm rate of a half or more",
        _set(["detector"], {"falsePositiveRate": 0.6}),
        "spec.detector.falsePositiveRate",
        "less than or equal to 0.5",
    ),
    (
        "predictAndExplainIfOutlier with an explainer that scales to zero",
        lambda s: (
            s.update(detector={}),
            s["graph"].update(routes=["explain", "predictAndExplainIfOutlier"]),
            s["explainer"]["autoscaling"].update(minReplicas=0),
        ),
        "spec.explainer.autoscaling.minReplicas",
        "predictAndExplainIfOutlier",
    ),
    (
        "texts from an NPY file",
        _set(["detector"], {"referenceData": {"uri": "reviews.npy", "textColumn": "review"}}),
        "spec.detector.referenceData.textColumn",
        "CSV or Parquet",
    ),
    (
        "a concurrency target above the hard limit",
        _set(["explainer", "autoscaling"], {"scaleTarget": 10, "containerConcurrency": 8}),
        "spec.explainer.autoscaling.scaleTarget",
        "set scaleTarget to 8 or less",
    ),
    (
        "a hard limit below the workers",
        _set(["explainer", "autoscaling"], {"containerConcurrency": 2}),
        "spec.explainer.autoscaling.containerConcurrency",
        "below capacity.workers 4",
    ),
    (
        "a hard limit above what a replica holds",
        lambda spec: spec["explainer"].update(
            {"autoscaling": {"containerConcurrency": 20}, "capacity": {"workers": 2, "maxWaiting": 2}}
        ),
        "spec.explainer.autoscaling.containerConcurrency",
        "workers 2 + maxWaiting 2 = 4",
    ),
    (
        "a detector's concurrency target above its hard limit",
        _set(["detector"], {"autoscaling": {"scaleTarget": 5, "containerConcurrency": 4}}),
        "spec.detector.autoscaling.scaleTarget",
        "above containerConcurrency 4",
    ),
    (
        "a detector's ServiceAccount must be a name",
        _set(["detector"], {"serviceAccountName": "BAD NAME"}),
        "spec.detector.serviceAccountName",
        "pattern",
    ),
]


@pytest.mark.parametrize("case,mutate,field,hint", CASES, ids=[c[0] for c in CASES])
def test_a_broken_rule_names_the_field(credit_risk: dict[str, Any], case: str, mutate: Any, field: str, hint: str) -> None:
    spec = credit_risk["spec"]
    spec["explainer"]["methods"] = spec["explainer"]["methods"][:2]  # black-box only: AnchorTabular, KernelShap
    spec["graph"]["defaultRoute"] = "explain"
    mutate(spec)
    parsed, problems = find_spec_problems("credit-risk", spec)
    assert parsed is None
    assert any(p.field == field and hint in p.message for p in problems), [str(p) for p in problems]


def test_white_box_on_an_existing_service_needs_the_artifact() -> None:
    manifest = load_sample("training-data-influence")
    del manifest["spec"]["explainer"]["modelStorageUri"]
    _, problems = find_spec_problems("fraud-detector", manifest["spec"])
    assert [p.field for p in problems] == ["spec.explainer.modelStorageUri"] * 2
    assert "fraud-detector-torch" in problems[0].message


def test_deploy_only_fields_are_refused_for_an_existing_service() -> None:
    manifest = load_sample("existing-inferenceservice")
    manifest["spec"]["predictor"]["batching"] = {"maxBatchSize": 8}
    manifest["spec"]["predictor"]["gpus"] = 1
    _, problems = find_spec_problems("loan-approval", manifest["spec"])
    assert {p.field for p in problems} == {"spec.predictor.batching", "spec.predictor.gpus"}


@pytest.mark.parametrize("name", ["Credit", "1credit", "a" * 44, "credit_risk"])
def test_names_kserve_cannot_use_are_refused(credit_risk: dict[str, Any], name: str) -> None:
    _, problems = find_spec_problems(name, credit_risk["spec"])
    assert [p.field for p in problems] == ["metadata.name"]


def test_the_longest_name_fits_the_explainers_service_name(credit_risk: dict[str, Any]) -> None:
    name = "a" * 43
    spec, problems = find_spec_problems(name, credit_risk["spec"])
    assert problems == [] and spec is not None
    assert len(f"{name}-explainer-predictor") == 63  # KServe's Service for the explainer's predictor component


@pytest.mark.parametrize("target", ["attacker.example.net:8080/x#", "loans.other-namespace", "http://loans", "Loans", "loans/v1"])
def test_an_existing_service_is_named_never_addressed(target: str) -> None:
    """A host, URL or another namespace's service would send the explainer's and the graph's calls there."""
    manifest = load_sample("existing-inferenceservice")
    manifest["spec"]["predictor"]["inferenceServiceName"] = target
    _, problems = find_spec_problems("loan-approval", manifest["spec"])
    assert [p.field for p in problems] == ["spec.predictor.inferenceServiceName"]
    assert "should match pattern" in problems[0].message


def test_an_explained_model_cannot_explain_its_own_explainer() -> None:
    manifest = load_sample("existing-inferenceservice")
    manifest["spec"]["predictor"]["inferenceServiceName"] = "loan-approval-explainer"
    _, problems = find_spec_problems("loan-approval", manifest["spec"])
    assert [p.field for p in problems] == ["spec.predictor.inferenceServiceName"]
    assert "own explainer" in problems[0].message


def test_influence_needs_labels() -> None:
    manifest = load_sample("training-data-influence")
    del manifest["spec"]["explainer"]["referenceData"]["labelsUri"]
    _, problems = find_spec_problems("fraud-detector", manifest["spec"])
    assert [p.field for p in problems] == ["spec.explainer.methods[0].referenceData.labelsUri"]


def test_a_service_account_is_the_administrators_choice_unless_allowed(credit_risk: dict[str, Any]) -> None:
    credit_risk["spec"]["explainer"]["serviceAccountName"] = "cluster-admin-sa"
    credit_risk["spec"]["detector"] = {"serviceAccountName": "cluster-admin-sa"}
    spec, problems = find_spec_problems("credit-risk", credit_risk["spec"])
    assert spec is not None and problems == []
    refused = policy_problems(spec, allow_service_account_names=False)
    assert [p.field for p in refused] == ["spec.explainer.serviceAccountName", "spec.detector.serviceAccountName"]
    assert "allowServiceAccountNames=true" in refused[0].message
    assert policy_problems(spec, allow_service_account_names=True) == []


def test_cfrl_training_fields_need_search_cfrl() -> None:
    manifest = load_sample("existing-inferenceservice")
    counterfactual = manifest["spec"]["explainer"]["methods"][1]["counterfactual"]
    counterfactual.update(search="sparse", trainSteps=500, latentDim=4)
    _, problems = find_spec_problems("loan-approval", manifest["spec"])
    assert [p.field for p in problems] == ["spec.explainer.methods[1].counterfactual"], [str(p) for p in problems]
    assert "trainSteps, latentDim apply to search: cfrl only" in problems[0].message


def test_a_manifest_tuning_cfrl_without_a_search_keeps_cfrl() -> None:
    """Written before `search` existed (CFRL was then the only search): it keeps what it was written for."""
    manifest = load_sample("existing-inferenceservice")
    methods = manifest["spec"]["explainer"]["methods"]
    methods[1]["counterfactual"] = {"trainSteps": 500}
    spec, problems = find_spec_problems("loan-approval", manifest["spec"])
    assert problems == [] and spec is not None
    assert spec.explainer is not None and spec.explainer.methods[1].counterfactual is not None
    assert spec.explainer.methods[1].counterfactual.search == "cfrl"
    del methods[1]["counterfactual"]
    spec, _ = find_spec_problems("loan-approval", manifest["spec"])
    assert spec is not None and spec.explainer is not None and spec.explainer.methods[1].counterfactual is None


def test_records_need_one_store_every_replica_shares(credit_risk: dict[str, Any]) -> None:
    explainer = credit_risk["spec"]["explainer"]
    explainer["records"] = {"enabled": True}
    _, problems = find_spec_problems("credit-risk", credit_risk["spec"])
    assert [p.field for p in problems] == ["spec.explainer.records.postgres"]
    assert "10 replicas" in problems[0].message and "maxReplicas to 1" in problems[0].message
    explainer["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    assert find_spec_problems("credit-risk", credit_risk["spec"])[1] == []
    explainer["records"] = {"postgres": {"secretName": "db"}, "persistentVolumeClaim": "records"}
    _, problems = find_spec_problems("credit-risk", credit_risk["spec"])
    assert [p.field for p in problems] == ["spec.explainer.records.persistentVolumeClaim"]
    explainer["records"] = {"postgres": {"secretName": "Not_A_Name"}}
    _, problems = find_spec_problems("credit-risk", credit_risk["spec"])
    assert [p.field for p in problems] == ["spec.explainer.records.postgres.secretName"]


def test_drift_needs_a_window_it_can_fill_and_takes_text_as_well_as_rows() -> None:
    manifest = load_sample("outlier-gated")
    manifest["spec"]["detector"]["drift"] = {"windowRows": 50, "minRows": 100}
    _, problems = find_spec_problems("tumour-triage", manifest["spec"])
    assert [p.field for p in problems] == ["spec.detector.drift.minRows"] and "never be tested" in problems[0].message
    manifest["spec"]["detector"]["drift"] = {}
    manifest["spec"]["detector"]["referenceData"] = {"uri": "reviews.csv", "textColumn": "review"}
    _, problems = find_spec_problems("tumour-triage", manifest["spec"])
    assert problems == []
