"""How the predictor and the explainer run: kserve's ModelServer, on uvloop.

kserve's `--event-loop auto` says it uses uvloop when installed, but
`ModelServer.start` calls `asyncio.run` under the default policy, so requests
are served by asyncio's pure-Python loop; setting the policy first gives them
uvloop. A log line per request (uvicorn's access line and kserve's timing
lines) is the right default where requests are few, not on a predictor that an
explainer calls a hundred times per explanation: there kserve's
`--enable_latency_logging` is off by default and turns both off; the request
counters on /metrics say what was served. The predictor also takes binary v2
inference requests the short way (see binary_infer_route).
"""

from __future__ import annotations

import asyncio
import logging

import kserve
import uvloop
from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from glassbox.explainers.binary_infer_route import BinaryInferRoute


async def error_as_kserve_writes_it(_: Request, error: Exception) -> JSONResponse:
    """`{"error": message}`, the shape of kserve's own error answers, for the errors Glassbox raises too."""
    assert isinstance(error, HTTPException)
    return JSONResponse(status_code=error.status_code, content={"error": error.detail}, headers=error.headers)


def serve(model: kserve.Model, http_port: int, grpc_port: int, *, log_each_request: bool, binary_infer_route: bool = False) -> None:
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # kserve configures `asyncio.get_event_loop()` before `asyncio.run` makes the loop it serves on;
    # under uvloop's policy there must be one to get.
    asyncio.set_event_loop(asyncio.new_event_loop())
    if not log_each_request:
        for name in ("uvicorn.access", kserve.logging.KSERVE_TRACE_LOGGER_NAME):
            logging.getLogger(name).setLevel(logging.WARNING)
    kserve.model_server.app.add_exception_handler(HTTPException, error_as_kserve_writes_it)
    server = kserve.ModelServer(http_port=http_port, grpc_port=grpc_port, enable_latency_logging=log_each_request)
    if binary_infer_route and server.workers == 1:
        # kserve hands uvicorn this name (an import string, or the app itself) when it starts.
        kserve.model_server.FASTAPI_APP_IMPORT_STRING = BinaryInferRoute(kserve.model_server.app, server.dataplane)
    server.start([model])
