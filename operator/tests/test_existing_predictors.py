"""Which ExplainedModels explain each existing InferenceService, as their events say."""

from __future__ import annotations

from typing import Any

from glassbox.operator.handlers import ExistingPredictors


def test_the_existing_inference_services_index_follows_every_change_of_the_explained_models() -> None:
    def em(name: str, existing: str | None, namespace: str = "ml") -> dict[str, Any]:
        predictor = {"inferenceServiceName": existing} if existing else {"modelFormat": "pytorch"}
        return {"metadata": {"name": name, "namespace": namespace}, "spec": {"predictor": predictor}}

    index = ExistingPredictors()
    index.observe(None, em("a", "fraud"))
    index.observe("ADDED", em("b", "fraud"))
    index.observe("ADDED", em("c", "fraud", namespace="other"))
    index.observe("ADDED", em("d", None))
    assert index.explaining("ml", "fraud") == ["a", "b"]
    index.observe("MODIFIED", em("a", "credit"))  # now explains another one
    assert index.explaining("ml", "fraud") == ["b"] and index.explaining("ml", "credit") == ["a"]
    index.observe("MODIFIED", em("b", None))  # now deploys its own predictor
    index.observe("DELETED", em("a", "credit"))
    assert index.explaining("ml", "fraud") == [] and index.explaining("ml", "credit") == []
    assert index.explaining("other", "fraud") == ["c"]
