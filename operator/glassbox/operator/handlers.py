"""The kopf handlers. kopf watches; the handlers only keep what the watches say (the watch caches) and put the
ExplainedModels that need a reconcile in the work queue, whose threads reconcile them (workqueue.py). Every
handler is a coroutine run on kopf's event loop and returns in microseconds: none waits in kopf's thread pool
behind another, and none asks kopf to write anything (no progress or diff-base annotations: whether a spec
was reconciled is its generation against the status's observedGeneration).

The Reconciler, the caches, the queue and its workers, and the periodic check live in kopf's operator-wide
`memo`, set by `glassbox operator`. No handler here needs a finalizer, so an ExplainedModel (and its
namespace) can be deleted while the operator is stopped.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import kopf

from glassbox.contract.api import API_VERSION, GROUP, KIND, PLURAL, VERSION
from glassbox.operator.backoff import API_RETRY_FIRST_SECONDS, API_RETRY_MAX_SECONDS, retry_delay
from glassbox.operator.builders import MANAGED_BY, MANAGED_BY_LABEL
from glassbox.operator.kube import KubeApi
from glassbox.operator.reconcile import Reconciler, reconcile_lane
from glassbox.operator.resync import PeriodicResync
from glassbox.operator.watch_cache import WatchCache
from glassbox.operator.workqueue import Key, Result, Workers, WorkQueue

# The same Warning Event for the same object at most this often.
WARNING_EVENT_INTERVAL_SECONDS = 600.0
# Every API call of kopf's gives up after this long (the watch streams have their own, longer limits).
API_REQUEST_TIMEOUT_SECONDS = 30.0
API_CONNECT_TIMEOUT_SECONDS = 10.0


class EndlessBackoff:
    """kopf's `error_backoffs`: a fresh, never-ending series of delays for every request, as client-go's
    reflectors retry. kopf's default series gives up after about 54 s, and a watch stream that gives up stops
    the whole operator: an API server that refuses connections, or answers 403 while its authorizer warms up
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


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf builds, for every watch event, a deep copy of the object to diff against the last handled one, which
    only its change handlers (create, update, resume) read. The operator has none: nothing is built or kept.
    (Measured: that copy was a third of kopf's event loop while it took in 1,000 objects after a restart.)"""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class _QuietEventHandlers(logging.Filter):
    """kopf logs each handler's success at INFO: for the event handlers, a line per watch event of every object
    (thousands at start-up), saying nothing the workers' own line ("reconciled ExplainedModel ...") does not."""

    QUIET = tuple(f"Handler '{name}' succeeded." for name in ("explained_model_event", "kserve_object_changed"))

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.getMessage() in self.QUIET)


class _TransientFailuresAreWarnings(logging.Filter):
    """kopf logs a handler's TemporaryError, and each retried API request of its own, at ERROR; an expected,
    retried failure is a warning. What is not retried stays an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.levelno == logging.ERROR and ("failed temporarily" in message or "failed; will retry" in message):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _reconciler(memo: kopf.Memo) -> Reconciler:
    return memo["reconciler"]  # type: ignore[no-any-return]


def reconcile_queued(reconciler: Reconciler) -> Callable[[Key], Result]:
    """The workers' reconcile of one name: an invalid spec waits for a new one (its status says why); KServe
    missing or a child's write that failed is tried again later; API errors raise, and are tried again too."""

    def run(key: Key) -> Result:
        outcome = reconciler.reconcile_named(*key)
        if outcome is None or outcome.problems or not outcome.retry_reason:
            return Result()
        return Result(retry=True, reason=outcome.retry_reason)

    return run


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # kopf stores no progress and no diff base: every handler is an event handler (older versions of Glassbox
    # left kopf's annotations under glassbox.dev/ on objects; nothing reads them now).
    settings.persistence.diffbase_storage = NoDiffBase()
    # No handler needs it; kopf only uses this name to remove the finalizer older versions added.
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    settings.peering.standalone = True
    # Warnings reach objects as Events only through EventPoster (rate-limited), not from kopf's log lines.
    settings.posting.enabled = False
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = API_REQUEST_TIMEOUT_SECONDS
    settings.networking.connect_timeout = API_CONNECT_TIMEOUT_SECONDS
    settings.networking.error_backoffs = EndlessBackoff()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = API_CONNECT_TIMEOUT_SECONDS
    settings.execution.max_workers = 2  # only the start-up and clean-up handlers run in kopf's thread pool
    for handler in logging.getLogger().handlers:  # kopf's own log lines come from many loggers, all to the root's handler
        handler.addFilter(_TransientFailuresAreWarnings())
        handler.addFilter(_QuietEventHandlers())


@kopf.on.startup()
def start_reconciling(memo: kopf.Memo, **_: Any) -> None:
    """Starts the workers and the periodic check's thread, with kopf's context (so that they can post Events)."""
    workers: Workers | None = memo.get("workers")
    if workers is not None:
        contextvars.copy_context().run(workers.start)
    resync: PeriodicResync | None = memo.get("resync")
    if resync is not None:
        contextvars.copy_context().run(resync.start)


@kopf.on.cleanup()
def stop_reconciling(memo: kopf.Memo, **_: Any) -> None:
    resync: PeriodicResync | None = memo.get("resync")
    if resync is not None:
        resync.stop()
    workers: Workers | None = memo.get("workers")
    if workers is not None:
        workers.stop()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def explained_model_event(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Every event of every ExplainedModel, kopf's listings included (type None): kept, and queued as
    `reconcile_lane` decides. A deleted one is forgotten; its children go with it (owner references)."""
    seen = dict(body)
    meta = seen.get("metadata") or {}
    key = (str(meta.get("namespace")), str(meta.get("name")))
    parents: WatchCache = memo["parents"]
    queue: WorkQueue = memo["queue"]
    event_type = event.get("type")
    _known, before = parents.get(API_VERSION, KIND, *key)
    parents.observe(event_type, seen)
    existing: ExistingPredictors = memo["existing"]
    existing.observe(event_type, seen)
    if event_type == "DELETED":
        queue.forget(key)
        _reconciler(memo).forget(*key)
        return
    lane = reconcile_lane(event_type, before, seen)
    if lane is not None:
        queue.add(key, urgent=lane == "now")


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


def _owners_of(body: kopf.Body) -> list[str]:
    """The ExplainedModels that own this object (it is their child)."""
    return [
        ref["name"]
        for ref in (body.get("metadata") or {}).get("ownerReferences") or []
        if ref.get("kind") == "ExplainedModel" and ref.get("apiVersion", "").startswith(f"{GROUP}/")
    ]


def _parents_of(body: kopf.Body, explaining: ExistingPredictors) -> list[str]:
    meta = body.get("metadata") or {}
    owners = _owners_of(body)
    return owners + [
        name for name in explaining.explaining(str(meta.get("namespace")), str(meta.get("name"))) if name not in owners
    ]


@kopf.on.event("serving.kserve.io", "v1beta1", "inferenceservices")
@kopf.on.event("serving.kserve.io", "v1alpha1", "inferencegraphs", labels={MANAGED_BY_LABEL: MANAGED_BY})
async def kserve_object_changed(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    """Our children, and InferenceServices that ExplainedModels name as existing: kept, and their parents queued."""
    cache: WatchCache | None = memo.get("children")
    if cache is not None:  # every event, kopf's listing and our own applies included: the reconciler reads from it
        cache.observe(event.get("type"), dict(body))
    if event.get("type") is None:
        # kopf lists again whenever a watch restarts (at start, every server timeout, after an outage): changes
        # made while it was down arrive only in that listing, and a deletion not at all. One pass over every
        # ExplainedModel covers them.
        resync: PeriodicResync | None = memo.get("resync")
        if resync is not None:
            resync.nudge()
        return
    if event.get("type") in ("ADDED", "MODIFIED") and not body.get("status") and _owners_of(body):
        # Our own apply to our child (it writes no status): nothing new to mirror. Deletions,
        # KServe's reports and an existing InferenceService appearing still pass.
        return
    queue: WorkQueue = memo["queue"]
    namespace = str((body.get("metadata") or {}).get("namespace"))
    for parent in _parents_of(body, memo["existing"]):
        queue.add((namespace, parent))


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
