"""The kopf handlers. Each one is thin: it hands the object to the Reconciler
and turns the outcome into kopf's terms (retry later, or wait for a new spec).

The Reconciler and the periodic check live in kopf's operator-wide `memo`, set by
`glassbox operator`. No handler here needs a finalizer, so an ExplainedModel (and
its namespace) can be deleted while the operator is stopped.
"""

from __future__ import annotations

import contextvars
import datetime
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import kopf

from glassbox.contract.api import GROUP, PLURAL, VERSION
from glassbox.operator.backoff import API_RETRY_FIRST_SECONDS, API_RETRY_MAX_SECONDS, retry_delay
from glassbox.operator.builders import MANAGED_BY, MANAGED_BY_LABEL
from glassbox.operator.child_cache import ChildCache
from glassbox.operator.kube import KubeError
from glassbox.operator.reconcile import Outcome, Reconciler
from glassbox.operator.resync import PeriodicResync
from glassbox.operator.status import describe_problems

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


_warnings = WarningLimiter()


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def post_warning(body: dict[str, Any], reason: str, message: str) -> None:
    if _warnings.allow(str((body.get("metadata") or {}).get("uid")), reason):
        kopf.warn(cast(kopf.Body, body), reason=reason, message=message)


def post_normal(body: dict[str, Any], reason: str, message: str) -> None:
    """An Event that needs no action (drift ended)."""
    if _warnings.allow(str((body.get("metadata") or {}).get("uid")), reason):
        kopf.info(cast(kopf.Body, body), reason=reason, message=message)


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


def _raise_for(outcome: Outcome, retry: int) -> None:
    if outcome.problems:
        raise kopf.PermanentError(f"invalid spec, waiting for it to change: {describe_problems(outcome.problems)}")
    if outcome.retry_reason:
        raise kopf.TemporaryError(outcome.retry_reason, delay=retry_delay(retry))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress and the last-handled spec live in annotations under our own
    # prefix, so nothing of kopf's leaks into the status API.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    # No handler needs it; kopf only uses this name to remove the finalizer older versions added.
    settings.persistence.finalizer = f"{GROUP}/kopf-finalizer"
    settings.peering.standalone = True
    # Warnings reach objects as Events only through post_warning (rate-limited), not from kopf's log lines.
    settings.posting.enabled = False
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = API_REQUEST_TIMEOUT_SECONDS
    settings.networking.connect_timeout = API_CONNECT_TIMEOUT_SECONDS
    settings.networking.error_backoffs = EndlessBackoff()
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = API_CONNECT_TIMEOUT_SECONDS
    settings.execution.max_workers = 16
    for handler in logging.getLogger().handlers:  # kopf's own log lines come from many loggers, all to the root's handler
        handler.addFilter(_TransientFailuresAreWarnings())


@kopf.on.startup()
def start_periodic_check(memo: kopf.Memo, **_: Any) -> None:
    """Starts the one thread that rechecks every ExplainedModel (with kopf's context, so it can post Events)."""
    resync: PeriodicResync | None = memo.get("resync")
    if resync is not None:
        contextvars.copy_context().run(resync.start)


@kopf.on.cleanup()
def stop_periodic_check(memo: kopf.Memo, **_: Any) -> None:
    resync: PeriodicResync | None = memo.get("resync")
    if resync is not None:
        resync.stop()


def _reconcile_for_kopf(body: kopf.Body, memo: kopf.Memo, retry: int) -> None:
    try:
        outcome = _reconciler(memo).reconcile(dict(body))
    except KubeError as error:
        raise kopf.TemporaryError(str(error), delay=retry_delay(retry, error.retry_after)) from error
    _raise_for(outcome, retry)


@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def reconcile_explained_model(body: kopf.Body, memo: kopf.Memo, retry: int, **_: Any) -> None:
    """Create, resume and spec changes alike: the reconcile is level-based (kopf also calls create for an
    object whose kopf annotations were wiped by `kubectl replace`)."""
    _reconcile_for_kopf(body, memo, retry=retry)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def forget_explained_model(name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Children are garbage-collected through owner references; only the lock is ours to drop."""
    _reconciler(memo).forget(namespace or "", name)


@kopf.index(GROUP, VERSION, PLURAL)
def explained_models_by_existing_predictor(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str | None, str], str] | None:
    """(namespace, InferenceService name) -> the ExplainedModels that explain that existing InferenceService."""
    existing = (spec.get("predictor") or {}).get("inferenceServiceName")
    return {(namespace, existing): name} if existing else None


def _owners_of(body: kopf.Body) -> list[str]:
    """The ExplainedModels that own this object (it is their child)."""
    return [
        ref["name"]
        for ref in (body.get("metadata") or {}).get("ownerReferences") or []
        if ref.get("kind") == "ExplainedModel" and ref.get("apiVersion", "").startswith(f"{GROUP}/")
    ]


def _parents_of(body: kopf.Body, index: kopf.Index[tuple[str | None, str], str]) -> list[str]:
    meta = body.get("metadata") or {}
    owners = _owners_of(body)
    key = (meta.get("namespace"), str(meta.get("name")))
    return owners + [name for name in index.get(key, []) if name not in owners]


def _reconcile_parents(body: kopf.Body, event: kopf.RawEvent, parents: list[str], memo: kopf.Memo, logger: kopf.Logger) -> None:
    """A child or an explained InferenceService changed (KServe reported status) or vanished: reconcile its parents."""
    namespace = str((body.get("metadata") or {}).get("namespace"))
    resync: PeriodicResync | None = memo.get("resync")
    for parent in parents:
        try:
            _reconciler(memo).reconcile_named(namespace, parent)
        except KubeError as error:
            if resync is None:
                logger.warning("reconcile of ExplainedModel %s failed: %s", parent, error)
                continue
            delay = resync.retry_soon(namespace, parent, error.retry_after)
            logger.warning("reconcile of ExplainedModel %s failed, retrying in %.0f s: %s", parent, delay, error)
        else:
            if resync is not None:
                resync.succeeded(namespace, parent)


@kopf.on.event("serving.kserve.io", "v1beta1", "inferenceservices")
@kopf.on.event("serving.kserve.io", "v1alpha1", "inferencegraphs", labels={MANAGED_BY_LABEL: MANAGED_BY})
def kserve_object_changed(body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, logger: kopf.Logger, **kwargs: Any) -> None:
    """Our children, and InferenceServices that ExplainedModels name as existing."""
    cache: ChildCache | None = memo.get("children")
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
    index: kopf.Index[tuple[str | None, str], str] = kwargs["explained_models_by_existing_predictor"]
    parents = _parents_of(body, index)
    if parents:
        _reconcile_parents(body, event, parents, memo, logger)


@kopf.on.probe(id="periodicCheck", errors=kopf.ErrorsMode.PERMANENT)
async def periodic_check_alive(memo: kopf.Memo, **_: Any) -> int:
    """Answered on kopf's event loop, so a stuck loop fails the probe by not answering; a periodic check
    that has stopped making progress fails it with a 500. The value is how many passes it has made."""
    resync: PeriodicResync | None = memo.get("resync")
    if resync is None:
        return 0
    stuck = resync.stuck_for()
    if stuck is not None:
        raise kopf.PermanentError(f"the periodic check has made no progress for {stuck:.0f} s past its deadline")
    return resync.passes
