"""The pure builders, against golden YAML a reviewer can read.

Regenerate the golden files after an intended change with
`GLASSBOX_UPDATE_GOLDEN=1 pytest operator/tests/test_builders.py` and review the diff.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from glassbox.operator.api import ExplainedModelSpec
from glassbox.operator.builders import (
    EXPLAINER_SPEC_ENV,
    SPEC_HASH_ANNOTATION,
    OperatorConfig,
    Parent,
    build_children,
)

from sample_manifests import SAMPLES

GOLDEN = Path(__file__).parent / "golden"
CONFIG = OperatorConfig()


def children_of(manifest: dict[str, Any], namespace: str = "ml", uid: str = "0000-uid") -> list[dict[str, Any]]:
    parent = Parent(name=manifest["metadata"]["name"], namespace=namespace, uid=uid)
    return build_children(parent, ExplainedModelSpec.model_validate(manifest["spec"]), CONFIG).objects()


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


def test_the_explainer_scales_independently_and_carries_its_spec(credit_risk: dict[str, Any]) -> None:
    explainer = children_of(credit_risk)[1]
    component = explainer["spec"]["predictor"]
    assert (component["minReplicas"], component["maxReplicas"], component["scaleTarget"]) == (1, 10, 2)
    env = {e["name"]: e["value"] for e in component["containers"][0]["env"]}
    carried = ExplainedModelSpec.model_validate({**credit_risk["spec"], "explainer": yaml.safe_load(env[EXPLAINER_SPEC_ENV])}).explainer
    assert carried == ExplainedModelSpec.model_validate(credit_risk["spec"]).explainer
    # A white-box method (ig) needs the weights: the storage initializer fetches them.
    assert env["STORAGE_URI"] == credit_risk["spec"]["predictor"]["storageUri"]


def test_a_black_box_explainer_does_not_download_the_model(credit_risk: dict[str, Any]) -> None:
    credit_risk["spec"]["explainer"]["methods"] = [m for m in credit_risk["spec"]["explainer"]["methods"] if m["type"] != "IntegratedGradients"]
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
            {"apiVersion": "glassbox.dev/v1alpha1", "kind": "ExplainedModel", "name": "credit-risk", "uid": "abc",
             "controller": True, "blockOwnerDeletion": True}
        ]
        assert meta["labels"]["glassbox.dev/explained-model"] == "credit-risk"


def test_the_spec_hash_changes_with_the_spec_and_only_then(credit_risk: dict[str, Any]) -> None:
    before = [c["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for c in children_of(credit_risk)]
    assert before == [c["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for c in children_of(credit_risk)]
    del credit_risk["spec"]["predictor"]["nodeSelector"]
    after = [c["metadata"]["annotations"][SPEC_HASH_ANNOTATION] for c in children_of(credit_risk)]
    assert after[0] != before[0]
    assert after[1:] == before[1:]


def test_graph_routes_switch_on_the_route_field(credit_risk: dict[str, Any]) -> None:
    graph = children_of(credit_risk)[2]
    nodes = graph["spec"]["nodes"]
    root = nodes["root"]
    assert root["routerType"] == "Switch"
    assert [s["name"] for s in root["steps"]] == ["explain", "predict-and-explain", "predict"]
    assert root["steps"][0]["condition"] == '[@this].#(route=="explain")'
    assert root["steps"][-1] == {"name": "predict", "serviceName": "credit-risk", "condition": "@this"}
    explain_url = "http://credit-risk-explainer-predictor.ml.svc.cluster.local/v1/models/credit-risk:explain"
    assert nodes["explain"]["steps"][0]["serviceUrl"] == explain_url
    assert nodes["predict-and-explain"]["routerType"] == "Ensemble"
    assert nodes["predict-and-explain"]["steps"] == [
        {"name": "prediction", "serviceName": "credit-risk"},
        {"name": "explanation", "serviceUrl": explain_url},
    ]


def test_an_existing_inference_service_is_referenced_never_built() -> None:
    from sample_manifests import load_sample

    manifest = load_sample("existing-inferenceservice")
    children = children_of(manifest)
    assert [c["metadata"]["name"] for c in children] == ["loan-approval-explainer", "loan-approval-graph"]
    args = children[0]["spec"]["predictor"]["containers"][0]["args"]
    assert "--predictor_host=loan-approval-sklearn-predictor.ml.svc.cluster.local" in args
    assert "--model_name=loan-approval-sklearn" in args
