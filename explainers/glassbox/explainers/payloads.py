"""Request and response bodies of the KServe v1 and v2 protocols, as numpy arrays.

Pure functions: they raise `InputError` (a 4xx with a message naming what is
wrong and what would be right) and never touch the network.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from kserve.utils.numpy_codec import from_np_dtype


class InputError(ValueError):
    """Bad input: the server answers 4xx with this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_instances: int = 10_000
    max_elements: int = 50_000_000


def _check_size(count: int, elements: int, limits: Limits) -> None:
    if count > limits.max_instances:
        raise InputError(f"the request holds {count} instances; send at most {limits.max_instances} per request", 413)
    if elements > limits.max_elements:
        raise InputError(f"the request holds {elements} values; send at most {limits.max_elements} per request", 413)


def numeric_array(values: Any, what: str, limits: Limits = Limits()) -> np.ndarray:
    """A float array from nested lists, refusing ragged rows, strings, NaN and infinities."""
    if not isinstance(values, list | tuple | np.ndarray):
        raise InputError(f"{what} must be a list of instances, got {type(values).__name__}")
    if len(values) == 0:
        raise InputError(f"{what} is empty: send at least one instance")
    try:
        array = np.asarray(values, dtype=np.float64)
    except ValueError as error:
        text = str(error)
        if "inhomogeneous" in text or "sequence" in text:
            raise InputError(f"{what} has rows of different lengths: every instance must have the same shape") from None
        raise InputError(f"{what} holds a value that is not a number ({text}); send numbers only") from None
    except TypeError:
        raise InputError(f"{what} holds a value that is not a number; send numbers only") from None
    _check_size(len(array), int(array.size), limits)
    if not np.isfinite(array).all():
        where = np.argwhere(~np.isfinite(array))[0].tolist()
        raise InputError(f"{what} holds NaN or infinity at index {where}; send finite numbers")
    return array


def text_array(values: Any, what: str, limits: Limits = Limits()) -> list[str]:
    if not isinstance(values, list | tuple) or not values:
        raise InputError(f"{what} must be a non-empty list of strings")
    texts = []
    for index, value in enumerate(values):
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str | bytes):
            value = value[0] if isinstance(value[0], str) else value[0].decode("utf-8", errors="replace")
        if not isinstance(value, str):
            raise InputError(f"{what}[{index}] must be a string, got {type(value).__name__}")
        texts.append(value)
    _check_size(len(texts), sum(len(t) for t in texts), limits)
    return texts


def is_text(values: Any) -> bool:
    first = values[0] if isinstance(values, list | tuple) and values else None
    if isinstance(first, list) and len(first) == 1:
        first = first[0]
    return isinstance(first, str | bytes)


@dataclass(frozen=True)
class DecodedRequest:
    """The instances of a request, and how to answer in kind."""

    instances: np.ndarray | list[str]
    protocol: str  # "v1" or "v2"
    input_name: str = "input-0"
    body: dict[str, Any] | None = None


def decode_request(payload: dict[str, Any] | InferRequest, limits: Limits = Limits()) -> DecodedRequest:
    """v1 `{"instances": [...]}` (or `{"inputs": [...]}`) or a v2 InferRequest, to numbers or strings."""
    if isinstance(payload, InferRequest):
        if not payload.inputs:
            raise InputError("the v2 request has no inputs: send one input tensor")
        if len(payload.inputs) != 1:
            names = [i.name for i in payload.inputs]
            raise InputError(f"the v2 request has {len(names)} inputs {names}; this model takes one input tensor")
        tensor = payload.inputs[0]
        if tensor.datatype == "BYTES":
            data = tensor.as_numpy().reshape(-1).tolist()
            return DecodedRequest(text_array(data, f"input '{tensor.name}'", limits), "v2", tensor.name)
        try:
            array = tensor.as_numpy()
        except Exception as error:  # noqa: BLE001  (kserve raises several types for malformed tensors)
            raise InputError(f"input '{tensor.name}' does not match its shape {tensor.shape} and datatype {tensor.datatype}: {error}") from None
        return DecodedRequest(numeric_array(array.astype(np.float64), f"input '{tensor.name}'", limits), "v2", tensor.name)
    if not isinstance(payload, dict):
        raise InputError("the request body must be a JSON object with 'instances'")
    values = payload.get("instances", payload.get("inputs"))
    if values is None:
        raise InputError("the request has no 'instances': send {\"instances\": [[...], ...]}")
    if is_text(values):
        return DecodedRequest(text_array(values, "instances", limits), "v1", body=payload)
    return DecodedRequest(numeric_array(values, "instances", limits), "v1", body=payload)


def encode_predictions(predictions: np.ndarray, request: DecodedRequest, model_name: str, request_id: str | None = None) -> dict[str, Any] | InferResponse:
    """The answer in the protocol the request came in."""
    if request.protocol == "v2":
        output = InferOutput(name="output-0", shape=list(predictions.shape), datatype=from_np_dtype(predictions.dtype))
        output.set_data_from_numpy(predictions, binary_data=False)
        return InferResponse(response_id=request_id or str(uuid.uuid4()), model_name=model_name, infer_outputs=[output])
    return {"predictions": predictions.tolist()}


def v2_request_body(instances: np.ndarray | list[str], input_name: str = "input-0") -> dict[str, Any]:
    """A v2 JSON request body for these instances."""
    if isinstance(instances, list):
        return {"inputs": [{"name": input_name, "shape": [len(instances)], "datatype": "BYTES", "data": instances}]}
    array = np.ascontiguousarray(instances, dtype=np.float32)
    return {"inputs": [{"name": input_name, "shape": list(array.shape), "datatype": "FP32", "data": array.reshape(-1).tolist()}]}


def predictions_from_v1(body: Any, rows: int) -> np.ndarray:
    """Predictions from a v1 response; raises ValueError when the body is not what a predictor answers."""
    if not isinstance(body, dict) or "predictions" not in body:
        raise ValueError(f"the response has no 'predictions': {str(body)[:200]}")
    array = np.asarray(body["predictions"], dtype=np.float64)
    return _checked(array, rows)


def predictions_from_v2(body: Any, rows: int) -> np.ndarray:
    if not isinstance(body, dict) or not body.get("outputs"):
        raise ValueError(f"the response has no 'outputs': {str(body)[:200]}")
    output = body["outputs"][0]
    array = np.asarray(output["data"], dtype=np.float64).reshape(output["shape"])
    return _checked(array, rows)


def _checked(array: np.ndarray, rows: int) -> np.ndarray:
    if array.ndim == 0 or array.shape[0] != rows:
        raise ValueError(f"the predictor answered {array.shape[0] if array.ndim else 'a scalar'} rows for {rows} instances")
    if not np.all(np.isfinite(array)):
        raise ValueError("the predictor answered NaN or infinity")
    return array


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None
