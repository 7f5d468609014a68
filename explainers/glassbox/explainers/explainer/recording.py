"""The explainer's records: an explanation is answered from its record when one holds its answer, computed
once when identical requests arrive together, and recorded when it ends, well or not.

The store is reached off the event loop. A store that fails costs an explanation nothing (it is answered,
the failure counted and logged) unless records are strict: then an explanation that cannot be recorded is
not answered (503), because an unrecorded decision is what strict records exist to prevent.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from kserve.protocol.infer_type import InferRequest

from glassbox.explainers.explainer import metrics
from glassbox.explainers.records.errors import RecordStoreError
from glassbox.explainers.records.store import PostgresRecords, Record, SqliteRecords, SqlRecords
from glassbox.explainers.serving.errors import http_error

log = logging.getLogger(__name__)
Result = TypeVar("Result")
RETENTION_PERIOD_SECONDS = 600.0
# The answer's field that says which record holds it, and whether it was served from that record; the
# response header that says the same to a client that reads no body (a proxy, a cache, a log).
RECORD_FIELD = "record"
RECORD_HEADER = "glassbox-record"

# What an explanation notes for its own response, beyond its body: the record header's value, and for a
# job, 202 and its Location. Set by ExplanationResponse around each request, filled in by the explanation
# (a dict, so a task copied from the request's context fills in the same one).
_RESPONSE_NOTES: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("response_notes", default=None)


def tell_response(record: dict[str, Any]) -> None:
    """Let the response's header say which record holds this answer, and whether it was served from it."""
    notes = _RESPONSE_NOTES.get()
    if notes is not None:
        notes[RECORD_HEADER] = f"{'reused' if record['reused'] else 'new'}; id={record['id']}"


def answer_later(location: str) -> None:
    """Answer this request 202 Accepted, with the Location where its job's state (and then answer) will be."""
    notes = _RESPONSE_NOTES.get()
    if notes is not None:
        notes["status"] = 202
        notes["location"] = location


class ExplanationResponse:
    """ASGI: gives an explanation's response what the explanation noted: `glassbox-record: reused; id=...`
    (or `new; id=...`), and for a job, status 202 with its `Location`."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        notes: dict[str, Any] = {}
        token = _RESPONSE_NOTES.set(notes)

        async def noted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and notes and message.get("status") == 200:
                headers = list(message.get("headers", []))
                if RECORD_HEADER in notes:
                    headers.append((RECORD_HEADER.encode(), str(notes[RECORD_HEADER]).encode()))
                if "location" in notes:
                    headers.append((b"location", str(notes["location"]).encode()))
                message = {**message, "headers": headers, "status": notes.get("status", 200)}
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            _RESPONSE_NOTES.reset(token)


@dataclass(frozen=True)
class RecordSettings:
    """Where records live (a SQLite file, or PostgreSQL's connection string) and what they keep."""

    path: Path | None = None
    postgres_url: str | None = field(default=None, repr=False)  # holds a password: never printed
    store_inputs: bool = False
    strict: bool = False
    retention_days: float | None = None
    model_digest: str | None = None
    # Which ExplainedModel (namespace/name), and the generation of its spec this explainer was deployed from.
    explained_model: str | None = None
    generation: int | None = None


def iso_time(seconds: float) -> str:
    """Unix seconds as an RFC 3339 time in UTC, to the millisecond."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_field(record: Record, reused: bool) -> dict[str, Any]:
    """What an answer says of its record: its id (GET it later), when it was made, and whether this answer came from it."""
    return {"id": record.id, "created": iso_time(record.created), "reused": reused}


def open_store(settings: RecordSettings) -> SqlRecords:
    if settings.postgres_url:
        return PostgresRecords(settings.postgres_url)
    if settings.path is None:
        raise RecordStoreError("records need a store: a SQLite file (--records_path) or PostgreSQL (--records_postgres)")
    return SqliteRecords(settings.path)


class Recorder:
    """One model's records: lookups, writes and retention, each off the event loop, timed and counted."""

    def __init__(self, model: str, settings: RecordSettings, store: SqlRecords | None = None):
        self.model = model
        self.settings = settings
        self.store = store if store is not None else open_store(settings)
        self._in_flight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._stop = threading.Event()
        self._retention: threading.Thread | None = None

    async def answer(self, key: str) -> Record | None:
        """The record that holds this key's answer, or None (also when the store failed and records are not strict)."""
        found = await self._call("read", self.store.answer, self.model, key)
        return found if isinstance(found, Record) else None

    async def write(self, record: Record) -> bool:
        """Keep `record`; whether it was kept (a failure raises 503 only when records are strict)."""
        kept = await self._call("write", self.store.write, record) is not _FAILED
        if kept:
            metrics.RECORDS_WRITTEN.labels(self.model, record.outcome).inc()
        return kept

    async def once(self, key: str, compute: Callable[[], Awaitable[dict[str, Any]]]) -> tuple[dict[str, Any], bool]:
        """`compute()`'s answer, computed once for identical requests in flight together: (answer, shared)."""
        running = self._in_flight.get(key)
        if running is not None:
            metrics.RECORD_LOOKUPS.labels(self.model, "shared").inc()
            return await asyncio.shield(running), True
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            answer = await compute()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved here: a future nobody else awaited must not warn
            raise
        else:
            future.set_result(answer)
            return answer, False
        finally:
            del self._in_flight[key]

    async def recorded(
        self, record: Record, fresh: bool, compute: Callable[[], Awaitable[tuple[dict[str, Any], int, int]]]
    ) -> dict[str, Any]:
        """The answer `record` identifies (its answer key): from the record that holds it unless `fresh`, else
        `compute()`d (answer, predictor calls, rows), once for identical requests in flight, and recorded
        (`record` completed with how it ended). The answer's `record` field and header say which."""
        started = time.time()

        async def compute_and_record() -> dict[str, Any]:
            try:
                answer, calls, rows = await compute()
            except Exception as error:
                await self.write(
                    replace(record, created=started, outcome=metrics.outcome_of(error), seconds=time.time() - started)
                )
                raise
            done = replace(
                record,
                created=started,
                outcome=metrics.OK,
                seconds=time.time() - started,
                predictor_calls=calls,
                predictor_rows=rows,
                explanation=answer,
            )
            kept = await self.write(done)
            return {**answer, **({RECORD_FIELD: record_field(done, reused=False)} if kept else {})}

        if fresh:
            metrics.RECORD_LOOKUPS.labels(self.model, "miss").inc()
            return told(await compute_and_record())
        found = await self.answer(record.answer_key)
        if found is not None and found.explanation is not None:
            metrics.RECORD_LOOKUPS.labels(self.model, "hit").inc()
            return told({**found.explanation, RECORD_FIELD: record_field(found, reused=True)})
        answer, shared = await self.once(record.answer_key, compute_and_record)
        if not shared:
            metrics.RECORD_LOOKUPS.labels(self.model, "miss").inc()
        elif RECORD_FIELD in answer:
            answer = {**answer, RECORD_FIELD: {**answer[RECORD_FIELD], "reused": True}}
        return told(dict(answer))

    def start_retention(self, period_seconds: float = RETENTION_PERIOD_SECONDS) -> None:
        """Delete records past the retention limit now and every `period_seconds`, on a thread of its own."""
        days = self.settings.retention_days
        if days is None or self._retention is not None:
            return

        def prune() -> None:
            while True:
                try:
                    deleted = self.store.delete_older_than(self.model, time.time() - days * 86400)
                    if deleted:
                        log.info("deleted %d explanation records older than %g days", deleted, days)
                except RecordStoreError as error:
                    metrics.RECORD_STORE_ERRORS.labels(self.model, "retention").inc()
                    log.warning("could not delete old explanation records: %s", error)
                if self._stop.wait(period_seconds):
                    return

        self._retention = threading.Thread(target=prune, name="records-retention", daemon=True)
        self._retention.start()

    def close(self) -> None:
        self._stop.set()
        self.store.close()

    async def _call(self, operation: str, function: Callable[..., Result], *args: Any) -> Result | object:
        started = time.perf_counter()
        try:
            return await asyncio.to_thread(function, *args)
        except RecordStoreError as error:
            metrics.RECORD_STORE_ERRORS.labels(self.model, operation).inc()
            if self.settings.strict:
                raise http_error(
                    503, f"the explanation records store failed ({error}); records are strict, so nothing is answered unrecorded"
                ) from None
            log.warning("explanation records: %s failed, answering without it: %s", operation, error)
            return _FAILED
        finally:
            metrics.RECORD_STORE_SECONDS.labels(self.model, operation).observe(time.perf_counter() - started)


_FAILED = object()


def told(answer: dict[str, Any]) -> dict[str, Any]:
    """The answer, its record also told to the response's header."""
    if RECORD_FIELD in answer:
        tell_response(answer[RECORD_FIELD])
    return answer


def request_id_of(payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None) -> str | None:
    """The caller's id for the request: its `x-request-id` header, else the body's `id` (v1 or v2)."""
    for name, value in (headers or {}).items():
        if name.lower() == "x-request-id" and value:
            return str(value)[:200]
    named = payload.id if isinstance(payload, InferRequest) else payload.get("id") if isinstance(payload, dict) else None
    return str(named)[:200] if named not in (None, "") else None


def jsonable_input(instances: np.ndarray | list[str]) -> Any:
    """The instances as a record keeps them (when the spec asks to keep inputs)."""
    return instances if isinstance(instances, list) else np.asarray(instances).tolist()
