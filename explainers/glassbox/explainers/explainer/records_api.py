"""The records over HTTP, for the caller who kept an answer's record id and for the auditor:

    GET /glassbox/v1/models/NAME/records/ID     one record (404 when this model has none by that id)
    GET /glassbox/v1/models/NAME/records?since=&until=&request_id=&input_digest=&method=&outcome=&limit=&after=
        {"records": [...], "next": "?...after=ID" or null}: oldest first, `limit` (at most 1000) a page
    GET /glassbox/v1/models/NAME/records.jsonl?since=&until=&...   every matching record, one JSON a line,
        oldest first, streamed (an export for an auditor's tools)

    GET    /glassbox/v1/models/NAME/jobs/ID   a job's state; when done, its record and explanation
    DELETE /glassbox/v1/models/NAME/jobs/ID   cancel it (a finished job stays as it is)

`since` and `until` are RFC 3339 times (2026-12-03T10:00:00Z) or unix seconds. Reading the query
parameters is a pure function, so what is refused, and why, is tested without a server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from glassbox.explainers.explainer.recording import Recorder, iso_time
from glassbox.explainers.records.errors import RecordQueryError, RecordStoreError
from glassbox.explainers.records.jobs import DONE, Job, JobQueue
from glassbox.explainers.records.store import MOST_PER_PAGE, Record, RecordQuery

QUERY_PARAMETERS = ("since", "until", "request_id", "input_digest", "method", "outcome", "limit", "after")


def record_json(record: Record) -> dict[str, Any]:
    """A record as the API answers it (camelCase, times in RFC 3339)."""
    answer = {
        "id": record.id,
        "created": iso_time(record.created),
        "model": record.model,
        "modelDigest": record.model_digest,
        "explainedModel": record.explained_model,
        "generation": record.generation,
        "method": record.method,
        "settings": record.settings,
        "inputDigest": record.input_digest,
        "answerKey": record.answer_key,
        "requestId": record.request_id,
        "outcome": record.outcome,
        "seconds": round(record.seconds, 6),
        "predictorCalls": record.predictor_calls,
        "predictorRows": record.predictor_rows,
        "explanation": record.explanation,
    }
    if record.input is not None:
        answer["input"] = record.input
    return answer


def _time(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise RecordQueryError(
                f"{name} must be an RFC 3339 time (2026-12-03T10:00:00Z) or unix seconds, got {value[:40]!r}"
            ) from None
    if not math.isfinite(seconds):
        raise RecordQueryError(f"{name} must be a finite time, got {value[:40]!r}")
    return seconds


def query_from_params(params: Mapping[str, str]) -> RecordQuery:
    """The audit query a request's parameters ask for; RecordQueryError (400) naming what is wrong."""
    unknown = sorted(set(params) - set(QUERY_PARAMETERS))
    if unknown:
        raise RecordQueryError(f"unknown query parameters {unknown}; the records take {list(QUERY_PARAMETERS)}")
    limit = params.get("limit", "100")
    if not limit.isdigit():
        raise RecordQueryError(f"limit must be a whole number from 1 to 1000, got {limit[:40]!r}")
    return RecordQuery(
        since=_time("since", params["since"]) if "since" in params else None,
        until=_time("until", params["until"]) if "until" in params else None,
        request_id=params.get("request_id"),
        input_digest=params.get("input_digest"),
        method=params.get("method"),
        outcome=params.get("outcome"),
        limit=int(limit),
        after=params.get("after"),
    )


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


Endpoint = Callable[[Request], Awaitable[Response]]


def _answering_errors(own_model: str, kept: str, endpoint: Endpoint) -> Endpoint:
    """`endpoint` for this explainer's model only (another's is a 404 naming both), with a query it may not
    make answered 4xx and a failing store 503, each naming the problem."""

    async def answered(request: Request) -> Response:
        model = request.path_params["model"]
        if model != own_model:
            return _error(404, f"this explainer keeps the {kept} of model {own_model!r}, not {model[:100]!r}")
        try:
            return await endpoint(request)
        except RecordQueryError as error:
            return _error(error.status, str(error))
        except RecordStoreError as error:
            return _error(503, f"the records store failed: {error}")

    return answered


def records_endpoints(recorder: Recorder) -> tuple[Endpoint, Endpoint, Endpoint]:
    """The GET endpoints over one model's records: one record, a page of an audit query, and an export."""
    model = recorder.model

    async def one(request: Request) -> Response:
        record_id = request.path_params["record_id"]
        found = await asyncio.to_thread(recorder.store.get, model, record_id)
        if found is None:
            return _error(404, f"model {model!r} has no record {record_id!r}")
        return JSONResponse(content=record_json(found))

    async def page(request: Request) -> Response:
        params = dict(request.query_params)
        query = query_from_params(params)
        found = await asyncio.to_thread(recorder.store.query, model, query)
        following = "?" + urlencode({**params, "after": found[-1].id}) if len(found) == query.limit else None
        return JSONResponse(content={"records": [record_json(r) for r in found], "next": following})

    async def export(request: Request) -> Response:
        params = dict(request.query_params)
        paging = sorted({"limit", "after"} & set(params))
        if paging:
            return _error(400, f"the export streams every matching record: leave out {paging}")
        first = query_from_params({**params, "limit": str(MOST_PER_PAGE)})
        found = await asyncio.to_thread(recorder.store.query, model, first)

        async def lines() -> AsyncIterator[bytes]:
            page = found
            while page:
                for record in page:
                    yield (json.dumps(record_json(record)) + "\n").encode()
                if len(page) < MOST_PER_PAGE:
                    return
                following = dataclasses.replace(first, after=page[-1].id)
                page = await asyncio.to_thread(recorder.store.query, model, following)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return (
        _answering_errors(model, "records", one),
        _answering_errors(model, "records", page),
        _answering_errors(model, "records", export),
    )


def job_json(job: Job, record: Record | None = None) -> dict[str, Any]:
    """A job as the API answers it; a done job's answer is its record's explanation."""
    answer: dict[str, Any] = {
        "id": job.id,
        "state": job.state,
        "created": iso_time(job.created),
        "attempts": job.attempts,
    }
    if job.reason is not None:
        answer["reason"] = job.reason
    if job.record_id is not None:
        answer["record"] = job.record_id
    if record is not None and record.explanation is not None:
        answer["explanation"] = record.explanation
    return answer


def jobs_endpoints(queue: JobQueue, recorder: Recorder) -> tuple[Endpoint, Endpoint]:
    """GET a job's state (with its explanation once done), and DELETE to cancel it."""
    model = queue.model

    async def state(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        job = await asyncio.to_thread(queue.get, job_id)
        if job is None:
            return _error(404, f"model {model!r} has no job {job_id!r}")
        record = None
        if job.state == DONE and job.record_id is not None:
            record = await asyncio.to_thread(recorder.store.get, model, job.record_id)
        return JSONResponse(content=job_json(job, record))

    async def cancel(request: Request) -> Response:
        job = await asyncio.to_thread(queue.cancel, request.path_params["job_id"])
        return JSONResponse(content=job_json(job))

    return _answering_errors(model, "jobs", state), _answering_errors(model, "jobs", cancel)
