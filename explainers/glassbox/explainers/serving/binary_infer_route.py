"""A short way in for binary v2 inference requests, ahead of kserve's FastAPI stack.

An explainer calls the predictor about a hundred times per anchor, one call
after another, each a few hundred rows of v2 binary tensor data. kserve's
REST stack spends more time per call on FastAPI's routing, dependency
resolution and middleware than the model spends on the rows. This ASGI
wrapper takes `POST /v2/models/NAME/infer` requests with a binary body
(`inference-header-content-length` and `application/octet-stream`) straight
to kserve's own DataPlane (`decode`, `infer`, `encode`: the same calls
kserve's endpoint makes, so the same model, metrics and answer) and writes the
answer. Every other request, and any request the short way cannot answer
(a model that is not ready, input the model refuses, anything raised), goes
through kserve's full stack with its body intact, so errors read exactly as
kserve writes them.
"""

from __future__ import annotations

import logging

from kserve.constants.constants import PredictorProtocol
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.rest.v2_datamodels import InferenceResponse

from glassbox.explainers.serving.request_guard import ASGIApp, Receive, Scope, Send, read_body, replay

log = logging.getLogger(__name__)

PREFIX, SUFFIX = "/v2/models/", "/infer"
JSON_LENGTH_HEADER = b"inference-header-content-length"


def binary_infer_model(scope: Scope) -> str | None:
    """The model a binary v2 inference request is for, or None when it is any other request."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    name = path[len(PREFIX) : -len(SUFFIX)]
    if not name or "/" in name:  # /v2/models/NAME/versions/V/infer is kserve's to answer
        return None
    headers = dict(scope["headers"])
    if JSON_LENGTH_HEADER not in headers or headers.get(b"content-type") != b"application/octet-stream":
        return None
    return name


class BinaryInferRoute:
    def __init__(self, app: ASGIApp, dataplane: DataPlane):
        self.app = app
        self.dataplane = dataplane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        model_name = binary_infer_model(scope)
        if model_name is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        answer = await self._answer(model_name, scope, body)
        if answer is None:
            await self.app(scope, replay(body, receive), send)
            return
        content, headers = answer
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})

    async def _answer(self, model_name: str, scope: Scope, body: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
        dataplane = self.dataplane
        try:
            if not await dataplane.model_ready(model_name, True):
                return None
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            request, _ = dataplane.decode(body, headers, protocol_version=PredictorProtocol.REST_V2.value, model_name=model_name)
            response, response_headers = await dataplane.infer(model_name=model_name, request=request, headers=headers)
            response, encode_headers = dataplane.encode(
                model_name=model_name, response=response, headers=headers, req_attributes={}
            )
        except Exception as error:  # noqa: BLE001  (kserve's own stack answers it, as it would have)
            log.debug("binary inference for %s goes the long way: %s", model_name, error)
            return None
        response_headers.update(encode_headers)
        if isinstance(response, bytes):
            content, content_type = response, "application/octet-stream"
        else:
            content, content_type = InferenceResponse.model_validate(response).model_dump_json().encode(), "application/json"
        response_headers.pop("content-length", None)
        response_headers.setdefault("content-type", content_type)
        response_headers["content-length"] = str(len(content))
        return content, [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in response_headers.items()]
