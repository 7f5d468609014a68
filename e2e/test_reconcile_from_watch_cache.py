"""The reconciler reading children from the watches' cache, on the real API server: a cache that has fallen behind
costs a read, never an overwrite. The test holds the Reconciler and its cache, and plays the watch that would have
told the cache of each change (by leaving it untold). Each spec names a ServiceAccount, which only this test's
reconciler allows: an operator that other tests left running (cluster-wide) refuses the spec and writes no child,
so what is measured is this reconciler's alone."""

from __future__ import annotations

import time
from typing import Any

from glassbox.operator.builders import OperatorConfig
from glassbox.operator.informer import Informer, informers_for
from glassbox.operator.kube import KubeApi
from glassbox.operator.reconcile import CHILD_KINDS, Reconciler
from glassbox.operator.watch_cache import WatchCache
from glassbox_testing.cluster import GRAPHS, KSERVE, XM, Cluster, wait_for
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


def someone_elses_inference_service(namespace: str) -> dict[str, Any]:
    """An InferenceService of the predictor's name that Glassbox did not make."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": NAME, "namespace": namespace, "labels": {"team": "someone-else"}},
        "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://theirs"}}},
    }


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
    theirs = someone_elses_inference_service(namespace)
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
    theirs = someone_elses_inference_service(namespace)
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


class CountingReads(KubeApi):
    """The real API; counts the reads of single objects, by kind."""

    def __init__(self, cluster: Cluster):
        super().__init__(cluster.api)
        self.reads: list[str] = []

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads.append(kind)
        return super().get(api_version, kind, namespace, name)


def listed_informers(api: KubeApi, namespace: str, cache: WatchCache) -> list[tuple[str, dict[str, Any]]]:
    """The children's informers of `namespace` after their first listing (no thread: the test plays the watch)."""
    handed_on: list[tuple[str, dict[str, Any]]] = []
    for informer in informers_for(
        api, CHILD_KINDS, [namespace], cache, lambda kind, body, _before: handed_on.append((kind, body))
    ):
        informer.relist()
    return handed_on


def test_with_every_child_listed_a_new_object_is_created_without_reading_its_childrens_names(
    cluster: Cluster, installed_chart: None, namespace: str
) -> None:
    api = CountingReads(cluster)
    cache = WatchCache()
    assert listed_informers(api, namespace, cache) == [], "a first listing hands nothing on"
    held = Reconciler(
        api, OperatorConfig(allow_service_account_names=True), lambda: "2026-01-01T00:00:00Z", lambda *_: None, cache=cache
    )
    held.reconcile(explained_model(cluster, namespace))
    assert api.reads == [], "the names were read although every child of the namespace was listed"
    predictor = get(cluster, KSERVE, namespace, NAME)
    assert predictor is not None and predictor["metadata"]["ownerReferences"][0]["name"] == NAME


def test_with_every_child_listed_a_name_taken_since_the_listing_is_never_overwritten(
    cluster: Cluster, installed_chart: None, namespace: str
) -> None:
    """The listing said the name was free; someone else's object took it before the watch said so. The create that
    follows (no read) must leave their object as it was and report the conflict."""
    api = CountingReads(cluster)
    cache = WatchCache()
    listed_informers(api, namespace, cache)
    theirs = someone_elses_inference_service(namespace)
    cluster.objects.create_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], theirs)
    events: list[tuple[str, str]] = []
    held = Reconciler(
        api,
        OperatorConfig(allow_service_account_names=True),
        lambda: "2026-01-01T00:00:00Z",
        lambda _body, reason, message: events.append((reason, message)),
        cache=cache,
    )
    held.reconcile(explained_model(cluster, namespace))
    after = get(cluster, KSERVE, namespace, NAME)
    assert after is not None and after["spec"]["predictor"]["model"]["storageUri"] == "gs://theirs", "their object was written"
    assert not after["metadata"].get("ownerReferences")
    assert "glassbox-operator" not in {entry["manager"] for entry in after["metadata"].get("managedFields") or []}
    assert [reason for reason, _ in events] == ["NameConflict"]


def test_a_relisting_hands_on_what_changed_while_no_watch_ran(cluster: Cluster, installed_chart: None, namespace: str) -> None:
    api = KubeApi(cluster.api)
    cache = WatchCache()
    handed_on: list[tuple[str, str]] = []
    informer = Informer(
        api,
        "serving.kserve.io/v1beta1",
        "InferenceService",
        namespace,
        cache,
        lambda kind, body, _before: handed_on.append((kind, body["metadata"]["name"])),
    )

    def isvc(name: str) -> dict[str, Any]:
        return {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://a"}}},
        }

    for name in ("kept", "changed", "deleted"):
        cluster.objects.create_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], isvc(name))
    informer.relist()
    assert handed_on == [] and informer.synced.is_set()
    assert cache.complete("serving.kserve.io/v1beta1", "InferenceService", namespace)
    assert not cache.complete("serving.kserve.io/v1beta1", "InferenceService", "elsewhere")
    cluster.objects.patch_namespaced_custom_object(
        *KSERVE[:2], namespace, KSERVE[2], "changed", {"metadata": {"labels": {"x": "y"}}}
    )
    cluster.objects.delete_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], "deleted")
    cluster.objects.create_namespaced_custom_object(*KSERVE[:2], namespace, KSERVE[2], isvc("added"))
    wait_for("the deletion done", lambda: get(cluster, KSERVE, namespace, "deleted") is None)
    informer.relist()
    assert sorted(handed_on) == [("ADDED", "added"), ("DELETED", "deleted"), ("MODIFIED", "changed")]
    assert cache.get("serving.kserve.io/v1beta1", "InferenceService", namespace, "deleted") == (True, None)


def test_the_informer_thread_keeps_each_event_and_hands_it_on(cluster: Cluster, installed_chart: None, namespace: str) -> None:
    cache = WatchCache()
    handed_on: list[tuple[str, str]] = []
    informer = Informer(
        KubeApi(cluster.api),
        "serving.kserve.io/v1alpha1",
        "InferenceGraph",
        namespace,
        cache,
        lambda kind, body, _before: handed_on.append((kind, body["metadata"]["name"])),
    )
    informer.start()
    try:
        assert informer.synced.wait(30)
        graph = {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "InferenceGraph",
            "metadata": {"name": "someones-graph", "namespace": namespace},
            "spec": {
                "nodes": {"root": {"routerType": "Sequence", "steps": [{"serviceUrl": "http://a.b.svc/v1/models/m:predict"}]}}
            },
        }
        cluster.objects.create_namespaced_custom_object(*GRAPHS[:2], namespace, GRAPHS[2], graph)
        wait_for("the ADDED event", lambda: ("ADDED", "someones-graph") in handed_on)
        assert cache.get("serving.kserve.io/v1alpha1", "InferenceGraph", namespace, "someones-graph")[1] is not None
        cluster.objects.delete_namespaced_custom_object(*GRAPHS[:2], namespace, GRAPHS[2], "someones-graph")
        wait_for("the DELETED event", lambda: ("DELETED", "someones-graph") in handed_on)
        assert cache.get("serving.kserve.io/v1alpha1", "InferenceGraph", namespace, "someones-graph") == (True, None)
        assert informer.listings == 1, "the watch listed again instead of resuming"
    finally:
        informer.stop()


class CountingStatusWrites(KubeApi):
    def __init__(self, cluster: Cluster):
        super().__init__(cluster.api)
        self.status_writes = 0

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any] | None:
        self.status_writes += 1
        return super().patch_status(namespace, name, status)


def test_a_status_that_only_waits_for_kserves_report_is_held_back_and_then_written(
    cluster: Cluster, installed_chart: None, namespace: str
) -> None:
    api = CountingStatusWrites(cluster)
    now = [0.0]
    behind = [False]
    held = Reconciler(
        api,
        OperatorConfig(allow_service_account_names=True),
        lambda: "2026-01-01T00:00:00Z",
        lambda *_: None,
        cache=WatchCache(),
        status_hold_seconds=2.0,
        clock=lambda: now[0],
        behind=lambda: behind[0],
        status_hold_behind_seconds=10.0,
    )
    outcome = held.reconcile(explained_model(cluster, namespace))  # the predictor created; the explainer waits
    assert outcome.requeue_after == 2.0 and api.status_writes == 0
    now[0] = 1.5  # KServe has not reported yet: still held, for what is left of the hold
    assert held.reconcile(get(cluster, XM, namespace, NAME)).requeue_after == 0.5 and api.status_writes == 0
    now[0], behind[0] = 2.0, True  # a burst keeps the workers busy: held longer
    assert held.reconcile(get(cluster, XM, namespace, NAME)).requeue_after == 8.0 and api.status_writes == 0
    behind[0] = False  # the burst is done, and the hold with it: the waiting is written, once
    outcome = held.reconcile(get(cluster, XM, namespace, NAME))
    assert outcome.requeue_after is None and api.status_writes == 1
    written = get(cluster, XM, namespace, NAME)
    assert written is not None
    reasons = {c["type"]: c["reason"] for c in written["status"]["conditions"]}
    assert reasons["ExplainerReady"] == "WaitingForPredictorAddress" and written["status"]["observedGeneration"] == 1
    now[0] = 10.0  # nothing new: no write, and no reconcile asked for
    assert held.reconcile(written).requeue_after is None and api.status_writes == 1
