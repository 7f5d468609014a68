"""One active operator among several replicas: a coordination.k8s.io Lease, as client-go's leader election.

A replica that does not hold the Lease waits (alive, answering its health
probe) and takes it once the holder has not renewed it for a whole lease
duration, measured on its own clock from when it last saw the record change,
so clock skew between nodes does not matter. The holder renews every retry
period; if it cannot renew within the renew deadline it stops acting at once
(the process exits and restarts as a standby), before any other replica may take over.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from glassbox.operator.kube import KubeError

log = logging.getLogger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"


class LeaseStore(Protocol):
    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create(self, body: dict[str, Any]) -> dict[str, Any]: ...
    def replace(self, body: dict[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LeaseTerms:
    """client-go's defaults: a holder that has not renewed for 15 s is gone; it gives up itself after 10 s."""

    duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def micro_time(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_body(
    namespace: str, name: str, identity: str, terms: LeaseTerms, now: datetime.datetime, previous: dict[str, Any] | None
) -> dict[str, Any]:
    """The Lease naming `identity` as holder, renewed now; a change of holder counts a transition."""
    old_spec = (previous or {}).get("spec") or {}
    taking_over = old_spec.get("holderIdentity") != identity
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if previous is not None:
        metadata["resourceVersion"] = previous["metadata"]["resourceVersion"]
    return {
        "apiVersion": LEASE_API_VERSION,
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": int(terms.duration),
            "acquireTime": micro_time(now) if taking_over else old_spec.get("acquireTime") or micro_time(now),
            "renewTime": micro_time(now),
            "leaseTransitions": int(old_spec.get("leaseTransitions") or 0) + (1 if taking_over and previous is not None else 0),
        },
    }


class LeaderElector:
    def __init__(
        self,
        store: LeaseStore,
        namespace: str,
        name: str,
        identity: str,
        terms: LeaseTerms = LeaseTerms(),
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ):
        self.store, self.namespace, self.name, self.identity = store, namespace, name, identity
        self.terms, self._clock, self._wall = terms, clock, wall
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self.last_renewed: float | None = None

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        try:
            lease = self.store.get(LEASE_API_VERSION, "Lease", self.namespace, self.name)
            now = self._clock()
            if lease is not None:
                spec = lease.get("spec") or {}
                record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"))
                if record != self._observed:
                    self._observed, self._observed_at = record, now
                holder = spec.get("holderIdentity")
                duration = float(spec.get("leaseDurationSeconds") or self.terms.duration)
                if holder and holder != self.identity and now < self._observed_at + duration:
                    return False
            body = lease_body(self.namespace, self.name, self.identity, self.terms, self._wall(), lease)
            if lease is None:
                self.store.create(body)
            else:
                self.store.replace(body)
        except KubeError as error:  # another replica won the race (409), or the API is unreachable
            log.debug("lease %s/%s: %s", self.namespace, self.name, error)
            return False
        self.last_renewed = self._clock()
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Blocks until this replica holds the Lease (True) or `stop` is set (False)."""
        logged = False
        while not stop.is_set():
            if self.try_acquire_or_renew():
                log.info(
                    "holding lease %s/%s as %s: this replica is the active operator", self.namespace, self.name, self.identity
                )
                return True
            if not logged:
                log.info("another replica holds lease %s/%s: standing by", self.namespace, self.name)
                logged = True
            stop.wait(self.terms.retry_period)
        return False

    def lost(self) -> bool:
        """Whether the last renewal is older than the renew deadline: this replica must stop acting."""
        return self.last_renewed is None or self._clock() - self.last_renewed > self.terms.renew_deadline

    def keep_renewing(self, stop: threading.Event, on_lost: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            while not stop.wait(self.terms.retry_period):
                self.try_acquire_or_renew()
                if self.lost():
                    log.error(
                        "could not renew lease %s/%s for %.0f s: stopping, another replica takes over",
                        self.namespace,
                        self.name,
                        self.terms.renew_deadline,
                    )
                    on_lost()
                    return

        thread = threading.Thread(target=run, name="glassbox-lease", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Give the Lease up on a clean stop, so a standby takes over at once instead of after a lease duration."""
        try:
            lease = self.store.get(LEASE_API_VERSION, "Lease", self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            body = lease_body(self.namespace, self.name, self.identity, self.terms, self._wall(), lease)
            body["spec"]["holderIdentity"] = ""
            body["spec"]["leaseDurationSeconds"] = 1
            self.store.replace(body)
        except KubeError as error:
            log.warning(
                "could not release lease %s/%s (a standby takes over when it expires): %s", self.namespace, self.name, error
            )
