"""Prediction requests as KServe's request logger reports them to the drift monitor.

The logger (kserve pkg/logger/handler.go, `ServeHTTP`) copies each request a predictor receives, except
kubelet probes, and its worker (pkg/logger/worker.go, `sendHttpCloudEvent`) posts it as a CloudEvent in
HTTP binary mode: the body is the request's own bytes, `Content-Type` the request's, and the attributes
are headers: `ce-specversion: 1.0`, `ce-type: org.kubeflow.serving.inference.request` (responses, logged in
mode `all` or `response`, are `...inference.response`), `ce-id` (the request's `ce-id`, else a new UUID),
`ce-source`, `ce-time`, and the extensions `ce-inferenceservicename`, `ce-namespace`, `ce-component`,
`ce-endpoint` and `ce-metadata`. The logger reads no answer beyond its status, and retries nothing.

A request's body is what the predictor was sent: a v1 or v2 JSON body, or a v2 body with binary tensors
(the logger drops the `Inference-Header-Content-Length` header, so the JSON header's end is found by
reading it). An event that carries no input (a response, a GET of the model's metadata with no body) is
not an input, nor is the explainer's own call with perturbed inputs (its CALLER_HEADER, which the logger
passes on in `ce-metadata` when the InferenceService's logger lists it in `metadataHeaders`); one that is not a CloudEvent, or whose request cannot be read, is refused, naming why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferRequest

from glassbox.contract.wire import CALLER_HEADER, EXPLAINER_CALLER
from glassbox.explainers.serving.errors import InputError
from glassbox.explainers.serving.payloads import Limits, decode_request, is_v2_body, v2_request_from_json

REQUEST_EVENT = "org.kubeflow.serving.inference.request"
RESPONSE_EVENT = "org.kubeflow.serving.inference.response"
SPEC_VERSION = "1.0"


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def read_logged_request(
    headers: Mapping[str, str], body: bytes, model_name: str, limits: Limits
) -> np.ndarray | list[str] | None:
    """The instances of a logged prediction request (numbers, or texts), as the predictor decoded them; None for an
    event that carries no input."""
    version = _header(headers, "ce-specversion")
    if version is None:
        raise InputError(
            "not a CloudEvent (no ce-specversion header): point KServe's request logger here "
            "(an InferenceService's logger.url), or send prediction requests to the detector's own predict path"
        )
    if version != SPEC_VERSION:
        raise InputError(
            f"CloudEvents spec version {version!r}; this reads {SPEC_VERSION} (binary mode, as KServe's logger sends)"
        )
    kind = _header(headers, "ce-type")
    if kind == RESPONSE_EVENT or not body.strip() or _from_the_explainer(_header(headers, "ce-metadata")):
        return None
    if kind != REQUEST_EVENT:
        raise InputError(f"ce-type {kind!r} is not a logged prediction request ({REQUEST_EVENT})")
    payload = _request_of(body, model_name)
    instances: np.ndarray | list[str] = decode_request(payload, limits).instances
    return instances


def _from_the_explainer(metadata: str | None) -> bool:
    """Whether the logged request was the explainer's (perturbed inputs): the logger passes the request's
    CALLER_HEADER on in `ce-metadata`, a JSON map of header names to their values."""
    if not metadata:
        return False
    try:
        headers = json.loads(metadata)
    except ValueError:
        return False
    if not isinstance(headers, dict):
        return False
    values = next((v for k, v in headers.items() if str(k).lower() == CALLER_HEADER.lower()), None)
    return isinstance(values, list) and EXPLAINER_CALLER in values


def _request_of(body: bytes, model_name: str) -> dict[str, Any] | InferRequest:
    """The logged request: a JSON body, or a v2 body whose JSON header is followed by binary tensors."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return _binary_v2(body, model_name)
    if not isinstance(parsed, dict):
        raise InputError("the logged request's body is JSON but not an object: expected 'instances' (v1) or 'inputs' (v2)")
    return v2_request_from_json(parsed, model_name) if is_v2_body(parsed) else parsed


def _binary_v2(body: bytes, model_name: str) -> InferRequest:
    text = body.decode("utf-8", errors="surrogateescape")
    try:
        _, end = json.JSONDecoder().raw_decode(text)
    except ValueError:
        raise InputError("the logged request's body is neither JSON nor a v2 JSON header followed by binary tensors") from None
    header_bytes = len(text[:end].encode("utf-8", errors="surrogateescape"))
    try:
        return InferRequest.from_bytes(body, header_bytes, model_name)
    except (InvalidInput, ValueError, KeyError, TypeError) as error:
        raise InputError(f"the logged v2 request's binary tensors cannot be read: {error}") from None
