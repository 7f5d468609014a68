"""The watches' cache of children, on its own: the newest copy kept, a deletion known, managedFields dropped.
(The reconciler reading from it is tested on the real API server in e2e/test_reconcile_from_watch_cache.py.)"""

from __future__ import annotations

from glassbox.operator.watch_cache import WatchCache


def test_the_cache_keeps_the_newest_copy_and_knows_a_deletion() -> None:
    cache = WatchCache()
    body = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "20", "managedFields": [{"manager": "x"}]},
    }
    assert cache.get("serving.kserve.io/v1beta1", "InferenceService", "ns", "a") == (False, None)
    cache.written(body)
    older = {**body, "metadata": {**body["metadata"], "resourceVersion": "19"}}
    cache.observe("MODIFIED", older)  # a watch event behind the operator's own write
    known, held = cache.get("serving.kserve.io/v1beta1", "InferenceService", "ns", "a")
    assert known and held is not None and held["metadata"]["resourceVersion"] == "20" and "managedFields" not in held["metadata"]
    cache.observe("DELETED", body)
    assert cache.get("serving.kserve.io/v1beta1", "InferenceService", "ns", "a") == (True, None)


def test_a_deletion_older_than_the_operators_own_write_is_not_kept_and_a_kind_is_complete_once_listed() -> None:
    cache = WatchCache()
    old = {"apiVersion": "v", "kind": "K", "metadata": {"name": "a", "namespace": "ns", "resourceVersion": "10"}}
    recreated = {**old, "metadata": {**old["metadata"], "resourceVersion": "12"}}
    cache.written(recreated)  # the operator created it again before the watch told of the old one's deletion
    cache.observe("DELETED", {**old, "metadata": {**old["metadata"], "resourceVersion": "11"}})
    assert cache.get("v", "K", "ns", "a")[1] == recreated
    assert cache.present("v", "K", None) == {("v", "K", "ns", "a"): recreated}
    assert cache.present("v", "K", "other") == {}
    assert not cache.complete("v", "K", "ns")
    cache.mark_complete("v", "K", None)  # a cluster-wide listing covers every namespace
    assert cache.complete("v", "K", "ns") and cache.complete("v", "K", "other") and not cache.complete("v", "L", "ns")
