"""The periodic check of every ExplainedModel, run by one thread for the whole operator.

Every interval it lists the ExplainedModels and puts each in the work queue's backlog (behind anything
someone is waiting for), so that deleted children are recreated and KServe's reports followed even where a
watch missed an event. It is not a per-object kopf timer on purpose: a timer makes kopf put a finalizer on
every ExplainedModel, and then deleting one (or its namespace) hangs while the operator is stopped.
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
# The first pass waits this long after start: kopf's first listing of the ExplainedModels covers start-up.
FIRST_PASS_DELAY_SECONDS = 60.0
# A pass that has not finished in this many intervals means the loop is stuck (liveness fails).
STUCK_AFTER_INTERVALS = 3
# A nudge runs a pass this long after it, so that the nudges of one listing (one per object listed) make one pass.
NUDGE_DELAY_SECONDS = 5.0


class PeriodicResync:
    """Lists the ExplainedModels in the watched namespaces and hands each to `check`, every interval."""

    def __init__(
        self,
        list_objects: Callable[[Sequence[str]], list[dict[str, Any]]],
        check: Callable[[dict[str, Any]], object],
        namespaces: Sequence[str],
        interval: float = RESYNC_INTERVAL_SECONDS,
        first_delay: float = FIRST_PASS_DELAY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        nudge_delay: float = NUDGE_DELAY_SECONDS,
    ):
        self._list = list_objects
        self._check = check
        # When the first nudge since the last pass came (None: none has).
        self._nudged_at: float | None = None
        self._nudge_delay = nudge_delay
        self._namespaces = tuple(namespaces)
        self._interval = interval
        self._first_delay = first_delay
        self._clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._started = clock()
        self._thread: threading.Thread | None = None
        # When the loop last showed progress: a pass finished.
        self.last_progress = clock()
        self.passes = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="glassbox-resync", daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """Run a pass soon (after the nudge delay) rather than at the next interval: a watch has listed again
        (after a reconnection), and what changed while it was down came as a listing, not as events. kopf
        delivers a listing as one event per object, so the nudges within the delay make one pass. Ignored
        during the first delay after start, which kopf's first listing of the ExplainedModels covers."""
        now = self._clock()
        if now - self._started >= self._first_delay:
            if self._nudged_at is None:
                self._nudged_at = now
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
        """One pass over every ExplainedModel; returns how many were handed on. API trouble is logged, not raised."""
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
            self._check(body)
            done += 1
        self.last_progress = self._clock()
        return done

    def _run(self) -> None:
        next_pass = self._started + self._first_delay
        while not self._stop.is_set():
            self._wake.clear()
            nudged_at = self._nudged_at
            due = next_pass if nudged_at is None else min(next_pass, nudged_at + self._nudge_delay)
            if self._clock() >= due:
                self._nudged_at = None
                self.run_pass()
                self.passes += 1
                next_pass = self._clock() + self._interval
                continue
            self._wake.wait(max(0.0, due - self._clock()))
