"""The short way in for binary v2 requests answers what kserve's own stack answers, and leaves the rest to it.

kserve's real FastAPI application, with its real endpoints and a real
TorchPredictor in its DataPlane, is called over ASGI twice: through
BinaryInferRoute, and directly.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
from kserve.model_repository import ModelRepository
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.server import RESTServer

from glassbox.contract.server_args import PredictorServerArgs
from glassbox.explainers.predictor.server import TorchPredictor
from glassbox.explainers.serving.binary_infer_route import BinaryInferRoute, binary_infer_model
from glassbox.explainers.serving.payloads import INFERENCE_HEADER, predictions_from_response, request_from_bytes, v2_request

PATH = "/v2/models/synthetic/infer"


class CountingApp:
    """kserve's application, counting the requests that reach it."""

    def __init__(self, app: Callable[..., Awaitable[None]]):
        self.app = app
        self.requests = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.requests += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def apps(tabular_folder: Path) -> Iterator[tuple[BinaryInferRoute, CountingApp]]:
    import kserve.model_server
    from kserve.protocol.infer_type import InferRequest

    model = TorchPredictor(PredictorServerArgs(model_name="synthetic", model_dir=str(tabular_folder / "model")))
    model.load()
    repository = ModelRepository()
    repository.update(model)
    dataplane = DataPlane(model_registry=repository)
    rest = RESTServer("kserve.model_server:app", dataplane, None, http_port=0)
    rest.create_application()  # kserve's endpoints and middleware on kserve's app
    original = InferRequest.from_bytes
    InferRequest.from_bytes = staticmethod(request_from_bytes)  # as the predictor's main() does
    kserve_app = CountingApp(kserve.model_server.app)
    try:
        yield BinaryInferRoute(kserve_app, dataplane), kserve_app
    finally:
        InferRequest.from_bytes = original


async def post(app: Any, path: str, content: bytes, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://predictor") as client:
        return await client.post(path, content=content, headers=headers)


def without_id(response: httpx.Response) -> tuple[int, bytes]:
    if INFERENCE_HEADER not in response.headers:
        return response.status_code, response.content
    length = int(response.headers[INFERENCE_HEADER])
    header = orjson.loads(response.content[:length])
    header.pop("id")
    return response.status_code, orjson.dumps(header) + response.content[length:]


async def test_a_binary_request_is_answered_the_short_way_with_kserves_answer(apps: tuple[BinaryInferRoute, CountingApp]) -> None:
    route, kserve_app = apps
    rows = np.random.default_rng(0).uniform(0, 1, size=(300, 5))
    content, headers = v2_request(rows, binary=True)
    before = kserve_app.requests
    short = await post(route, PATH, content, headers)
    assert kserve_app.requests == before, "kserve's stack was called"
    long = await post(kserve_app, PATH, content, headers)
    assert short.status_code == 200, short.text
    assert without_id(short) == without_id(long)
    assert short.headers[INFERENCE_HEADER] == long.headers[INFERENCE_HEADER]
    assert int(short.headers["content-length"]) == len(short.content)
    scores = predictions_from_response("v2", short.content, short.headers[INFERENCE_HEADER], len(rows))
    assert scores.shape == (300, 2) and np.allclose(scores.sum(axis=1), 1, atol=1e-5)


async def test_binary_input_but_json_output_is_kserves_json(apps: tuple[BinaryInferRoute, CountingApp]) -> None:
    route, kserve_app = apps
    content, headers = v2_request(np.full((2, 5), 0.5), binary=True)
    length = int(headers[INFERENCE_HEADER])
    header = orjson.loads(content[:length])
    header["parameters"]["binary_data_output"] = False
    json_header = orjson.dumps(header)
    content, headers[INFERENCE_HEADER] = json_header + content[length:], str(len(json_header))
    short, long = await post(route, PATH, content, headers), await post(kserve_app, PATH, content, headers)
    assert short.status_code == long.status_code == 200
    assert short.headers["content-type"] == long.headers["content-type"] == "application/json"
    short_body, long_body = short.json(), long.json()
    short_body.pop("id"), long_body.pop("id")
    assert short_body == long_body


BAD_BINARY = [
    ("wrong feature count", lambda: v2_request(np.ones((2, 3)), binary=True)),
    ("tensor shorter than its shape", lambda: _truncated(v2_request(np.ones((2, 5)), binary=True))),
    (
        "header is not JSON",
        lambda: (b"{not json" + b"\x00" * 40, {"content-type": "application/octet-stream", INFERENCE_HEADER: "9"}),
    ),
    ("header longer than the body", lambda: (b"{}", {"content-type": "application/octet-stream", INFERENCE_HEADER: "99"})),
]


def _truncated(request: tuple[bytes, dict[str, str]]) -> tuple[bytes, dict[str, str]]:
    content, headers = request
    return content[:-8], headers


@pytest.mark.parametrize("case,build", BAD_BINARY, ids=[c[0] for c in BAD_BINARY])
async def test_binary_input_the_model_refuses_gets_kserves_own_error(
    apps: tuple[BinaryInferRoute, CountingApp], case: str, build: Callable[[], tuple[bytes, dict[str, str]]]
) -> None:
    route, kserve_app = apps
    content, headers = build()
    short, long = await post(route, PATH, content, headers), await post(kserve_app, PATH, content, headers)
    assert 400 <= short.status_code < 500, short.text
    assert (short.status_code, short.content) == (long.status_code, long.content)


async def test_other_requests_go_to_kserve_untouched(apps: tuple[BinaryInferRoute, CountingApp]) -> None:
    route, kserve_app = apps
    before = kserve_app.requests
    content, headers = v2_request(np.full((2, 5), 0.5), binary=False)
    assert (await post(route, PATH, content, headers)).status_code == 200
    assert (await post(route, "/v2/models/nobody/infer", *v2_request(np.ones((1, 5)), binary=True))).status_code == 404
    assert kserve_app.requests == before + 2


@pytest.mark.parametrize(
    "method,path,headers,model",
    [
        ("POST", PATH, {"content-type": "application/octet-stream", INFERENCE_HEADER: "10"}, "synthetic"),
        ("POST", PATH, {"content-type": "application/json", INFERENCE_HEADER: "10"}, None),
        ("POST", PATH, {"content-type": "application/octet-stream"}, None),
        ("GET", PATH, {"content-type": "application/octet-stream", INFERENCE_HEADER: "10"}, None),
        (
            "POST",
            "/v2/models/synthetic/versions/1/infer",
            {"content-type": "application/octet-stream", INFERENCE_HEADER: "10"},
            None,
        ),
        ("POST", "/v1/models/synthetic:predict", {"content-type": "application/octet-stream", INFERENCE_HEADER: "10"}, None),
    ],
)
def test_which_requests_take_the_short_way(method: str, path: str, headers: dict[str, str], model: str | None) -> None:
    scope = {"type": "http", "method": method, "path": path, "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    assert binary_infer_model(scope) == model
