"""Both servers over real loopback HTTP (and gRPC): protocols, KServe's own clients, bad input, predictor faults."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from kserve import InferenceGRPCClient, InferenceRESTClient, RESTConfig
from kserve.protocol.infer_type import InferInput, InferRequest

from glassbox.explainers.serving.payloads import INFERENCE_HEADER, predictions_from_response, v2_request
from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import FEATURES, FaultProxy, explain, pretty, tabular_data

Tabular = tuple[LocalDeployment, FaultProxy]
ROWS = [[0.9, 0.2, 0.5, 0.7, 0.1], [0.1, 0.8, 0.3, 0.2, 0.9]]


def expected_probabilities(deployment: LocalDeployment, rows: list[list[float]]) -> np.ndarray:
    model = torch.jit.load(str(deployment.base / "model" / "model.pt"))
    with torch.no_grad():
        return np.asarray(model(torch.tensor(rows, dtype=torch.float32)).numpy())


# --------------------------------------------------------------------------- the predictor


def test_predictor_v1_and_v2_rest(tabular: Tabular) -> None:
    deployment = tabular[0]
    expected = expected_probabilities(deployment, ROWS)
    v1 = httpx.post(f"{deployment.predictor_base}/v1/models/synthetic:predict", json={"instances": ROWS})
    assert v1.status_code == 200, v1.text
    np.testing.assert_allclose(v1.json()["predictions"], expected, rtol=1e-5)
    body = {"inputs": [{"name": "x", "shape": [2, 5], "datatype": "FP32", "data": np.ravel(ROWS).tolist()}]}
    v2 = httpx.post(deployment.urls()["predict"], json=body)
    assert v2.status_code == 200, v2.text
    output = v2.json()["outputs"][0]
    assert output["shape"] == [2, 2]
    np.testing.assert_allclose(np.reshape(output["data"], (2, 2)), expected, rtol=1e-5)


async def test_kserve_clients_call_the_predictor_with_both_protocols(tabular: Tabular) -> None:
    deployment = tabular[0]
    expected = expected_probabilities(deployment, ROWS)
    v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
    answer = await v1.infer(deployment.predictor_base, {"instances": ROWS}, model_name="synthetic")
    np.testing.assert_allclose(answer["predictions"], expected, rtol=1e-5)

    request = InferRequest(model_name="synthetic", infer_inputs=[InferInput("x", [2, 5], "FP32", np.ravel(ROWS).tolist())])
    v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
    response = await v2.infer(deployment.predictor_base, request, model_name="synthetic")
    np.testing.assert_allclose(response.outputs[0].as_numpy().reshape(2, 2), expected, rtol=1e-5)

    # The binary tensor extension, both ways, as kserve's client speaks it.
    tensor = InferInput("x", [2, 5], "FP32")
    tensor.set_data_from_numpy(np.asarray(ROWS, dtype=np.float32), binary_data=True)
    binary = InferRequest(model_name="synthetic", infer_inputs=[tensor], parameters={"binary_data_output": True})
    response = await v2.infer(deployment.predictor_base, binary, model_name="synthetic")
    np.testing.assert_allclose(response.outputs[0].as_numpy().reshape(2, 2), expected, rtol=1e-5)
    content, headers = v2_request(np.asarray(ROWS), binary=True)  # what Glassbox's explainer sends
    raw = httpx.post(f"{deployment.predictor_base}/v2/models/synthetic/infer", content=content, headers=headers)
    assert raw.status_code == 200 and INFERENCE_HEADER in raw.headers, pretty(raw)
    # Answered the short way (binary_infer_route), which sends a length and a type; kserve's stack streams it untyped.
    assert raw.headers["content-type"] == "application/octet-stream" and raw.headers["content-length"] == str(len(raw.content))
    np.testing.assert_allclose(
        predictions_from_response("v2", raw.content, raw.headers[INFERENCE_HEADER], 2), expected, rtol=1e-5
    )

    grpc = InferenceGRPCClient(f"127.0.0.1:{deployment.predictor_grpc_port}")
    tensor = InferInput("x", [2, 5], "FP32")
    tensor.set_data_from_numpy(np.asarray(ROWS, dtype=np.float32), binary_data=False)
    response = await grpc.infer(InferRequest(model_name="synthetic", infer_inputs=[tensor]))
    np.testing.assert_allclose(response.outputs[0].as_numpy().reshape(2, 2), expected, rtol=1e-5)
    await grpc.close()


PREDICTOR_BAD_INPUTS = [
    ("wrong feature count", {"instances": [[1.0, 2.0, 3.0]]}, 400, "cannot take instances of shape [3]"),
    ("not a number", {"instances": [[1.0, "high", 3.0, 4.0, 5.0]]}, 400, "not a number"),
    ("ragged rows", {"instances": [[1.0, 2.0, 3.0, 4.0, 5.0], [1.0]]}, 400, "different lengths"),
    (
        "a v2 body on the v1 path",
        {"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]},
        400,
        "this is a v2 (Open Inference Protocol) body, sent to a v1 path",
    ),
    ("text for a numeric model", {"instances": ["hello"]}, 400, "numeric instances"),
    ("no instances", {"rows": [[1, 2, 3, 4, 5]]}, 400, "no 'instances'"),
    ("too many rows", {"instances": [[0.5] * 5] * 262_145}, 413, "at most 262144"),
]


@pytest.mark.parametrize("case,body,status,words", PREDICTOR_BAD_INPUTS, ids=[c[0] for c in PREDICTOR_BAD_INPUTS])
def test_predictor_bad_input_gets_a_clear_4xx(
    tabular: Tabular, case: str, body: dict[str, object], status: int, words: str
) -> None:
    response = httpx.post(f"{tabular[0].predictor_base}/v1/models/synthetic:predict", json=body, timeout=30)
    assert response.status_code == status, pretty(response)
    assert words in response.text


async def test_malformed_requests_among_valid_ones_fail_alone_and_the_predictor_lives_on(tabular: Tabular) -> None:
    """Once one 1-D request in a batch killed the batcher and every request beside it hung."""
    import asyncio

    deployment = tabular[0]
    url = f"{deployment.predictor_base}/v1/models/synthetic:predict"
    expected = expected_probabilities(deployment, ROWS)
    bodies = [({"instances": ROWS}, 200) for _ in range(200)]
    for index in range(20):
        bad = [{"instances": [1.0, 2.0, 3.0]}, {"instances": [[1.0, 2.0, 3.0]]}][index % 2]
        bodies.insert(index * 10 + 5, (bad, 400))
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=32)) as client:
        answers = await asyncio.wait_for(asyncio.gather(*(client.post(url, json=body) for body, _ in bodies)), timeout=120)
    for (body, status), answer in zip(bodies, answers, strict=True):
        assert answer.status_code == status, (body, pretty(answer))
        if status == 200:
            np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-5)
        else:
            assert "cannot take instances of shape" in answer.json()["error"], pretty(answer)


def test_predictor_refuses_nan(tabular: Tabular) -> None:
    content = json.dumps({"instances": [[float("nan"), 0.1, 0.2, 0.3, 0.4]]})  # Python writes NaN, as some clients do
    response = httpx.post(
        f"{tabular[0].predictor_base}/v1/models/synthetic:predict", content=content, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, pretty(response)
    assert "NaN" in response.text or "JSON" in response.text or "json" in response.text
    healthy = httpx.post(f"{tabular[0].predictor_base}/v1/models/synthetic:predict", json={"instances": ROWS})
    assert healthy.status_code == 200


V2_BAD_BODIES = [
    (
        "a v1 body on the v2 path",
        {"instances": [[1.0, 2.0, 3.0, 4.0, 5.0]]},
        'has "instances", a v1 body: send it to /v1/models/synthetic:predict',
    ),
    (
        "a tensor without its shape",
        {"inputs": [{"name": "input-0", "datatype": "FP32", "data": [1, 2, 3, 4, 5]}]},
        "the body does not fit /v2/models/synthetic/infer: inputs.0.shape: Field required",
    ),
]


@pytest.mark.parametrize("case,body,words", V2_BAD_BODIES, ids=[c[0] for c in V2_BAD_BODIES])
def test_a_body_that_does_not_fit_the_v2_path_is_named_as_kserve_writes_errors(
    tabular: Tabular, case: str, body: dict[str, object], words: str
) -> None:
    """FastAPI's own 422 lists pydantic's errors twice (JSON and binary alternatives); ours names the fix."""
    response = httpx.post(f"{tabular[0].predictor_base}/v2/models/synthetic/infer", json=body, timeout=30)
    assert response.status_code == 422, pretty(response)
    assert set(response.json()) == {"error"} and words in response.json()["error"], pretty(response)


def test_predictor_bad_binary_input_gets_the_same_clear_4xx(tabular: Tabular) -> None:
    """Binary v2 requests take the predictor's short way in (binary_infer_route); refused ones read as kserve writes them."""
    content, headers = v2_request(np.ones((2, 3)), binary=True)
    response = httpx.post(tabular[0].urls()["predict"], content=content, headers=headers)
    assert response.status_code == 400, pretty(response)
    assert "cannot take instances of shape [3]" in response.text


# --------------------------------------------------------------------------- the explainer


async def test_kserve_clients_call_the_explainer_with_both_protocols(tabular: Tabular) -> None:
    deployment = tabular[0]
    v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
    answer = await v1.explain(deployment.explainer_base, model_name="synthetic", data={"instances": ROWS[:1], "method": "shap"})
    assert answer["meta"]["name"] == "KernelShap" and answer["method"] == "shap"

    tensor = InferInput("x", [1, 5], "FP64", ROWS[0])
    request = InferRequest(model_name="synthetic", infer_inputs=[tensor], parameters={"method": "ig"})
    v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
    response = await v2.infer(deployment.explainer_base, request, model_name="synthetic")
    explanation = json.loads(response.outputs[0].as_numpy()[0])
    assert explanation["meta"]["name"] == "IntegratedGradients"
    assert explanation["summary"][0].startswith("class 1")


def test_same_anchor_over_http_as_alibi_in_process(tabular: Tabular) -> None:
    """For a fixed seed, the server's anchor against the predictor equals alibi's against the model itself."""
    from alibi.explainers import AnchorTabular

    deployment = tabular[0]
    model = torch.jit.load(str(deployment.base / "model" / "model.pt"))

    def predict(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.asarray(model(torch.tensor(X, dtype=torch.float32)).numpy())

    X, _ = tabular_data()
    for row in ([0.9, 0.2, 0.5, 0.7, 0.1], [0.3, 0.3, 0.9, 0.1, 0.6]):
        in_process = AnchorTabular(predict, feature_names=FEATURES, seed=0)
        in_process.fit(X, disc_perc=(25, 50, 75))
        np.random.seed(0)
        local = in_process.explain(
            np.asarray(row), threshold=0.95, delta=0.1, tau=0.15, batch_size=100, coverage_samples=10000, beam_size=1
        )
        for _ in range(2):  # and the server gives it again: no state leaks between requests
            remote = explain(deployment.urls()["explain"], [row], "anchors").json()["data"]
            assert remote["anchor"] == local.anchor
            assert remote["precision"] == pytest.approx(float(local.precision))
            assert remote["coverage"] == pytest.approx(float(local.coverage))


def test_a_counterfactual_request_may_name_the_class_to_reach(tabular: Tabular) -> None:
    url = tabular[0].urls()["explain"]
    plain = explain(url, ROWS, "counterfactual").json()["data"]
    predicted = [row[0] for row in plain["orig"]["class"]]
    other = [1 - c for c in predicted]
    assert [row[0] for row in plain["target"]] == other  # two classes: the other one by default
    # One target for all: the instance already of it is its own answer; the other is moved to it.
    answer = explain(url, ROWS, "counterfactual", target=predicted[0])
    assert answer.status_code == 200, pretty(answer)
    data, summary = answer.json()["data"], answer.json()["summary"]
    assert [row[0] for row in data["target"]] == [predicted[0], predicted[0]]
    assert data["cf"]["X"][0] == ROWS[0] and data["changed_features"][0] == []
    assert summary[0] == f"class {predicted[0]}: already the class asked for, nothing to change"
    if predicted[1] != predicted[0]:
        assert data["cf"]["class"][1] == [predicted[0]] and data["changed_features"][1], summary
    # One per instance.
    per_instance = explain(url, ROWS, "counterfactual", target=other).json()["data"]
    assert [row[0] for row in per_instance["target"]] == other
    assert [row[0] for row in per_instance["cf"]["class"]] == other
    assert per_instance["changed_features"] == plain["changed_features"]  # the default target, asked for


def test_pictures_are_pngs(tabular: Tabular) -> None:
    import base64

    for method in ("anchors", "shap", "counterfactual", "ig", "influence"):
        answer = explain(tabular[0].urls()["explain"], ROWS[:1], method, picture=True).json()
        png = base64.b64decode(answer["picture"]["base64"])
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000, method


EXPLAINER_BAD_INPUTS = [
    (
        "wrong feature count",
        {"instances": [[0.1, 0.2, 0.3]], "method": "shap"},
        400,
        "each instance must have 5 features (f0, f1, f2, f3, f4); got 3",
    ),
    ("not a number", {"instances": [[0.1, "x", 0.3, 0.4, 0.5]], "method": "shap"}, 400, "not a number"),
    (
        "unknown method",
        {"instances": ROWS, "method": "lime"},
        404,
        "the methods are ['anchors', 'counterfactual', 'ig', 'influence', 'shap']",
    ),
    (
        "picture not a boolean",
        {"instances": ROWS[:1], "method": "shap", "picture": "false"},
        400,
        "'picture' must be true or false",
    ),
    (
        "a malformed v2 body",
        {"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP32"}]},
        400,
        "malformed at 'inputs.0.data'",
    ),
    ("two instances for an anchor", {"instances": ROWS, "method": "anchors"}, 413, "at most 1 instance per request"),
    ("too many instances", {"instances": [[0.5] * 5] * 300, "method": "shap"}, 413, "at most 256"),
    ("text for a tabular model", {"instances": ["a sentence"], "method": "shap"}, 400, "numeric instances"),
    (
        "a target for a method that takes none",
        {"instances": ROWS[:1], "method": "shap", "target": 1},
        400,
        "'target' names the class a counterfactual should reach; shap is KernelShap, which takes none",
    ),
    (
        "a target that is not a class",
        {"instances": ROWS[:1], "method": "counterfactual", "target": 7},
        400,
        "target 7 is not a class of this model: its classes are 0 to 1",
    ),
    (
        "a target that is not a number",
        {"instances": ROWS[:1], "method": "counterfactual", "target": "approved"},
        400,
        "'target' must be a class (a whole number, 0 or more) for every instance, or a list of one per instance, 1 in all",
    ),
    (
        "one target too few",
        {"instances": ROWS[:2], "method": "counterfactual", "target": [1]},
        400,
        "a list of one per instance, 2 in all; got [1]",
    ),
    ("empty instances", {"instances": [], "method": "shap"}, 400, "empty"),
]


@pytest.mark.parametrize("case,body,status,words", EXPLAINER_BAD_INPUTS, ids=[c[0] for c in EXPLAINER_BAD_INPUTS])
def test_explainer_bad_input_gets_a_clear_4xx(
    tabular: Tabular, case: str, body: dict[str, object], status: int, words: str
) -> None:
    response = httpx.post(tabular[0].urls()["explain"], json=body, timeout=60)
    assert response.status_code == status, pretty(response)
    assert words in response.text, response.text


def test_a_request_naming_no_method_gets_the_default_one_in_either_body_shape(tabular: Tabular) -> None:
    """KServe's graph router sends the same body to every step, whatever the path: the v1 explain path takes a v2 body too."""
    url = tabular[0].urls()["explain"]
    v1 = httpx.post(url, json={"instances": ROWS[:1]}, timeout=60)
    assert v1.status_code == 200 and v1.json()["method"] == "anchors", pretty(v1)  # the first method: no defaultMethod set
    tensor = {"name": "input-0", "shape": [1, 5], "datatype": "FP32", "data": ROWS[0]}
    v2 = httpx.post(url, json={"inputs": [tensor], "parameters": {"method": "shap"}}, timeout=60)
    assert v2.status_code == 200 and v2.json()["method"] == "shap", pretty(v2)
    assert v2.json()["data"]["shap_values"], pretty(v2)


def test_explainer_refuses_nan(tabular: Tabular) -> None:
    content = json.dumps({"instances": [[float("nan"), 0.1, 0.2, 0.3, 0.4]], "method": "shap"})
    response = httpx.post(tabular[0].urls()["explain"], content=content, headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, pretty(response)


@pytest.mark.parametrize(
    "mode,status,words",
    [("unavailable", 502, "answered 503"), ("garbage", 502, "answered garbage"), ("slow", 504, "did not answer within 2 s")],
)
def test_a_faulty_predictor_gets_a_clear_5xx_naming_it_and_nothing_crashes(
    tabular: Tabular, proxy: FaultProxy, mode: str, status: int, words: str
) -> None:
    proxy.mode = mode
    response = explain(tabular[0].urls()["explain"], ROWS[:1], "shap")
    assert response.status_code == status, pretty(response)
    assert f"the predictor at {proxy.url}/v2/models/synthetic/infer" in response.text
    assert words in response.text
    proxy.mode = "pass"
    again = explain(tabular[0].urls()["explain"], ROWS[:1], "shap")
    assert again.status_code == 200, pretty(again)


def test_concurrent_explanations_give_the_answers_of_one_at_a_time(tabular: Tabular) -> None:
    """Each explanation borrows its own fitted explainer and random state: running together changes nothing."""
    url = tabular[0].urls()["explain"]

    def answer(job: tuple[str, int]) -> Any:
        response = explain(url, [ROWS[job[1]]], job[0])
        assert response.status_code == 200, pretty(response)
        data = response.json()["data"]
        return (data["anchor"], data["precision"]) if job[0] == "anchors" else data["shap_values"]

    jobs = [(method, row) for method in ("anchors", "shap") for row in (0, 1)]
    alone = {job: answer(job) for job in jobs}
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(answer, jobs * 2))
    for job, got in zip(jobs * 2, together, strict=True):
        if job[0] == "anchors":
            assert got == alone[job], job
        else:
            # The predictor batches concurrent calls together, and a float32 forward pass over a
            # different batch may differ in the last bits; other coalitions would differ in the first.
            np.testing.assert_allclose(got, alone[job], rtol=1e-5, atol=1e-6)


def test_binary_tensors_fall_back_to_json_for_a_predictor_without_them(tabular: Tabular, proxy: FaultProxy) -> None:
    """The explainer behind the proxy talks v2; a server that refuses binary tensors gets JSON from then on."""
    deployment = tabular[0]
    binary = explain(deployment.urls()["explain"], ROWS[:1], "shap")
    assert binary.status_code == 200, pretty(binary)
    proxy.mode = "json-only"
    try:
        # A fresh explainer (its client has not had a binary answer yet) behind a predictor without the extension.
        from glassbox.explainers.predictor_calls.client import PredictorClient, PredictorSettings

        client = PredictorClient(PredictorSettings(host=proxy.url.split("://")[1], model_name="synthetic", protocol="v2"))
        answer = client.predict(np.asarray(ROWS))
        assert not client.binary and client.stats.calls == 1
        np.testing.assert_allclose(answer, expected_probabilities(deployment, ROWS), rtol=1e-5)
        client.close()
    finally:
        proxy.mode = "pass"


async def test_an_explanation_past_its_deadline_gets_504_and_the_server_goes_on(tabular: Tabular, proxy: FaultProxy) -> None:
    """The explainer model itself, in process, against the predictor through the proxy; the proxy turns slow."""
    from fastapi import HTTPException

    from glassbox.contract.api import ExplainerSpec
    from glassbox.explainers.explainer.server import ExplainerModel
    from glassbox.explainers.predictor_calls.client import PredictorSettings

    deployment = tabular[0]
    spec = ExplainerSpec.model_validate(
        {
            "referenceData": {"uri": "train.csv", "targetColumn": "label"},
            "methods": [{"name": "anchors", "type": "AnchorTabular"}],
        }
    )
    settings = PredictorSettings(host=proxy.url.split("://")[1], model_name="synthetic", protocol="v2")
    model = ExplainerModel("synthetic", spec, settings, explain_timeout_seconds=1.0, data_dir=deployment.base)
    model.load()
    try:
        proxy.mode = "slow"  # every predictor call now takes longer than the explanation may
        with pytest.raises(HTTPException) as caught:
            await model.explain({"instances": [ROWS[0]], "method": "anchors"})
        assert caught.value.status_code == 504
        assert "took longer than 1 s (explainer.timeoutSeconds)" in str(caught.value.detail)
        proxy.mode = "pass"
        model.explain_timeout_seconds = 60
        answer = await model.explain({"instances": [ROWS[0]], "method": "anchors"})
        assert answer["data"]["anchor"], answer
    finally:
        proxy.mode = "pass"
        model.stop()
