"""What the watches hand on, and kopf's part. The operator's informers (informer.py) watch the ExplainedModels and
their children; what they hand on is kept (the watch caches) and the ExplainedModels that need a reconcile go in
the work queue, whose threads reconcile them (workqueue.py). kopf runs the start-up and clean-up and answers the
liveness probe; it watches nothing and writes nothing to the objects (whether a spec was reconciled is its
generation against the status's observedGeneration).

The Reconciler, the queue and its workers, the informers and the periodic check live in kopf's operator-wide
`memo`, set by `glassbox operator`. No ExplainedModel carries a finalizer, so one (and its namespace) can be
deleted while the operator is stopped.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kopf

from glassbox.contract.api import GROUP
from glassbox.operator.backoff import API_RETRY_FIRST_SECONDS, API_RETRY_MAX_SECONDS, retry_delay
from glassbox.operator.kube import KubeApi
from glassbox.operator.reconcile import Reconciler, reconcile_lane
from glassbox.operator.resync import PeriodicResync
from glassbox.operator.workqueue import Key, Result, Workers, WorkQueue

# The same Warning Event for the same object at most this often.
WARNING_EVENT_INTERVAL_SECONDS = 600.0
# Every API call of kopf's gives up after this long.
API_REQUEST_TIMEOUT_SECONDS = 30.0
API_CONNECT_TIMEOUT_SECONDS = 10.0


class EndlessBackoff:
    """kopf's `error_backoffs`: a fresh, never-ending series of delays for every request of kopf's own (its
    start-up's API discovery), as the operator's watches retry (informer.py). kopf's default series gives up
    after about 54 s: an API server that refuses connections, or answers 403 while its authorizer warms up
    after a restart, for a minute would otherwise end the process."""

    def __init__(self, first: float = API_RETRY_FIRST_SECONDS, cap: float = API_RETRY_MAX_SECONDS):
        self.first = first
        self.cap = cap

    def __iter__(self) -> Iterator[float]:
        retry = 0
        while True:
            yield retry_delay(retry, first=self.first, cap=self.cap)
            retry += 1


class WarningLimiter:
    """Lets the same (object, reason) through at most once per interval."""

    def __init__(self, interval: float = WARNING_EVENT_INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._guard = threading.Lock()

    def allow(self, uid: str, reason: str) -> bool:
        now = self._clock()
        with self._guard:
            if len(self._last) > 10_000:  # forget what can no longer hold anything back (deleted objects included)
                self._last = {key: when for key, when in self._last.items() if now - when < self._interval}
            last = self._last.get((uid, reason))
            if last is not None and now - last < self._interval:
                return False
            self._last[(uid, reason)] = now
            return True


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventPoster:
    """The reconciler's Events, posted from its worker threads: the same (object, reason) at most once per
    interval (WarningLimiter), so a reconcile repeated by every event never floods `kubectl describe`."""

    def __init__(self, api: KubeApi, limiter: WarningLimiter | None = None):
        self._api = api
        self._limiter = limiter or WarningLimiter()

    def _post(self, body: dict[str, Any], event_type: str, reason: str, message: str) -> None:
        if self._limiter.allow(str((body.get("metadata") or {}).get("uid")), reason):
            self._api.post_event(body, event_type, reason, message)

    def warning(self, body: dict[str, Any], reason: str, message: str) -> None:
        self._post(body, "Warning", reason, message)

    def normal(self, body: dict[str, Any], reason: str, message: str) -> None:
        """An Event that needs no action (drift ended)."""
        self._post(body, "Normal", reason, message)


class _TransientFailuresAreWarnings(logging.Filter):
    """kopf logs a handler's TemporaryError, and each retried API request of its own, at ERROR; an expected,
    retried failure is a warning. What is not retried stays an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.ERROR and ("failed temporarily" in message or "failed; will retry" in message):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def reconcile_queued(reconciler: Reconciler) -> Callable[[Key], Result]:
    """The workers' reconcile of one name: an invalid spec waits for a new one (its status says why); KServe
    missing or a child's write that failed is tried again later; API errors raise, and are tried again too; a
    status held back is reconciled again when its hold ends."""

    def run(key: Key) -> Result:
        outcome = reconciler.reconcile_named(*key)
        if outcome is None or outcome.problems:
            return Result()
        if not outcome.retry_reason:
            return Result(requeue_after=outcome.requeue_after)
        return Result(retry=True, reason=outcome.retry_reason)

    return run


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf runs the operator's start-up and clean-up, and answers the liveness probe; it watches nothing (the
    # operator's informers do, informer.py), so it needs no resource discovery.
    settings.scanning.disabled = True
    settings.peering.standalone = True
    # Warnings reach objects as Events only through EventPoster (rate-limited), not from kopf's log lines.
    settings.posting.enabled = False
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = API_REQUEST_TIMEOUT_SECONDS
    settings.networking.connect_timeout = API_CONNECT_TIMEOUT_SECONDS
    settings.networking.error_backoffs = EndlessBackoff()
    settings.execution.max_workers = 2  # only the start-up and clean-up handlers run in kopf's thread pool
    for handler in logging.getLogger().handlers:  # kopf's own log lines come from many loggers, all to the root's handler
        handler.addFilter(_TransientFailuresAreWarnings())


@kopf.on.startup()
def start_reconciling(memo: kopf.Memo, **_: Any) -> None:
    """Starts the watches, the workers and the periodic check's thread (Events are posted through the API by
    EventPoster, so none of them needs kopf's context)."""
    for informer in memo.get("informers") or ():
        informer.start()
    workers: Workers | None = memo.get("workers")
    if workers is not None:
        workers.start()
    resync: PeriodicResync | None = memo.get("resync")
    if resync is not None:
        resync.start()


@kopf.on.cleanup()
def stop_reconciling(memo: kopf.Memo, **_: Any) -> None:
    resync: PeriodicResync | None = memo.get("resync")
    if resync is not None:
        resync.stop()
    workers: Workers | None = memo.get("workers")
    if workers is not None:
        workers.stop()
    for informer in memo.get("informers") or ():
        informer.stop()


class ExplainedModelEvents:
    """What the ExplainedModels' watch hands on (informer.py), from its thread, the first listing included (type
    None): queued as `reconcile_lane` decides. A deleted one is forgotten; its children go with it (owner
    references). The watch has already put the new copy in the cache of ExplainedModels."""

    def __init__(self, queue: WorkQueue, existing: ExistingPredictors, reconciler: Reconciler):
        self._queue = queue
        self._existing = existing
        self._reconciler = reconciler

    def __call__(self, event_type: str | None, body: dict[str, Any], before: dict[str, Any] | None) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        self._existing.observe(event_type, body)
        if event_type == "DELETED":
            self._queue.forget(key)
            self._reconciler.forget(*key)
            return
        lane = reconcile_lane(event_type, before, body)
        if lane is not None:
            self._queue.add(key, urgent=lane == "now")


class ExistingPredictors:
    """Which ExplainedModels explain each existing InferenceService (spec.predictor.inferenceServiceName), kept from
    the ExplainedModels' events. Not a kopf index on purpose: kopf holds every event back until all its indices
    are complete, and its wake-ups for that grow with the square of the objects (with 1,000, most of a restart)."""

    def __init__(self) -> None:
        self._named: dict[tuple[str, str], str] = {}  # (namespace, ExplainedModel) -> the InferenceService it names
        self._explained_by: dict[tuple[str, str], set[str]] = {}  # (namespace, InferenceService) -> ExplainedModels
        self._guard = threading.Lock()

    def observe(self, event_type: str | None, body: dict[str, Any]) -> None:
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        named = ((body.get("spec") or {}).get("predictor") or {}).get("inferenceServiceName")
        with self._guard:
            before = self._named.pop((namespace, name), None)
            if before is not None:
                explained_by = self._explained_by.get((namespace, before), set())
                explained_by.discard(name)
                if not explained_by:
                    self._explained_by.pop((namespace, before), None)
            if event_type != "DELETED" and named:
                self._named[(namespace, name)] = str(named)
                self._explained_by.setdefault((namespace, str(named)), set()).add(name)

    def explaining(self, namespace: str, inference_service: str) -> list[str]:
        with self._guard:
            return sorted(self._explained_by.get((namespace, inference_service), ()))


def _owners_of(body: dict[str, Any]) -> list[str]:
    """The ExplainedModels that own this object (it is their child)."""
    return [
        ref["name"]
        for ref in (body.get("metadata") or {}).get("ownerReferences") or []
        if ref.get("kind") == "ExplainedModel" and ref.get("apiVersion", "").startswith(f"{GROUP}/")
    ]


class ChildEvents:
    """What the children's watches hand on (informer.py), from their threads: the ExplainedModels an event
    concerns go in the work queue. Those are the child's owners, and, for an InferenceService, the ExplainedModels
    that name it as their existing predictor. The operator's own applies (a child of ours with no status yet)
    ask for nothing; deletions, KServe's reports and an existing InferenceService appearing do."""

    def __init__(self, queue: WorkQueue, existing: ExistingPredictors):
        self._queue = queue
        self._existing = existing

    def __call__(self, event_type: str | None, body: dict[str, Any], _before: dict[str, Any] | None = None) -> None:
        owners = _owners_of(body)
        if event_type in ("ADDED", "MODIFIED") and not body.get("status") and owners:
            return
        meta = body.get("metadata") or {}
        namespace = str(meta.get("namespace"))
        explaining = self._existing.explaining(namespace, str(meta.get("name"))) if body.get("kind") == "InferenceService" else []
        for parent in owners + [name for name in explaining if name not in owners]:
            self._queue.add((namespace, parent))


@kopf.on.probe(id="periodicCheck", errors=kopf.ErrorsMode.PERMANENT)
async def periodic_check_alive(memo: kopf.Memo, **_: Any) -> int:
    """Answered on kopf's event loop, so a stuck loop fails the probe by not answering; workers that finish no
    reconcile while names wait, or a periodic check that has stopped making progress, fail it with a 500. The
    value is how many passes the periodic check has made."""
    workers: Workers | None = memo.get("workers")
    stuck = workers.stuck_for() if workers is not None else None
    if stuck is not None:
        raise kopf.PermanentError(f"no reconcile has finished for {stuck:.0f} s while ExplainedModels wait for one")
    resync: PeriodicResync | None = memo.get("resync")
    if resync is None:
        return 0
    stuck = resync.stuck_for()
    if stuck is not None:
        raise kopf.PermanentError(f"the periodic check has made no progress for {stuck:.0f} s past its deadline")
    return resync.passes
