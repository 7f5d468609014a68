"""The periodic check of every ExplainedModel, run by one thread for the whole operator.

It recreates deleted children and follows what KServe reports, like the event
handlers, for anything a watch may have missed. It is not a per-object kopf
timer on purpose: a timer makes kopf put a finalizer on every ExplainedModel,
and then deleting one (or its namespace) hangs while the operator is stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

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
    ):
        self._list = list_objects
        self._reconcile = reconcile
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
            self._wake.set()

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
            if (body.get("metadata") or {}).get("deletionTimestamp"):
                continue
            try:
                self._reconcile(body)
                done += 1
            except KubeError as error:
                meta = body.get("metadata") or {}
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
        if self._stop.wait(self._first_delay):
            return
        while not self._stop.is_set():
            self._wake.clear()
            self.run_pass()
            self.passes += 1
            self._wake.wait(self._interval)
