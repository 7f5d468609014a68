"""How KServe addresses an InferenceService, mirrored from kserve v0.20's GetModelName and GetPredictorEndpoint
(`pkg/controller/v1beta1/inferenceservice/utils/utils.go`): model name, protocol, address."""

from __future__ import annotations

from typing import Any

import pytest

from glassbox.contract.api import Protocol
from glassbox.operator.kserve_addressing import graph_protocol, model_name, predict_target


def isvc(
    predictor: dict[str, Any], *, transformer: dict[str, Any] | None = None, address: str | None = "http://m.ns.svc.cluster.local"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"predictor": predictor}
    if transformer is not None:
        spec["transformer"] = transformer
    body: dict[str, Any] = {"metadata": {"name": "fraud", "namespace": "ns"}, "spec": spec}
    if address:
        body["status"] = {"address": {"url": address}}
    return body


@pytest.mark.parametrize(
    "predictor,transformer,expected",
    [
        ({"model": {"modelFormat": {"name": "sklearn"}}}, None, "fraud"),
        ({"model": {"modelFormat": {"name": "sklearn"}, "args": ["--model_name=scorer"]}}, None, "scorer"),
        ({"model": {"modelFormat": {"name": "sklearn"}, "args": ["--model-name", "scorer"]}}, None, "scorer"),
        (
            {"model": {"modelFormat": {"name": "mlflow"}, "env": [{"name": "MLSERVER_MODEL_NAME", "value": "ml-model"}]}},
            None,
            "ml-model",
        ),
        ({"containers": [{"name": "kserve-container", "args": ["--model_name=custom"]}]}, None, "custom"),
        (
            {"model": {"modelFormat": {"name": "sklearn"}}},
            {"containers": [{"args": ["--model_name", "via-transformer"]}]},
            "via-transformer",
        ),
    ],
)
def test_model_name_as_kserve_finds_it(predictor: dict[str, Any], transformer: dict[str, Any] | None, expected: str) -> None:
    assert model_name(isvc(predictor, transformer=transformer)) == expected


def test_protocol_as_kserve_graph_uses_it() -> None:
    assert graph_protocol(isvc({"model": {"modelFormat": {"name": "sklearn"}}})) is Protocol.v1
    assert graph_protocol(isvc({"model": {"modelFormat": {"name": "sklearn"}, "protocolVersion": "v2"}})) is Protocol.v2
    assert (
        graph_protocol(isvc({"containers": [{"name": "kserve-container", "env": [{"name": "PROTOCOL", "value": "v2"}]}]}))
        is Protocol.v2
    )
    assert graph_protocol(isvc({"sklearn": {"protocolVersion": "v2"}})) is Protocol.v2
    runtime = isvc({"model": {"modelFormat": {"name": "onnx"}, "runtime": "triton", "protocolVersion": "v1"}})
    assert graph_protocol(runtime, ["grpc-v2", "v2"]) is Protocol.v2  # the runtime's first of v1 and v2 wins
    assert graph_protocol(runtime, ["grpc-v2"]) is None  # KServe refuses such a graph step
    transformer = {"containers": [{"name": "kserve-container", "env": [{"name": "PROTOCOL", "value": "v2"}]}]}
    assert graph_protocol(isvc({"model": {"modelFormat": {"name": "sklearn"}}}, transformer=transformer)) is Protocol.v2


def test_no_target_until_kserve_reports_an_address() -> None:
    assert predict_target(isvc({"model": {"modelFormat": {"name": "sklearn"}}}, address=None)) is None
    target = predict_target(
        isvc({"model": {"modelFormat": {"name": "sklearn"}, "runtime": "kserve-sklearnserver"}}), runtime_protocols=["v1", "v2"]
    )
    assert target is not None
    assert target.predict_url() == "http://m.ns.svc.cluster.local/v1/models/fraud:predict"
    assert target.answers_both_protocols  # KServe's Python runtimes list both
    assert target.host == "m.ns.svc.cluster.local"
