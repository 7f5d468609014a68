"""The operator's watches: ExplainedModels, InferenceServices and InferenceGraphs, each kind in each namespace the
operator acts in (or in all), listed and then watched from the listing's resourceVersion by a thread of its
own, as client-go's informers do. Every object goes into a watch cache (watch_cache.py), then every change is
handed on (handlers.py: ExplainedModelEvents and ChildEvents put the ExplainedModels concerned in the work queue).

Why not kopf's watches: kopf turns every object of a listing into an event with its own per-object task,
context and logger, on one event loop. After a restart with a thousand ExplainedModels in place, that loop
took 2 to 3 s to reach a new ExplainedModel's event behind the others and their three thousand children
(bench/README.md). Here a listing is decoded a page at a time and each object costs a dictionary entry.

A listing says what changed while no watch ran, but not one event per change: a relisting (after the watch's
resourceVersion grew too old, or after an outage) is compared with the cache, and only what differs is handed
on: an object new or changed (another resourceVersion) as ADDED or MODIFIED, one the cache holds that the
listing lacks as DELETED. A first listing is handed on whole (event type None) where asked: the
ExplainedModels' is, so that each is reconciled or checked; the children's is not.

Failures are retried with backoff without end (a watch that gives up would leave the operator blind); the
cache is complete for a kind once its first listing is in (`WatchCache.complete`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from glassbox.operator.backoff import API_RETRY_FIRST_SECONDS, API_RETRY_MAX_SECONDS, retry_delay
from glassbox.operator.kube import Gone, KubeApi, KubeError
from glassbox.operator.watch_cache import WatchCache, key_of, revision_of

log = logging.getLogger(__name__)

# (event type, the object, the copy the cache held before it or None): a listing's objects have the type None.
EventSink = Callable[[str | None, dict[str, Any], dict[str, Any] | None], None]


class Informer:
    """One kind in one namespace (None: all), listed then watched by one thread, kept in `cache`."""

    def __init__(
        self,
        api: KubeApi,
        api_version: str,
        kind: str,
        namespace: str | None,
        cache: WatchCache,
        on_event: EventSink,
        hand_on_first_listing: bool = False,
    ):
        self._api = api
        # Whether each object of the first listing is handed on too (as event type None).
        self._hand_on_first_listing = hand_on_first_listing
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self._cache = cache
        self._on_event = on_event
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Set once the first listing is in the cache.
        self.synced = threading.Event()
        self.listings = 0

    def start(self) -> None:
        name = f"glassbox-watch-{self.kind}-{self.namespace or 'all'}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Asks the thread to end, without waiting: it ends at its next event, or with the process (it is a
        daemon), since a watch blocked in a read may wait minutes for one."""
        self._stop.set()

    def _run(self) -> None:
        resource_version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    resource_version = self.relist()
                for event in self._api.watch(self.api_version, self.kind, self.namespace, resource_version):
                    resource_version = self._saw(event) or resource_version
                    if self._stop.is_set():
                        return
                failures = 0  # the server ended the stream on time: resumed from where it was
            except Gone as gone:
                log.info("%s", gone)
                resource_version = None  # listed again at once
            except Exception as error:  # noqa: BLE001 - the watch must outlive anything; retried with backoff
                delay = retry_delay(
                    failures, getattr(error, "retry_after", None), first=API_RETRY_FIRST_SECONDS, cap=API_RETRY_MAX_SECONDS
                )
                failures += 1
                if isinstance(error, KubeError):
                    status = f" (HTTP {error.status})" if error.status else ""
                    log.warning("%s%s; watching again in %.0f s", error, status, delay)
                else:
                    log.exception("the watch of %s objects failed; watching again in %.0f s", self.kind, delay)
                self._stop.wait(delay)

    def _saw(self, event: dict[str, Any]) -> str | None:
        """One watch event kept and handed on; the resourceVersion to resume from after it."""
        body = event.get("object") or {}
        resource_version = (body.get("metadata") or {}).get("resourceVersion")
        if event.get("type") != "BOOKMARK":
            self._keep_and_hand_on(str(event.get("type")), body)
        return str(resource_version) if resource_version else None

    def _keep_and_hand_on(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Into the cache first (a reconcile the event queues reads it from there), then handed on."""
        key = key_of(body)
        before = self._cache.get(*key)[1] if key is not None else None
        self._cache.observe(event_type, body)
        self._hand_on(event_type, body, before)

    def _hand_on(self, event_type: str | None, body: dict[str, Any], before: dict[str, Any] | None) -> None:
        try:
            self._on_event(event_type, body, before)
        except Exception:  # noqa: BLE001 - one object's trouble must not end the watch
            log.exception("handling a %s event of %s failed", event_type, self.kind)

    def relist(self) -> str:
        """Lists every object, a page at a time, into the cache; on a relisting, hands on what changed since the
        cache last heard (on the first, everything, where asked to). Returns the listing's resourceVersion,
        which the watch resumes from."""
        first = self.listings == 0
        listed: set[Any] = set()
        token: str | None = None
        while True:
            # The first listing from the API server's watch cache (a restart lists thousands of objects at once);
            # a relisting, after the watch's version grew too old, consistently (never back in time).
            page, resource_version, token = self._api.list_page(
                self.api_version, self.kind, self.namespace, token, from_watch_cache=first
            )
            for body in page:
                body.setdefault("apiVersion", self.api_version)
                body.setdefault("kind", self.kind)
                key = key_of(body)
                listed.add(key)
                known, held = self._cache.get(*key) if key is not None else (False, None)
                if first:
                    self._cache.observe(None, body)
                    if self._hand_on_first_listing:
                        self._hand_on(None, body, held)
                elif held is None or revision_of(held) != revision_of(body):
                    self._keep_and_hand_on("MODIFIED" if known and held is not None else "ADDED", body)
            if not token:
                break
        listing_revision = int(resource_version) if resource_version.isdigit() else None
        for key, held in self._cache.present(self.api_version, self.kind, self.namespace).items():
            held_revision = revision_of(held)
            older = listing_revision is None or held_revision is None or held_revision <= listing_revision
            if key not in listed and older:  # deleted while no watch ran (not written by the operator since)
                self._keep_and_hand_on("DELETED", held)
        self._cache.mark_complete(self.api_version, self.kind, self.namespace)
        self.listings += 1
        self.synced.set()
        where = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        log.info("listed %d %s objects in %s; watching", len(listed), self.kind, where)
        return resource_version


def informers_for(
    api: KubeApi,
    kinds: Sequence[tuple[str, str]],
    namespaces: Sequence[str],
    cache: WatchCache,
    on_event: EventSink,
    hand_on_first_listing: bool = False,
) -> list[Informer]:
    """One informer per kind per namespace the operator acts in (one per kind for all namespaces when none are named)."""
    scopes: Sequence[str | None] = list(namespaces) or [None]
    return [
        Informer(api, api_version, kind, scope, cache, on_event, hand_on_first_listing)
        for api_version, kind in kinds
        for scope in scopes
    ]
