"""The ExplainedModels waiting to be reconciled, and the threads that reconcile them.

As in client-go's work queue, what waits is a name, not an event: a name added while it waits is not added
twice, and one added while it is being reconciled is reconciled once more after (never by two threads at
once). However many events an object gets while it waits (its creation, then KServe's reports on its
children), one reconcile of its newest state answers them all.

Two lanes. `now`: an object created or changed, a child's report, a retry that is due. `backlog`: objects a
listing found already reconciled at their generation (the operator's start-up, the periodic check), which
are checked too, but never ahead of what someone is waiting for, and by a few workers at a time (the others,
and the watches, stay free): after a restart with a thousand objects in place, a new one is reconciled
at once rather than behind the thousand.

A reconcile that fails is tried again after a backoff (exponential with jitter, never sooner than the API
server's Retry-After), until it succeeds or the object is deleted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from glassbox.operator.backoff import API_RETRY_FIRST_SECONDS, API_RETRY_MAX_SECONDS, retry_delay
from glassbox.operator.kube import KubeError

log = logging.getLogger(__name__)

Key = tuple[str, str]  # namespace, name
WORKERS = 16
# At most this many reconciles from the backlog at once: the other workers, and the watches (which share the
# interpreter with them), stay free for what someone waits for. Measured after a restart with 1,000 objects in place,
# a new object's children: 4.2 s with all 16 workers on the backlog, 3.5 s with 4 (bench/README.md).
BACKLOG_WORKERS = 2
# How often a worker asks again whether the backlog may start (see WorkQueue's `backlog_ready`).
BACKLOG_READY_POLL_SECONDS = 0.5
# Workers that finish no reconcile for this long while names wait are stuck (the liveness probe fails): every
# API call of a reconcile has its own timeout, so even a reconcile of a dozen slow calls ends well before.
STUCK_AFTER_SECONDS = 600.0


@dataclass(frozen=True)
class Result:
    """What one reconcile asks of the queue: nothing (done), or to be tried again."""

    retry: bool = False
    retry_after: float | None = None
    # API errors retry from API_RETRY_FIRST_SECONDS up to API_RETRY_MAX_SECONDS; other reasons (KServe not
    # installed yet, a child's write refused for a moment) from backoff's defaults, up to five minutes.
    api_error: bool = False
    reason: str = ""
    # Done, but reconcile again after this many seconds (a status held back), unless an event comes first.
    requeue_after: float | None = None


class WorkQueue:
    """Thread-safe: the watches add, the workers take."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        backlog_workers: int = BACKLOG_WORKERS,
        backlog_ready: Callable[[], bool] = lambda: True,
    ):
        self._clock = clock
        # The backlog waits while this says no (the children's watches not yet listed: its reconciles would read
        # every child from the API server instead of the cache, at the moment a restart is busiest).
        self._backlog_ready = backlog_ready
        self._now: OrderedDict[Key, None] = OrderedDict()
        self._backlog: OrderedDict[Key, None] = OrderedDict()
        self._active: set[Key] = set()
        self._active_from_backlog: set[Key] = set()
        self._backlog_workers = backlog_workers
        # Added while being reconciled: queued again when that reconcile is done, in this lane (True: now).
        self._again: dict[Key, bool] = {}
        self._failures: dict[Key, int] = {}
        self._due: dict[Key, float] = {}  # retries waiting for their time
        self._cond = threading.Condition()
        self._closed = False
        # Since when some name has waited in a lane without a break (None: both lanes empty).
        self._waiting_since: float | None = None

    def _queue(self, lane: OrderedDict[Key, None], key: Key) -> None:
        if self._waiting_since is None:
            self._waiting_since = self._clock()
        lane[key] = None

    def add(self, key: Key, urgent: bool = True) -> None:
        with self._cond:
            if key in self._active:
                self._again[key] = self._again.get(key, False) or urgent
                return
            if key in self._now:
                return
            if urgent:
                self._backlog.pop(key, None)
                self._due.pop(key, None)  # reconciled now rather than at its retry's time
                self._queue(self._now, key)
            elif key not in self._backlog and key not in self._due:
                self._queue(self._backlog, key)
            self._cond.notify()

    def retry(self, key: Key, result: Result) -> float:
        """This reconcile failed: it is tried again after a backoff that grows with each failure in a row.
        Returns the delay."""
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            if result.api_error:
                delay = retry_delay(failures, result.retry_after, first=API_RETRY_FIRST_SECONDS, cap=API_RETRY_MAX_SECONDS)
            else:
                delay = retry_delay(failures, result.retry_after)
            if key not in self._now and key not in self._again:
                self._backlog.pop(key, None)
                self._due[key] = self._clock() + delay
                self._cond.notify()
            return delay

    def add_after(self, key: Key, delay: float) -> None:
        """Reconcile this name again in `delay` seconds (sooner if an event asks)."""
        with self._cond:
            if key in self._now:
                return
            when = self._clock() + delay
            if self._due.get(key, when) >= when:
                self._due[key] = when
            self._cond.notify()

    def succeeded(self, key: Key) -> None:
        with self._cond:
            self._failures.pop(key, None)

    def forget(self, key: Key) -> None:
        """The object is gone: no retry, no queued reconcile."""
        with self._cond:
            self._now.pop(key, None)
            self._backlog.pop(key, None)
            self._due.pop(key, None)
            self._again.pop(key, None)
            self._failures.pop(key, None)
            if not (self._now or self._backlog):
                self._waiting_since = None

    def _promote_due(self) -> float | None:
        """Moves the retries whose time has come to the `now` lane; the seconds until the next one, if any."""
        now = self._clock()
        for key in [k for k, when in self._due.items() if when <= now]:
            del self._due[key]
            if key not in self._active:
                self._queue(self._now, key)
            else:
                self._again[key] = True
        return min((when - now for when in self._due.values()), default=None)

    def get(self, timeout: float | None = None) -> Key | None:
        """The next name to reconcile (the `now` lane first, the backlog while fewer than its share of workers are
        on it), marked active; None when closed or after `timeout`."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                next_due = self._promote_due()
                backlog_held = bool(self._backlog) and not self._backlog_ready()
                for lane in (self._now, self._backlog):
                    if lane is self._backlog and (backlog_held or len(self._active_from_backlog) >= self._backlog_workers):
                        break
                    if lane:
                        key, _ = lane.popitem(last=False)
                        self._active.add(key)
                        if lane is self._backlog:
                            self._active_from_backlog.add(key)
                        if not (self._now or self._backlog):
                            self._waiting_since = None
                        return key
                recheck = BACKLOG_READY_POLL_SECONDS if backlog_held else None
                waits = [w for w in (next_due, recheck, None if deadline is None else deadline - self._clock()) if w is not None]
                if deadline is not None and deadline - self._clock() <= 0:
                    return None
                self._cond.wait(min(waits) if waits else None)
            return None

    def done(self, key: Key) -> None:
        with self._cond:
            self._active.discard(key)
            if key in self._active_from_backlog:
                self._active_from_backlog.discard(key)
                self._cond.notify()  # a worker waiting while the backlog had its share may take the next
            again = self._again.pop(key, None)
            if again is not None:
                lane = self._now if again else self._backlog
                if key not in self._now:
                    self._queue(lane, key)
                self._cond.notify()

    def from_backlog(self, key: Key) -> bool:
        """Whether this name, being reconciled, was taken from the backlog."""
        with self._cond:
            return key in self._active_from_backlog

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def waiting_since(self) -> float | None:
        with self._cond:
            return self._waiting_since

    def behind(self) -> bool:
        """Whether names someone waits for are waiting for a worker (the workers are all busy)."""
        with self._cond:
            return bool(self._now)

    def depth(self) -> dict[str, int]:
        with self._cond:
            return {"now": len(self._now), "backlog": len(self._backlog), "retrying": len(self._due), "active": len(self._active)}


class Workers:
    """Threads that take names from the queue and reconcile them: `reconcile(key)` returns a Result, or raises
    KubeError (tried again with the API's backoff). Anything else it raises is logged and tried again too:
    one object's bug must not stop the others."""

    def __init__(
        self,
        queue: WorkQueue,
        reconcile: Callable[[Key], Result],
        count: int = WORKERS,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.queue = queue
        self._reconcile = reconcile
        self._count = count
        self._clock = clock
        self._threads: list[threading.Thread] = []
        # When a worker last finished a reconcile (the liveness probe's measure of progress).
        self.last_progress = clock()

    def stuck_for(self, limit: float = STUCK_AFTER_SECONDS) -> float | None:
        """Seconds past `limit` since a reconcile last finished while names wait for a worker; None if healthy."""
        waiting_since = self.queue.waiting_since()
        if waiting_since is None:
            return None
        late = self._clock() - max(self.last_progress, waiting_since) - limit
        return late if late > 0 else None

    def start(self) -> None:
        for number in range(self._count):
            thread = threading.Thread(target=self._run, name=f"glassbox-reconcile-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self.queue.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            try:
                self.run_one(key, checking=self.queue.from_backlog(key))
            finally:
                self.queue.done(key)
                self.last_progress = self._clock()

    def run_one(self, key: Key, checking: bool = False) -> None:
        """One reconcile, and what the queue should do after it. `checking`: taken from the backlog, where a
        thousand reconciles that find nothing to change are logged at DEBUG (what they write is logged anyway)."""
        namespace, name = key
        try:
            result = self._reconcile(key)
        except KubeError as error:
            result = Result(retry=True, retry_after=error.retry_after, api_error=True, reason=str(error))
        except Exception as error:  # noqa: BLE001 - logged with its traceback and retried; the worker lives on
            log.exception("reconcile of ExplainedModel %s/%s raised", namespace, name)
            result = Result(retry=True, reason=f"{type(error).__name__}: {error}")
        if result.retry:
            delay = self.queue.retry(key, result)
            log.warning("reconcile of ExplainedModel %s/%s will be retried in %.0f s: %s", namespace, name, delay, result.reason)
        else:
            self.queue.succeeded(key)
            if result.requeue_after is not None:
                self.queue.add_after(key, result.requeue_after)
            log.log(logging.DEBUG if checking else logging.INFO, "reconciled ExplainedModel %s/%s", namespace, name)
