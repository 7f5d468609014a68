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
# The first pass waits this long after start: the watch's first listing of the ExplainedModels covers start-up.
FIRST_PASS_DELAY_SECONDS = 60.0
# A pass that has not finished in this many intervals means the loop is stuck (liveness fails).
STUCK_AFTER_INTERVALS = 3


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
    ):
        self._list = list_objects
        self._check = check
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
            if self._clock() >= next_pass:
                self.run_pass()
                self.passes += 1
                next_pass = self._clock() + self._interval
                continue
            self._wake.wait(max(0.0, next_pass - self._clock()))
