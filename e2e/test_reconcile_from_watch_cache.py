"""The reconciler reading children from the watches' cache, on the real API server: a cache that has fallen behind
costs a read, never an overwrite. The test holds the Reconciler and its cache, and plays the watch that would have
told the cache of each change (by leaving it untold). Each spec names a ServiceAccount, which only this test's
reconciler allows: an operator that other tests left running (cluster-wide) refuses the spec and writes no child,
so what is measured is this reconciler's alone."""

from __future__ import annotations

import time
from typing import Any

from glassbox.operator.builders import OperatorConfig
from glassbox.operator.kube import KubeApi
from glassbox.operator.reconcile import Reconciler
from glassbox.operator.watch_cache import WatchCache
from glassbox_testing.cluster import KSERVE, XM, Cluster, wait_for
from glassbox_testing.cluster import get_object as get
from glassbox_testing.samples import load_sample

NAME = "credit-risk"


def reconciler(cluster: Cluster, events: list[tuple[str, str]] | None = None) -> tuple[Reconciler, WatchCache]:
    """The Reconciler; the Events it posts are appended to `events` ((reason, message)), the status being shared
    with whatever other operator is running."""
    cache = WatchCache()
    events = [] if events is None else events
    held = Reconciler(
        KubeApi(cluster.api),
        OperatorConfig(allow_service_account_names=True),
        lambda: "2026-01-01T00:00:00Z",
        lambda _body, reason, message: events.append((reason, message)),
        cache=cache,
    )
    return held, cache


def explained_model(cluster: Cluster, namespace: str) -> dict[str, Any]:
    manifest = load_sample("tabular-pytorch-gpu")
    manifest["metadata"] = {"name": NAME, "namespace": namespace}
    manifest["spec"]["predictor"]["serviceAccountName"] = "model-reader"  # refused by any other operator running
    cluster.objects.create_namespaced_custom_object(*XM[:2], namespace, XM[2], manifest)
    body = get(cluster, XM, namespace, NAME)
    assert body is not None
    return body


def change_spec(cluster: Cluster, namespace: str, max_replicas: int) -> dict[str, Any]:
    patch = {"spec": {"predictor": {"autoscaling": {"maxReplicas": max_replicas}}}}
    cluster.objects.patch_namespaced_custom_object(*XM[:2], namespace, XM[2], NAME, patch)
    body = get(cluster, XM, namespace, NAME)
    assert body is not None
    return body


def test_a_child_changed_since_the_cache_saw_it_is_read_and_then_applied(
    cluster: Cluster, installed_chart: None, namespace: str
) -> None:
    held, cache = reconciler(cluster)
    held.reconcile(explained_model(cluster, namespace))
    known, cached = cache.get("serving.kserve.io/v1beta1", "InferenceService", namespace, NAME)
    assert known and cached is not None, "the operator's own apply is in the cache"
    # KServe writes the predictor's status; no watch tells the cache, which now holds an older version.
    status = {"status": {"url": "http://x", "address": {"url": f"http://{NAME}.{namespace}.svc.cluster.local"}}}
    cluster.objects.patch_namespaced_custom_object_status(*KSERVE[:2], namespace, KSERVE[2], NAME, status)
    live = get(cluster, KSERVE, namespace, NAME)
    assert live is not None and live["metadata"]["resourceVersion"] != cached["metadata"]["resourceVersion"]
    outcome = held.reconcile(change_spec(cluster, namespace, 7))
    assert not outcome.problems
    applied = get(cluster, KSERVE, namespace, NAME)
    assert applied is not None and applied["spec"]["predictor"]["maxReplicas"] == 7, "applied after the 409 and a read"
    assert applied["status"]["address"]["url"].startswith("http://"), "KServe's status kept"


def test_a_name_taken_behind_the_caches_back_is_never_overwritten(
    cluster: Cluster, installed_chart: None, namespace: str
) -> None:
    events: list[tuple[str, str]] = []
    held, cache = reconciler(cluster, events)
    held.reconcile(explained_model(cluster, namespace))
    assert cache.get("serving.kserve.io/v1beta1", "InferenceService", namespace, NAME)[1] is not None
    # The predictor is deleted and someone else's InferenceService takes its name; the cache still holds ours.
    cluster.objects.delete_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], NAME)
    wait_for("the predictor gone", lambda: get(cluster, KSERVE, namespace, NAME) is None)
    theirs = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": namespace, "labels": {"team": "someone-else"}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://theirs"}}},
    }
    cluster.objects.create_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], theirs)
    before = get(cluster, KSERVE, namespace, NAME)
    assert before is not None
    time.sleep(1)
    held.reconcile(change_spec(cluster, namespace, 5))
    after = get(cluster, KSERVE, namespace, NAME)
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"], "their object was written"
    assert not after["metadata"].get("ownerReferences") and after["spec"]["predictor"]["model"]["storageUri"] == "gs://theirs"
    conflicts = [message for reason, message in events if reason == "NameConflict"]
    assert len(conflicts) == 1 and "never writes an object it did not create" in conflicts[0]


class SomeoneCreatesFirst(KubeApi):
    """The real API, where someone else creates `theirs` just before the operator's first write to that name:
    the moment between the operator reading the name as free and its create."""

    def __init__(self, cluster: Cluster, theirs: dict[str, Any]):
        super().__init__(cluster.api)
        self.cluster = cluster
        self.theirs: dict[str, Any] | None = theirs

    def apply(self, body: dict[str, Any], force: bool = True) -> dict[str, Any]:
        theirs = self.theirs
        if theirs is not None and body["metadata"]["name"] == theirs["metadata"]["name"]:
            self.theirs = None
            self.cluster.objects.create_namespaced_custom_object(*KSERVE[:2], theirs["metadata"]["namespace"], KSERVE[2], theirs)
        return super().apply(body, force)


def test_a_name_taken_between_the_read_and_the_create_is_never_overwritten(
    cluster: Cluster, installed_chart: None, namespace: str
) -> None:
    theirs = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": namespace, "labels": {"team": "someone-else"}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://theirs"}}},
    }
    events: list[tuple[str, str]] = []
    held = Reconciler(
        SomeoneCreatesFirst(cluster, theirs),
        OperatorConfig(allow_service_account_names=True),
        lambda: "2026-01-01T00:00:00Z",
        lambda _body, reason, message: events.append((reason, message)),
        cache=WatchCache(),
    )
    held.reconcile(explained_model(cluster, namespace))
    after = get(cluster, KSERVE, namespace, NAME)
    assert after is not None and after["spec"]["predictor"]["model"]["storageUri"] == "gs://theirs", "their object was written"
    assert not after["metadata"].get("ownerReferences")
    assert "glassbox-operator" not in {entry["manager"] for entry in after["metadata"].get("managedFields") or []}
    assert [reason for reason, _ in events] == ["NameConflict"]
