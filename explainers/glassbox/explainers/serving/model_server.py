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

On SIGTERM uvicorn stops accepting connections at once (so a readiness probe
fails within its next period) and waits for the requests in flight, kserve's
30 s by default: here `longest_request_seconds` (the server's own deadline)
plus DRAIN_MARGIN_SECONDS, so a draining pod answers every request it took.
The operator gives the pods a termination grace period longer still.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import kserve
import uvloop
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from glassbox.contract.server_args import ServerArgs
from glassbox.explainers.serving.binary_infer_route import BinaryInferRoute
from glassbox.explainers.serving.readiness import ReadinessGate, readiness_paths
from glassbox.explainers.serving.request_guard import ASGIApp, RequestGuard
from glassbox.explainers.serving.request_logger import RequestLogger
from glassbox.explainers.serving.server_logging import configure_logging

log = logging.getLogger(__name__)

Arguments = TypeVar("Arguments", bound=ServerArgs)
Settings = TypeVar("Settings", bound=BaseModel)

# After SIGTERM, how long past its longest request a server waits for those in flight.
# Changes kserve's module-level FastAPI app (exception handlers, routes) and FASTAPI_APP_IMPORT_STRING, and
# (the predictor) InferRequest.from_bytes: written for and checked against kserve 0.20 (test_methods_table: a
# process-wide patch meets the version it was written for). Re-read kserve/model_server.py when it moves.
WRITTEN_FOR = ("kserve", "0.20")
DRAIN_MARGIN_SECONDS = 5


async def error_as_kserve_writes_it(_: Request, error: Exception) -> JSONResponse:
    """`{"error": message}`, the shape of kserve's own error answers, for the errors Glassbox raises too."""
    assert isinstance(error, HTTPException)
    return JSONResponse(status_code=error.status_code, content={"error": error.detail}, headers=error.headers)


def describe_invalid_body(path: str, body: object, problems: list[dict[str, Any]]) -> str:
    """What is wrong with a body FastAPI refused, and what would be right."""
    if path.startswith("/v2/") and isinstance(body, dict) and "instances" in body and "inputs" not in body:
        v1_path = path.removeprefix("/v2").removesuffix("/infer") + ":predict"
        return (
            f'{path} takes an Open Inference Protocol (v2) body, {{"inputs": [{{"name", "shape", "datatype", "data"}}]}}; '
            f'this one has "instances", a v1 body: send it to /v1{v1_path}, or send "inputs"'
        )

    # A v2 infer body may be JSON or binary: FastAPI reports the binary alternative too, which says nothing useful.
    def location(problem: dict[str, Any]) -> list[str]:
        return [str(part) for part in problem.get("loc", ())]

    named = [p for p in problems if "bytes" not in location(p)] or problems
    where = "; ".join(
        f"{'.'.join(part for part in location(p) if part not in ('body', 'InferenceRequest')) or 'body'}: {p.get('msg')}"
        for p in named[:5]
    )
    return f"the body does not fit {path}: {where}"


async def invalid_input_named(_: Request, error: Exception) -> JSONResponse:
    """kserve's InvalidInput as kserve answers it (400, `{"error": ...}`), in words that say what would be right,
    and logged in one line, not with a traceback per bad request."""
    message = str(error)
    if message.startswith("Unrecognized request format: "):
        message = f"the body is not JSON this server can read ({message.removeprefix('Unrecognized request format: ')}); send a JSON object with finite numbers"
    log.info("refused a request: %s", message)
    return JSONResponse(status_code=400, content={"error": message})


async def invalid_body_as_kserve_writes_it(request: Request, error: Exception) -> JSONResponse:
    """FastAPI's 422 for a body that does not fit the route, as `{"error": message}` naming what would."""
    assert isinstance(error, RequestValidationError)
    problems = [dict(p) for p in error.errors()]
    return JSONResponse(status_code=422, content={"error": describe_invalid_body(request.url.path, error.body, problems)})


def serve(
    model: kserve.Model,
    kserve_flags: argparse.Namespace,
    *,
    max_body_bytes: int,
    longest_request_seconds: float,
    binary_infer_route: bool = False,
    not_ready: Callable[[], str | None] | None = None,
    middleware: Callable[[ASGIApp], ASGIApp] | None = None,
    request_logger_url: str | None = None,
) -> None:
    """Serve `model` on the ports and with the request logging KServe's own flags (`kserve_flags`) say."""
    log_each_request = bool(kserve_flags.enable_latency_logging)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    # kserve configures `asyncio.get_event_loop()` before `asyncio.run` makes the loop it serves on;
    # under uvloop's policy there must be one to get.
    asyncio.set_event_loop(asyncio.new_event_loop())
    if not log_each_request:
        for name in ("uvicorn.access", kserve.logging.KSERVE_TRACE_LOGGER_NAME):
            logging.getLogger(name).setLevel(logging.WARNING)
    kserve.model_server.app.add_exception_handler(HTTPException, error_as_kserve_writes_it)
    kserve.model_server.app.add_exception_handler(RequestValidationError, invalid_body_as_kserve_writes_it)
    kserve.model_server.app.add_exception_handler(InvalidInput, invalid_input_named)
    server = kserve.ModelServer(
        http_port=kserve_flags.http_port,
        grpc_port=kserve_flags.grpc_port,
        enable_latency_logging=log_each_request,
        grace_period=math.ceil(longest_request_seconds + DRAIN_MARGIN_SECONDS),
    )
    if server.workers != 1:
        raise SystemExit("Glassbox's servers run one worker process per pod (scale with replicas): leave --workers at 1")
    app: ASGIApp = kserve.model_server.app
    if middleware is not None:  # the server's own, next to kserve's app
        app = middleware(app)
    if binary_infer_route:
        app = BinaryInferRoute(app, server.dataplane)
    if request_logger_url:  # what KServe's logger does in a cluster, where none runs (local mode)
        app = RequestLogger(app, request_logger_url, model.name)
    if not_ready is not None:
        app = ReadinessGate(app, readiness_paths(model.name), not_ready)
    # kserve hands uvicorn this name (an import string, or the app itself) when it starts.
    kserve.model_server.FASTAPI_APP_IMPORT_STRING = RequestGuard(app, max_body_bytes)
    server.start([model])


def settings_from_json(model: type[Settings], text: str, env: str, hint: str = "") -> Settings:
    """A server's settings from the operator's JSON ($env); a malformed one stops the server naming the
    fields that are wrong (and `hint`), not with a traceback."""
    try:
        return model.model_validate_json(text)
    except ValidationError as error:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors(include_url=False)[:5])
        raise SystemExit(f"${env} does not hold a valid {model.__name__}: {where}{'. ' + hint if hint else ''}") from None


def server_parser(arguments: type[ServerArgs], description: str | None, log_each_request: bool = True) -> argparse.ArgumentParser:
    """A server's parser: KServe's ModelServer flags and the server's own from its contract model, which
    also checks the values (`arguments.from_namespace`). An unknown argument stops the server (exit 2).

    `log_each_request=False` turns KServe's `--enable_latency_logging` off by default, for a server called
    many times per explanation (`--enable_latency_logging true` brings back the access line and kserve's
    timing lines; the request counters on /metrics say what was served)."""
    parser = argparse.ArgumentParser(
        parents=[kserve.model_server.parser], description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    arguments.add_to_parser(parser)
    if not log_each_request:
        parser.set_defaults(enable_latency_logging=False)
    return parser


def read_command_line(parser: argparse.ArgumentParser, arguments: type[Arguments]) -> tuple[Arguments, argparse.Namespace]:
    """The server's own arguments, checked by its contract model, and KServe's flags (ports, request
    logging) for `serve`; logging is configured as `--log_config_file` says. A misspelt flag or a value the
    model refuses stops the server (exit 2), never silently ignored."""
    parsed = parser.parse_args()
    checked = arguments.from_namespace(parsed, parser)
    configure_logging(parsed.log_config_file)
    return checked, parsed
