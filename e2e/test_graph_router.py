"""Every route of the generated InferenceGraph, through KServe's own router, in front of Glassbox's servers.

Each scenario is a sample manifest made runnable here (a model trained in the
test in place of the sample's bucket, the sample's routes, methods and
protocol kept). The router runs with the graph the builders generate, its
steps resolved as KServe's controller resolves them: the InferenceService's
`status.address.url` (here the server's loopback address) plus KServe's
predict path for its model name and protocol (kserve v0.20,
`pkg/controller/v1beta1/inferenceservice/utils/utils.go`, `GetPredictorEndpoint`
and `GetModelName`, mirrored in glassbox.operator.kserve_addressing). The
matrix: every route, no route and an unknown route, times a v1 and a v2 body,
times with and without a method.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from glassbox.contract.api import ExplainedModelSpec, explained_model
from glassbox.explainers.predictor.examples import tabular_classifier, text_classifier
from glassbox_testing.dataplane import FEATURES, manifest, tabular_data, text_data
from glassbox_testing.kserve_router import REPO, router_or_reason

ROUTER, WHY_NOT = router_or_reason()
pytestmark = pytest.mark.skipif(ROUTER is None, reason=WHY_NOT)

ROW = [0.9, 0.2, 0.5, 0.5, 0.5]  # f0 > 0.5: class 1
TEXT = "the acting was excellent and the music quite rather"  # 'excellent': class 1
ROUTES = ["predict", "explain", "predictAndExplain", None, "bogus"]
BODIES = ["v1", "v2"]


def body(shape: str, route: str | None, method: str | None, row: Any = ROW) -> dict[str, Any]:
    """What a user of each protocol sends: v1 names route and method at the top, v2 in `parameters`."""
    if shape == "v1":
        answer: dict[str, Any] = {"instances": [row]}
        if route:
            answer["route"] = route
        if method:
            answer["method"] = method
        return answer
    parameters = {k: v for k, v in (("route", route), ("method", method)) if v}
    if isinstance(row, str):
        answer = {"inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES", "data": [row]}]}
    else:
        answer = {"inputs": [{"name": "input-0", "shape": [1, len(row)], "datatype": "FP32", "data": row}]}
    if parameters:
        answer["parameters"] = parameters
    return answer


def matrix(method: str, row: Any = ROW) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{route}/{shape}/{'method' if named else 'no-method'}",
            "body": body(shape, route, method if named else None, row),
        }
        for route in ROUTES
        for shape in BODIES
        for named in (True, False)
    ]


def tabular_folder(folder: Path) -> None:
    X, y = tabular_data()
    tabular_classifier(X, y, folder / "model", epochs=400)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["label"] = y
    frame.to_csv(folder / "train.csv", index=False)


def runnable(sample: str, folder: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """A sample with its bucket swapped for the model and data trained here; everything else as written."""
    body = yaml.safe_load((REPO / "crds" / "samples" / f"{sample}.yaml").read_text())
    body["spec"]["explainer"]["referenceData"] = {"uri": "train.csv", "targetColumn": "label"}
    edit(body)
    path = folder / f"{sample}.yaml"  # its own file: a stand-in for the service it names may sit beside it
    path.write_text(yaml.safe_dump(explained_model(body["metadata"]["name"], ExplainedModelSpec.model_validate(body["spec"]))))
    return path


def serving_manifest(folder: Path, name: str, protocol: str, method: str) -> Path:
    """An ExplainedModel whose predictor stands in for the InferenceService a sample names (or the runtime
    it uses): the model trained here, under that name, in that protocol."""
    explainer: dict[str, Any] = {"methods": [{"type": method}]}
    if method != "AnchorText":
        explainer["referenceData"] = {"uri": "train.csv", "targetColumn": "label"}
    spec = {"predictor": {"modelFormat": "pytorch", "storageUri": "model", "protocol": protocol}, "explainer": explainer}
    return manifest(name, spec, folder)


def run_plan(folder: Path, plan: dict[str, Any]) -> dict[str, Any]:
    plan = {**plan, "router": str(ROUTER), "logs": str(folder / "logs")}
    (folder / "plan.json").write_text(json.dumps(plan))
    subprocess.run(
        [
            "unshare",
            "-n",
            sys.executable,
            str(REPO / "e2e" / "graph" / "graph_driver.py"),
            str(folder / "plan.json"),
            str(folder / "results.json"),
        ],
        check=True,
        timeout=900,
    )
    results: dict[str, Any] = json.loads((folder / "results.json").read_text())
    assert "error" not in results, f"{results['error']}\n{json.dumps(results.get('logs'), indent=1)[:6000]}"
    return results


def by_id(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in results["requests"]}


# --------------------------------------------------------------------------- scenarios


@pytest.fixture(scope="module")
def v2_graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """tabular-pytorch-gpu: Glassbox's v2 predictor, three methods, defaultMethod kernelshap, every route."""
    folder = tmp_path_factory.mktemp("graph-v2")
    tabular_folder(folder)

    def edit(manifest: dict[str, Any]) -> None:
        predictor = manifest["spec"]["predictor"]
        for key in ("gpus", "nodeSelector", "tolerations", "resources"):
            predictor.pop(key, None)
        predictor["storageUri"] = "model"
        explainer = manifest["spec"]["explainer"]
        for method in explainer["methods"]:
            if method["type"] == "KernelShap":
                method["kernelShap"] = {"nsamples": 100, "backgroundSize": 20}

    manifest = runnable("tabular-pytorch-gpu", folder, edit)
    return run_plan(folder, {"manifest": str(manifest), "requests": matrix("anchortabular")})


@pytest.fixture(scope="module")
def v1_existing_graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """existing-inferenceservice: an existing v1 service (KServe's sklearn runtime lists v1 and v2), Anchors and
    counterfactuals, routes predict and explain only."""
    folder = tmp_path_factory.mktemp("graph-v1")
    tabular_folder(folder)

    def edit(manifest: dict[str, Any]) -> None:
        explainer = manifest["spec"]["explainer"]
        for method in explainer["methods"]:
            if method["type"] == "Counterfactual":
                method["counterfactual"] = {"search": "cfrl", "trainSteps": 300}

    manifest = runnable("existing-inferenceservice", folder, edit)
    existing = serving_manifest(folder, "loan-approval-sklearn", "v1", "KernelShap")
    return run_plan(
        folder,
        {
            "manifest": str(manifest),
            "existing_manifest": str(existing),
            "existing_answers_both_protocols": True,
            "requests": matrix("counterfactual"),
        },
    )


@pytest.fixture(scope="module")
def text_graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """text-anchors: a v1 text model served by a KServe runtime (here Glassbox's predictor stands in for it, under
    the sample's name), AnchorText, routes explain and predictAndExplain."""
    folder = tmp_path_factory.mktemp("graph-text")
    texts, y = text_data()
    text_classifier(texts, y, folder / "model")

    def edit(manifest: dict[str, Any]) -> None:
        manifest["spec"]["explainer"].pop("referenceData")
        manifest["spec"]["predictor"].pop("resources", None)

    manifest = runnable("text-anchors", folder, edit)
    runtime = serving_manifest(folder, "review-sentiment", "v1", "AnchorText")
    return run_plan(folder, {"manifest": str(manifest), "existing_manifest": str(runtime), "requests": matrix("anchors", TEXT)})


@pytest.fixture(scope="module")
def influence_graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """training-data-influence: an existing v2 InferenceService, the explainer loading the same weights for
    TrainingDataInfluence and IntegratedGradients, every route."""
    folder = tmp_path_factory.mktemp("graph-influence")
    tabular_folder(folder)

    def edit(manifest: dict[str, Any]) -> None:
        explainer = manifest["spec"]["explainer"]
        for key in ("gpus", "nodeSelector", "tolerations"):
            explainer.pop(key, None)
        explainer["modelStorageUri"] = "model"

    manifest = runnable("training-data-influence", folder, edit)
    existing = serving_manifest(folder, "fraud-detector-torch", "v2", "KernelShap")
    return run_plan(
        folder, {"manifest": str(manifest), "existing_manifest": str(existing), "requests": matrix("integratedgradients")}
    )


# --------------------------------------------------------------------------- what each answer must be


@dataclass(frozen=True)
class Expected:
    """What the sample's graph offers, and which body shapes its predictor steps take."""

    offered: list[str]
    default_route: str
    requested_method: str
    default_method: str
    # A predictor that answers both protocols (Glassbox's, or a runtime listing v1 and v2) takes both body
    # shapes; another is called in its declared protocol only and answers the other shape with its own 4xx.
    predictor_shapes: tuple[str, ...] = ("v1", "v2")


def prediction_shape(answer: Any, shape: str) -> None:
    if shape == "v1":
        assert isinstance(answer, dict) and len(answer["predictions"]) == 1, answer
        assert answer["predictions"][0][1] > 0.5, answer
    else:
        assert isinstance(answer, dict) and answer["outputs"][0]["shape"][0] == 1, answer


def explanation_shape(answer: Any, method: str) -> None:
    assert isinstance(answer, dict) and "error" not in answer, answer
    assert {"meta", "data"} <= set(answer) and answer["method"] == method, str(answer)[:500]


def check(result: dict[str, Any], route: str | None, shape: str, named: bool, expected: Expected) -> None:
    where = f"{result['id']}: HTTP {result['status']} {result['text'][:600]}"
    effective = route if route is not None else expected.default_route
    if effective not in expected.offered:
        assert result["status"] == 400, where
        assert str(route) in result["body"]["error"] and all(r in result["body"]["error"] for r in expected.offered), where
        return
    if effective != "explain" and shape not in expected.predictor_shapes:
        # The prediction is a hard dependency: its failure is the answer, with the predictor's own status and error.
        assert result["status"] in (400, 422), where
        assert "prediction" not in result["body"], where
        # Glassbox's predictor stands in for the runtime here: its error names the body's protocol and the right path.
        assert f"a {shape} body" in result["body"]["error"] or f"a {shape} (" in result["body"]["error"], where
        return
    assert result["status"] == 200, where
    method = expected.requested_method if named else expected.default_method
    if effective == "predict":
        prediction_shape(result["body"], shape)
    elif effective == "explain":
        explanation_shape(result["body"], method)
    else:
        assert set(result["body"]) == {"prediction", "explanation"}, where
        prediction_shape(result["body"]["prediction"], shape)
        explanation_shape(result["body"]["explanation"], method)


CELLS = [(route, shape, named) for route in ROUTES for shape in BODIES for named in (True, False)]
CELL_IDS = [f"{route}-{shape}-{'method' if named else 'no-method'}" for route, shape, named in CELLS]


def cell(results: dict[str, Any], route: str | None, shape: str, named: bool) -> dict[str, Any]:
    return by_id(results)[f"{route}/{shape}/{'method' if named else 'no-method'}"]


@pytest.mark.parametrize(("route", "shape", "named"), CELLS, ids=CELL_IDS)
def test_v2_predictor_graph(v2_graph: dict[str, Any], route: str | None, shape: str, named: bool) -> None:
    check(
        cell(v2_graph, route, shape, named),
        route,
        shape,
        named,
        Expected(
            offered=["predict", "explain", "predictAndExplain"],
            default_route="predict",
            requested_method="anchortabular",
            default_method="kernelshap",
        ),
    )


@pytest.mark.parametrize(("route", "shape", "named"), CELLS, ids=CELL_IDS)
def test_v1_existing_predictor_graph(v1_existing_graph: dict[str, Any], route: str | None, shape: str, named: bool) -> None:
    check(
        cell(v1_existing_graph, route, shape, named),
        route,
        shape,
        named,
        Expected(
            offered=["predict", "explain"],
            default_route="predict",
            requested_method="counterfactual",
            default_method="anchortabular",
        ),
    )


@pytest.mark.parametrize(("route", "shape", "named"), CELLS, ids=CELL_IDS)
def test_text_anchors_graph(text_graph: dict[str, Any], route: str | None, shape: str, named: bool) -> None:
    """No predict route: a request naming none is explained; the v1 runtime takes v1 bodies only."""
    check(
        cell(text_graph, route, shape, named),
        route,
        shape,
        named,
        Expected(
            offered=["explain", "predictAndExplain"],
            default_route="explain",
            requested_method="anchors",
            default_method="anchors",
            predictor_shapes=("v1",),
        ),
    )


@pytest.mark.parametrize(("route", "shape", "named"), CELLS, ids=CELL_IDS)
def test_training_data_influence_graph(influence_graph: dict[str, Any], route: str | None, shape: str, named: bool) -> None:
    """White-box methods beside an existing v2 service's weights; that service is called in v2 only."""
    check(
        cell(influence_graph, route, shape, named),
        route,
        shape,
        named,
        Expected(
            offered=["predict", "explain", "predictAndExplain"],
            default_route="predict",
            requested_method="integratedgradients",
            default_method="trainingdatainfluence",
            predictor_shapes=("v2",),
        ),
    )


def test_the_router_was_fed_the_builders_graph(v2_graph: dict[str, Any]) -> None:
    graph = v2_graph["graph"]
    assert graph["nodes"]["predict-and-explain"]["steps"][1]["dependency"] == "Soft"
    assert graph["routerTimeouts"]["serviceClient"] > 60


@pytest.fixture(scope="module")
def slow_graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A slow predictor behind the explainer: past timeoutSeconds the explainer's own JSON 504 arrives, and
    predictAndExplain still carries the prediction; an explanation longer than the router's default 60 s completes."""
    folder = tmp_path_factory.mktemp("graph-slow")
    tabular_folder(folder)

    def edit(timeout: int) -> Callable[[dict[str, Any]], None]:
        def apply(manifest: dict[str, Any]) -> None:
            manifest["spec"] = {
                "predictor": {"modelFormat": "pytorch", "storageUri": "model"},
                "explainer": {
                    "referenceData": {"uri": "train.csv", "targetColumn": "label"},
                    "methods": [{"type": "KernelShap", "kernelShap": {"nsamples": 100, "backgroundSize": 20}}],
                    "timeoutSeconds": timeout,
                },
            }

        return apply

    short = runnable("tabular-pytorch-gpu", folder, edit(3))
    v1 = body("v1", "predictAndExplain", None)
    short_results = run_plan(
        folder,
        {
            "manifest": str(short),
            "slow_delay": 5,
            "records": True,
            "requests": [
                {"id": "both-slow", "body": v1, "proxy_mode": "slow"},
                {"id": "explain-slow", "body": {**v1, "route": "explain"}, "proxy_mode": "slow"},
                # As a job, the explanation outlasts timeoutSeconds (two calls of 5 s against 3 s): it is no
                # longer the request's to wait for.
                {"id": "both-async", "body": {**v1, "async": True}, "proxy_mode": "slow", "follow_job": True},
            ],
        },
    )
    long_folder = tmp_path_factory.mktemp("graph-long")
    tabular_folder(long_folder)
    long = runnable("tabular-pytorch-gpu", long_folder, edit(150))
    # KernelSHAP makes two predictor calls per explanation: 2 x 31 s is past the router's default 60 s.
    long_results = run_plan(
        long_folder,
        {
            "manifest": str(long),
            "slow_delay": 31,
            "explainer_args": ["--predictor_request_timeout_seconds=60"],
            "requests": [
                {"id": "explain-long", "body": {**v1, "route": "explain"}, "proxy_mode": "slow", "timeout": 300},
            ],
        },
    )
    return {**by_id(short_results), **by_id(long_results)}


def test_a_slow_explanation_never_costs_the_prediction(slow_graph: dict[str, Any]) -> None:
    both = slow_graph["both-slow"]
    assert both["status"] == 200, both["text"]
    prediction_shape(both["body"]["prediction"], "v1")
    assert "took longer than 3 s" in both["body"]["explanation"]["error"], both["text"]
    explain = slow_graph["explain-slow"]
    assert explain["status"] == 504 and "took longer than 3 s" in explain["body"]["error"], explain["text"]


def test_predict_and_explain_as_a_job_answers_the_prediction_and_where_the_explanation_will_be(
    slow_graph: dict[str, Any],
) -> None:
    """KServe's router merges an ensemble's 2xx answers (cmd/router/main.go, the Ensemble branch and
    isSuccessFul): the explainer's 202 reaches the client as the `explanation` step, beside the prediction."""
    both = slow_graph["both-async"]
    assert both["status"] == 200, both["text"]
    prediction_shape(both["body"]["prediction"], "v1")
    accepted = both["body"]["explanation"]
    assert accepted["job"]["state"] in ("queued", "running") and accepted["location"].startswith("/glassbox/v1/models/")
    assert both["job"]["state"] == "done", both["job"]
    explanation_shape(both["job"]["explanation"], "kernelshap")


def test_an_explanation_longer_than_the_routers_default_timeout_completes(slow_graph: dict[str, Any]) -> None:
    long = slow_graph["explain-long"]
    assert long["seconds"] > 60
    assert long["status"] == 200, long["text"]
    explanation_shape(long["body"], "kernelshap")


# --------------------------------------------------------------------------- outlier-gated explanations

UNUSUAL = [0.9, 0.2, 0.5, 0.5, 4.0]  # f4 far beyond the uniform reference data; the model still says class 1


@pytest.fixture(scope="module")
def outlier_graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """outlier-gated: the detector beside the explainer, routes predict, detect and predictAndExplainIfOutlier
    (the default), through KServe's router: only the flagged instances are explained, and a slow explainer
    costs neither the prediction nor the verdict."""
    folder = tmp_path_factory.mktemp("graph-outliers")
    tabular_folder(folder)

    def edit(manifest: dict[str, Any]) -> None:
        manifest["spec"]["predictor"]["storageUri"] = "model"
        explainer = manifest["spec"]["explainer"]
        explainer["methods"] = [
            {"type": "AnchorTabular"},
            {"type": "KernelShap", "kernelShap": {"nsamples": 100, "backgroundSize": 20}},
        ]
        explainer["timeoutSeconds"] = 10

    manifest = runnable("outlier-gated", folder, edit)

    def v2(rows: list[list[float]], **parameters: Any) -> dict[str, Any]:
        tensor = {
            "name": "input-0",
            "shape": [len(rows), len(rows[0])],
            "datatype": "FP32",
            "data": [x for row in rows for x in row],
        }
        return {"inputs": [tensor], "parameters": parameters}

    return by_id(
        run_plan(
            folder,
            {
                "manifest": str(manifest),
                "slow_delay": 12,
                "requests": [
                    {"id": "detect-v1", "body": {"instances": [ROW, UNUSUAL], "route": "detect"}},
                    {"id": "detect-v2", "body": v2([ROW, UNUSUAL], route="detect")},
                    {"id": "ordinary-v1", "body": {"instances": [ROW], "method": "kernelshap"}},
                    {"id": "mixed-v1", "body": {"instances": [ROW, UNUSUAL, ROW], "method": "kernelshap"}},
                    {"id": "mixed-v2", "body": v2([UNUSUAL, ROW], method="kernelshap", route="predictAndExplainIfOutlier")},
                    {"id": "slow-explainer", "body": {"instances": [UNUSUAL], "method": "kernelshap"}, "proxy_mode": "slow"},
                    {"id": "unknown-route", "body": {"instances": [ROW], "route": "explain"}},
                ],
            },
        )
    )


def test_detect_answers_the_verdicts_in_either_protocol(outlier_graph: dict[str, Any]) -> None:
    v1 = outlier_graph["detect-v1"]
    assert v1["status"] == 200, v1["text"]
    assert [p["is_outlier"] for p in v1["body"]["predictions"]] == [False, True]
    v2 = outlier_graph["detect-v2"]
    assert v2["status"] == 200, v2["text"]
    outputs = {o["name"]: o["data"] for o in v2["body"]["outputs"]}
    assert outputs["is_outlier"] == [False, True] and outputs["score"][1] > outputs["threshold"][1]


def test_an_ordinary_input_is_predicted_and_judged_but_not_explained(outlier_graph: dict[str, Any]) -> None:
    result = outlier_graph["ordinary-v1"]
    assert result["status"] == 200, result["text"]
    assert set(result["body"]) == {"prediction", "detection", "explanation"}
    prediction_shape(result["body"]["prediction"], "v1")
    assert result["body"]["detection"]["predictions"][0]["is_outlier"] is False
    assert result["body"]["explanation"]["flagged"] == [] and "nothing to explain" in result["body"]["explanation"]["summary"]


@pytest.mark.parametrize(("case", "rows", "flagged"), [("mixed-v1", 3, [1]), ("mixed-v2", 2, [0])])
def test_exactly_the_flagged_inputs_are_explained(
    outlier_graph: dict[str, Any], case: str, rows: int, flagged: list[int]
) -> None:
    result = outlier_graph[case]
    assert result["status"] == 200, result["text"]
    body = result["body"]
    verdicts = body["detection"]["predictions"] if case.endswith("v1") else body["detection"]["outputs"][0]["data"]
    marked = [i for i, v in enumerate(verdicts) if (v["is_outlier"] if isinstance(v, dict) else v)]
    assert marked == flagged
    explanation = body["explanation"]
    explanation_shape(explanation, "kernelshap")
    assert explanation["flagged"] == flagged and len(explanation["summary"]) == len(flagged)
    predictions = body["prediction"]["predictions"] if case.endswith("v1") else body["prediction"]["outputs"][0]["data"]
    assert len(predictions) == (rows if case.endswith("v1") else rows * 2)  # v2: two class scores per row, flattened


def test_a_slow_explainer_costs_neither_the_prediction_nor_the_verdict(outlier_graph: dict[str, Any]) -> None:
    result = outlier_graph["slow-explainer"]
    assert result["status"] == 200, result["text"]
    prediction_shape(result["body"]["prediction"], "v1")
    assert result["body"]["detection"]["predictions"][0]["is_outlier"] is True
    assert "took longer than 10 s" in result["body"]["explanation"]["error"], result["text"]


def test_a_route_the_outlier_graph_does_not_offer_is_named(outlier_graph: dict[str, Any]) -> None:
    result = outlier_graph["unknown-route"]
    assert result["status"] == 400 and "predictAndExplainIfOutlier" in result["body"]["error"], result["text"]


# --------------------------------------------------------------------------- drift of an existing service


@pytest.fixture(scope="module")
def existing_drift_graph(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """existing-inferenceservice with spec.detector.drift: Glassbox never modifies the service, so no KServe
    logger is on it; the graph's predict route passes each request by the detector, which forwards it to
    the drift monitor. Then the monitor dies, and predictions through the graph go on."""
    folder = tmp_path_factory.mktemp("graph-existing-drift")
    tabular_folder(folder)

    def edit(manifest: dict[str, Any]) -> None:
        manifest["spec"]["explainer"]["methods"] = [{"type": "AnchorTabular"}]
        manifest["spec"]["detector"] = {"drift": {"windowRows": 20, "minRows": 20, "testEveryRows": 20}}

    manifest = runnable("existing-inferenceservice", folder, edit)
    existing = serving_manifest(folder, "loan-approval-sklearn", "v1", "KernelShap")
    rows = [[0.9, 0.2, 0.5, 0.5, 0.5], [0.1, 0.8, 0.5, 0.5, 0.5], [0.6, 0.4, 0.2, 0.7, 0.3], [0.3, 0.3, 0.9, 0.1, 0.6]]
    requests = [
        {"id": f"predict-{i}", "body": {"instances": [rows[(i + j) % 4] for j in range(5)], "route": "predict"}} for i in range(4)
    ]
    requests.append({"id": "after-the-monitor-died", "body": {"instances": [ROW], "route": "predict"}, "stop_drift": True})
    results = run_plan(
        folder,
        {
            "manifest": str(manifest),
            "existing_manifest": str(existing),
            "existing_answers_both_protocols": True,
            "drift_inputs": 20,
            "requests": requests,
        },
    )
    return {**by_id(results), "drift": results["drift"], "graph": results["graph"]}


def test_an_existing_services_requests_reach_the_drift_monitor_through_the_graph(existing_drift_graph: dict[str, Any]) -> None:
    for i in range(4):
        answer = existing_drift_graph[f"predict-{i}"]
        assert answer["status"] == 200, answer["text"]
        # The prediction as the service answers it, nothing wrapped around it: five rows of two class scores.
        predictions = answer["body"]["predictions"]
        assert len(predictions) == 5 and all(len(p) == 2 and abs(sum(p) - 1) < 1e-4 for p in predictions), answer["text"]
    report = existing_drift_graph["drift"]
    assert report["testedInputs"] == 20 and report["windowRows"] == 20, report
    steps = existing_drift_graph["graph"]["nodes"]["predict"]["steps"]
    assert [s["name"] for s in steps] == ["drift", "prediction"] and steps[0]["dependency"] == "Soft"


def test_a_dead_drift_monitor_costs_no_prediction_through_the_graph(existing_drift_graph: dict[str, Any]) -> None:
    answer = existing_drift_graph["after-the-monitor-died"]
    assert answer["status"] == 200, answer["text"]
    prediction_shape(answer["body"], "v1")
