"""Leader election between replicas, on an in-memory Lease store that checks resourceVersion like the API server."""

from __future__ import annotations

import copy
import datetime
from typing import Any

from glassbox.operator.kube import Transient
from glassbox.operator.leader import LeaderElector, LeaseTerms


class LeaseStore:
    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down = False

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        if self.down:
            raise Transient("could not read Lease: connection refused")
        return copy.deepcopy(self.lease)

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.lease is not None:
            raise Transient("could not create Lease: 409 already exists", 409)
        return self._store(body)

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise Transient("could not replace Lease: 409 the object has been modified", 409)
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)


def _electors(store: LeaseStore, now: list[float]) -> tuple[LeaderElector, LeaderElector]:
    wall = lambda: datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=now[0])  # noqa: E731

    def make(identity: str) -> LeaderElector:
        return LeaderElector(
            store, "glassbox-system", "glassbox-operator", identity, LeaseTerms(), clock=lambda: now[0], wall=wall
        )

    return make("a"), make("b")


def test_one_holder_at_a_time_and_a_takeover_only_after_a_whole_lease_duration() -> None:
    store, now = LeaseStore(), [0.0]
    a, b = _electors(store, now)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    now[0] = 2.0
    assert a.try_acquire_or_renew()  # renewing
    assert store.lease is not None and store.lease["spec"]["leaseTransitions"] == 0

    # a stops renewing (hung, partitioned). b measures the lease's age on its own clock, from when it saw it change.
    # b first sees the renewed record now, so it waits a whole duration from now.
    now[0] = 16.0
    assert not b.try_acquire_or_renew()
    assert a.lost()  # past the renew deadline: a stops acting long before b may take over
    now[0] = 30.9
    assert not b.try_acquire_or_renew()
    now[0] = 31.1
    assert b.try_acquire_or_renew()
    assert store.lease["spec"]["holderIdentity"] == "b" and store.lease["spec"]["leaseTransitions"] == 1
    assert not a.try_acquire_or_renew()


def test_a_released_lease_is_taken_at_once_and_api_trouble_never_counts_as_holding() -> None:
    store, now = LeaseStore(), [0.0]
    a, b = _electors(store, now)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    now[0] = 1.5  # past the released lease's 1 s, well within the 15 s of a held one
    assert b.try_acquire_or_renew()

    store.down = True
    now[0] = 3.0
    assert not b.try_acquire_or_renew()
    now[0] = 12.0
    assert b.lost()
