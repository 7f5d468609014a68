"""What an explanation request may carry, read once (decoding apart from dispatch), and its answer as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferRequest

from glassbox.contract.wire import FLAGGED_FIELD, ROUTE_FIELD
from glassbox.explainers.serving.errors import InputError
from glassbox.explainers.serving.payloads import Limits, decode_request, is_v2_body, v2_request_from_json

# A request may carry at most this many values (an image batch, a long table).
REQUEST_LIMITS = Limits(max_instances=256, max_elements=4_000_000)
# What an explanation request may name: the instances, the method, a picture, the graph's route
# (KServe's router sends the whole body to every step), `flagged`: the indices, in the request the
# detector's gate narrowed, of the instances it passed on (see glassbox.explainers.detector.server), echoed in the answer,
# `target`: the class a counterfactual should reach, one for all instances or one per instance, and
# `fresh`: compute the explanation even when a record holds its answer, and `async`: answer 202 at once
# and explain it as a job.
V1_BODY_KEYS = frozenset({"instances", "method", "picture", ROUTE_FIELD, "id", FLAGGED_FIELD, "target", "fresh", "async"})
V2_BODY_KEYS = frozenset(
    {"inputs", "outputs", "parameters", "id", "method", "picture", ROUTE_FIELD, FLAGGED_FIELD, "target", "fresh", "async"}
)


def _whole_number(value: Any) -> bool:
    """0, 1, 2, ...: an index or a class (JSON's true and false are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


@dataclass(frozen=True)
class ExplanationRequest:
    """A request's own words: the method it names (None: the default), whether it asks for a picture,
    the gate's `flagged` indices, and the payload its instances are decoded from."""

    payload: dict[str, Any] | InferRequest
    method: Any
    picture: bool
    flagged: list[int] | None
    target: Any = None  # as sent; `targets` checks it
    fresh: bool = False

    def instances(self) -> np.ndarray | list[str]:
        """The instances, decoded; a `flagged` list must name one index per instance."""
        instances = decode_request(self.payload, REQUEST_LIMITS).instances
        flagged = self.flagged
        if flagged is not None and not (
            isinstance(flagged, list) and len(flagged) == len(instances) and all(_whole_number(i) for i in flagged)
        ):
            raise InputError(
                f"'flagged' must list one index (a whole number, 0 or more) per instance, {len(instances)} in all; got {str(flagged)[:100]}"
            )
        return instances

    def targets(self, count: int) -> list[int] | None:
        """The class asked for each of `count` instances, or None when the request names no `target`."""
        target = self.target
        if target is None:
            return None
        if _whole_number(target):
            return [target] * count
        if isinstance(target, list) and len(target) == count and all(_whole_number(t) for t in target):
            return list(target)
        raise InputError(
            f"'target' must be a class (a whole number, 0 or more) for every instance, or a list of one per instance, "
            f"{count} in all; got {str(target)[:100]}"
        )


def read_explanation_request(payload: dict[str, Any] | InferRequest, model_name: str) -> ExplanationRequest:
    """A v1 body, a v2 JSON body on the v1 path (KServe's graph router sends one body to every step,
    whatever the path), or a v2 InferRequest; InputError naming what is wrong."""
    if isinstance(payload, dict):
        accepted = V2_BODY_KEYS if is_v2_body(payload) else V1_BODY_KEYS
        unknown = sorted(set(payload) - accepted)
        if unknown:
            raise InputError(f"the request names {unknown}, which this explainer does not take; it takes {sorted(accepted)}")
    flagged = payload.get(FLAGGED_FIELD) if isinstance(payload, dict) else None
    if isinstance(payload, dict) and is_v2_body(payload):
        top_level = {k: payload[k] for k in ("method", "picture", "target", "fresh", "async") if k in payload}
        payload = v2_request_from_json(payload, model_name)
        payload.parameters = {**top_level, **(payload.parameters or {})}
    if isinstance(payload, InferRequest):
        parameters = dict(payload.parameters or {})
        asked = parameters
    elif isinstance(payload, dict):
        asked = payload
    else:
        raise InputError("the request body must be a JSON object with 'instances'")
    requested, picture, target, fresh = (
        asked.get("method"),
        asked.get("picture", False),
        asked.get("target"),
        asked.get("fresh", False),
    )
    for name, value in (("picture", picture), ("fresh", fresh), ("async", asked.get("async", False))):
        if not isinstance(value, bool):
            raise InputError(f"'{name}' must be true or false, got {value!r}")
    return ExplanationRequest(payload, requested, picture, flagged, target, fresh)


def asks_for_a_job(payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None) -> bool:
    """Whether the request asks to be answered at once and explained as a job: `"async": true` in the body (or
    a v2 body's `parameters`), or the header `Prefer: respond-async` (RFC 7240). A non-boolean `async` is
    refused when the request is read."""
    prefer = next((v for k, v in (headers or {}).items() if k.lower() == "prefer"), "")
    if "respond-async" in [token.strip().lower() for token in prefer.split(",")]:
        return True
    if isinstance(payload, InferRequest):
        return (payload.parameters or {}).get("async") is True
    if isinstance(payload, dict):
        parameters = payload.get("parameters")
        return payload.get("async") is True or (isinstance(parameters, dict) and parameters.get("async") is True)
    return False


def infer_request_json(request: InferRequest) -> dict[str, Any]:
    """A v2 request (JSON or binary tensors) as the v2 JSON body that says the same: what a job keeps to run later."""
    inputs = []
    for tensor in request.inputs:
        values = tensor.as_numpy().reshape(-1).tolist()
        if tensor.datatype == "BYTES":
            values = [v.decode() if isinstance(v, bytes) else v for v in values]
        inputs.append({"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype, "data": values})
    body: dict[str, Any] = {"inputs": inputs, "parameters": dict(request.parameters or {})}
    if request.id:
        body["id"] = request.id
    return body


def job_request(payload: dict[str, Any]) -> dict[str, Any]:
    """What a job runs: the request as it came, without what asked for a job."""
    body = {k: v for k, v in payload.items() if k != "async"}
    if isinstance(body.get("parameters"), dict):
        body["parameters"] = {k: v for k, v in body["parameters"].items() if k != "async"}
    return body


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        return value.detach().cpu().numpy().tolist()
    return str(value)  # devices, functions, classes in alibi's meta.params


def explanation_json(explanation: Any) -> dict[str, Any]:
    """alibi's Explanation as plain JSON (`meta`, `data`), whatever its params hold."""
    answer: dict[str, Any] = json.loads(json.dumps({"meta": explanation.meta, "data": explanation.data}, default=_jsonable))
    return answer
