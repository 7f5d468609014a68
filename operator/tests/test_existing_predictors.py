"""Which ExplainedModels explain each existing InferenceService, as their events say; and which ExplainedModels
a child's event puts in the work queue."""

from __future__ import annotations

from typing import Any

from glassbox.operator.handlers import ChildEvents, ExistingPredictors
from glassbox.operator.workqueue import WorkQueue


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


def test_a_childs_event_queues_the_explained_models_it_concerns() -> None:
    index = ExistingPredictors()
    index.observe(
        "ADDED",
        {"metadata": {"name": "explains-fraud", "namespace": "ml"}, "spec": {"predictor": {"inferenceServiceName": "fraud"}}},
    )
    queue = WorkQueue()
    events = ChildEvents(queue, index)

    def child(kind: str, name: str, owner: str | None, status: dict[str, Any] | None = None) -> dict[str, Any]:
        refs = [{"apiVersion": "glassbox.dev/v1alpha1", "kind": "ExplainedModel", "name": owner, "uid": "u"}] if owner else []
        return {"kind": kind, "metadata": {"name": name, "namespace": "ml", "ownerReferences": refs}, "status": status or {}}

    events("ADDED", child("InferenceService", "credit", "credit"))  # the operator's own apply: nothing to mirror
    assert queue.depth()["now"] == 0
    events("MODIFIED", child("InferenceService", "credit", "credit", {"address": {"url": "http://credit"}}))  # KServe's report
    events("DELETED", child("InferenceGraph", "credit-graph", "credit"))
    events("ADDED", child("InferenceService", "fraud", None))  # an existing predictor appears
    events("ADDED", child("InferenceGraph", "fraud", None))  # a graph of that name is not the predictor
    assert drain(queue) == [("ml", "credit"), ("ml", "explains-fraud")]


def drain(queue: WorkQueue) -> list[tuple[str, str]]:
    taken = []
    while (key := queue.get(timeout=0)) is not None:
        taken.append(key)
        queue.done(key)
    return taken
