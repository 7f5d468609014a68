"""The periodic check of every ExplainedModel, run by one thread for the whole operator.

It recreates deleted children and follows what KServe reports, like the event
handlers, for anything a watch may have missed. It is not a per-object kopf
timer on purpose: a timer makes kopf put a finalizer on every ExplainedModel,
and then deleting one (or its namespace) hangs while the operator is stopped.

The same thread tries again, with backoff, the reconciles that an event asked
for and an API error stopped (`retry_soon`): waiting for the next pass would
leave such an ExplainedModel up to two minutes behind what KServe reported.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from glassbox.operator.backoff import API_RETRY_FIRST_SECONDS, API_RETRY_MAX_SECONDS, retry_delay
from glassbox.operator.kube import KubeError

log = logging.getLogger(__name__)

RESYNC_INTERVAL_SECONDS = 120.0
# The first pass waits this long after start: kopf's resume handlers cover start-up.
FIRST_PASS_DELAY_SECONDS = 60.0
# A pass that has not finished in this many intervals means the loop is stuck (liveness fails).
STUCK_AFTER_INTERVALS = 3


class PeriodicResync:
    """Lists the ExplainedModels in the watched namespaces and reconciles each, every interval."""

    def __init__(
        self,
        list_objects: Callable[[Sequence[str]], list[dict[str, Any]]],
        reconcile: Callable[[dict[str, Any]], object],
        namespaces: Sequence[str],
        interval: float = RESYNC_INTERVAL_SECONDS,
        first_delay: float = FIRST_PASS_DELAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        reconcile_named: Callable[[str, str], object] | None = None,
        retry_first: float = API_RETRY_FIRST_SECONDS,
    ):
        self._list = list_objects
        self._reconcile = reconcile
        self._reconcile_named = reconcile_named
        self._retry_first = retry_first
        # (namespace, name) -> (retries so far, when to try next): reconciles an event asked for that failed.
        self._retries: dict[tuple[str, str], tuple[int, float]] = {}
        self._retries_lock = threading.Lock()
        self._pass_wanted = False
        self._namespaces = tuple(namespaces)
        self._interval = interval
        self._first_delay = first_delay
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._started = clock()
        self._thread: threading.Thread | None = None
        # When the loop last showed progress: a pass finished, or an object was reconciled.
        self.last_progress = clock()
        self.passes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="glassbox-resync", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """Run a pass now rather than at the next interval: a watch has listed again (after a reconnection),
        and what changed while it was down came as a listing, not as events. Ignored during the first
        delay after start, which kopf's resume handlers cover."""
        if self._clock() - self._started >= self._first_delay:
            self._pass_wanted = True
            self._wake.set()

    def retry_soon(self, namespace: str, name: str, retry_after: float | None = None) -> float:
        """A reconcile that an event asked for failed with an API error: this ExplainedModel is reconciled
        again after a backoff (1 s doubling to 30 s, with jitter, never sooner than the server's Retry-After),
        until it succeeds. Returns the delay."""
        key = (namespace, name)
        with self._retries_lock:
            retries = self._retries[key][0] if key in self._retries else 0
            delay = retry_delay(retries, retry_after, first=self._retry_first, cap=API_RETRY_MAX_SECONDS)
            self._retries[key] = (retries + 1, self._clock() + delay)
        self._wake.set()
        return delay

    def succeeded(self, namespace: str, name: str) -> None:
        """This ExplainedModel was reconciled: no retry is owed to it."""
        with self._retries_lock:
            self._retries.pop((namespace, name), None)

    def run_due_retries(self) -> int:
        """Reconciles the ExplainedModels whose retry is due; returns how many succeeded. One that fails
        again is owed another retry, a longer backoff later."""
        now = self._clock()
        with self._retries_lock:
            due = [key for key, (_, when) in self._retries.items() if when <= now]
        done = 0
        for namespace, name in due:
            if self._stop.is_set() or self._reconcile_named is None:
                break
            try:
                self._reconcile_named(namespace, name)
            except KubeError as error:
                delay = self.retry_soon(namespace, name, error.retry_after)
                log.warning(
                    "reconcile of ExplainedModel %s/%s failed again, retrying in %.0f s: %s", namespace, name, delay, error
                )
            else:
                self.succeeded(namespace, name)
                done += 1
            self.last_progress = self._clock()
        return done

    def _next_retry(self) -> float | None:
        with self._retries_lock:
            return min((when for _, when in self._retries.values()), default=None)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def stuck_for(self) -> float | None:
        """Seconds past the point where the loop should have shown progress, or None while it is healthy."""
        late = self._clock() - self.last_progress - STUCK_AFTER_INTERVALS * self._interval - self._first_delay
        return late if late > 0 else None

    def run_pass(self) -> int:
        """One pass over every ExplainedModel; returns how many were reconciled. API trouble is logged, not raised."""
        try:
            objects = self._list(self._namespaces)
        except KubeError as error:
            log.warning("periodic check: could not list ExplainedModels, will try again: %s", error)
            return 0
        done = 0
        for body in objects:
            if self._stop.is_set():
                break
            meta = body.get("metadata") or {}
            if meta.get("deletionTimestamp"):
                continue
            try:
                self._reconcile(body)
                done += 1
                self.succeeded(str(meta.get("namespace")), str(meta.get("name")))
            except KubeError as error:
                log.warning(
                    "periodic check of ExplainedModel %s/%s failed, will try again: %s",
                    meta.get("namespace"),
                    meta.get("name"),
                    error,
                )
            self.last_progress = self._clock()
        self.last_progress = self._clock()
        return done

    def _run(self) -> None:
        next_pass = self._started + self._first_delay
        while not self._stop.is_set():
            self._wake.clear()
            if self._pass_wanted or self._clock() >= next_pass:
                self._pass_wanted = False
                self.run_pass()
                self.passes += 1
                next_pass = self._clock() + self._interval
            self.run_due_retries()
            next_retry = self._next_retry()
            wake_at = next_pass if next_retry is None else min(next_pass, next_retry)
            self._wake.wait(max(0.0, wake_at - self._clock()))
