"""Request and response bodies of the KServe v1 and v2 protocols, as numpy arrays.

Pure functions: they raise `InputError` (a 4xx with a message naming what is
wrong and what would be right) and never touch the network.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse, RequestedOutput
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from kserve.utils.numpy_codec import from_np_dtype, to_np_dtype
from pydantic import ValidationError

from glassbox.explainers.serving.errors import InputError


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    max_instances: int = 10_000
    max_elements: int = 50_000_000


INFERENCE_HEADER = "inference-header-content-length"
JSON_HEADERS = {"content-type": "application/json"}


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
        array = values.astype(np.float64, copy=False) if isinstance(values, np.ndarray) else np.asarray(values, dtype=np.float64)
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
    binary_output: bool = False  # v2: the client asked for binary output tensors


def is_v2_body(body: Any) -> bool:
    """Whether a JSON body is a v2 (Open Inference Protocol) request: `inputs` holding tensor objects."""
    if not isinstance(body, dict) or "instances" in body:
        return False
    inputs = body.get("inputs")
    return isinstance(inputs, list) and bool(inputs) and all(isinstance(i, dict) for i in inputs)


def v2_request_from_json(body: dict[str, Any], model_name: str) -> InferRequest:
    """A v2 JSON body that arrived where v1 bodies do (KServe's graph router sends one body to every step)."""
    try:
        return InferRequest.from_inference_request(InferenceRequest.model_validate(body), model_name)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(f"the v2 request is malformed at '{where}': {first['msg']}") from None
    except InvalidInput as error:
        raise InputError(f"the v2 request is malformed: {error}") from None


def decode_request(payload: dict[str, Any] | InferRequest, limits: Limits = Limits()) -> DecodedRequest:
    """v1 `{"instances": [...]}` (or `{"inputs": [...]}`) or a v2 InferRequest, to numbers or strings."""
    if isinstance(payload, InferRequest):
        if not payload.inputs:
            raise InputError("the v2 request has no inputs: send one input tensor")
        if len(payload.inputs) != 1:
            names = [i.name for i in payload.inputs]
            raise InputError(f"the v2 request has {len(names)} inputs {names}; this model takes one input tensor")
        tensor = payload.inputs[0]
        shape = list(tensor.shape or [])
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise InputError(f"input '{tensor.name}' has shape {shape}: every dimension must be a whole number, 0 or more")
        try:
            array = tensor.as_numpy()
        except Exception as error:  # noqa: BLE001  (kserve raises several types for malformed tensors)
            raise InputError(
                f"input '{tensor.name}' does not match its shape {tensor.shape} and datatype {tensor.datatype}: {error}"
            ) from None
        if list(array.shape) != shape:
            raise InputError(
                f"input '{tensor.name}' has shape {shape} but holds {array.size} values; send shape and data that agree"
            )
        if tensor.datatype == "BYTES":
            return DecodedRequest(text_array(array.reshape(-1).tolist(), f"input '{tensor.name}'", limits), "v2", tensor.name)
        return DecodedRequest(
            numeric_array(array, f"input '{tensor.name}'", limits),
            "v2",
            tensor.name,
            binary_output=bool(payload.use_binary_outputs),
        )
    if not isinstance(payload, dict):
        raise InputError("the request body must be a JSON object with 'instances'")
    if is_v2_body(payload):
        raise InputError(
            "this is a v2 (Open Inference Protocol) body, sent to a v1 path: send it to /v2/models/NAME/infer, "
            'or send {"instances": [[...], ...]} here'
        )
    values = payload.get("instances", payload.get("inputs"))
    if values is None:
        raise InputError("the request has no 'instances': send {\"instances\": [[...], ...]}")
    if is_text(values):
        return DecodedRequest(text_array(values, "instances", limits), "v1", body=payload)
    return DecodedRequest(numeric_array(values, "instances", limits), "v1", body=payload)


def request_from_bytes(body: bytes, header_length: int, model_name: str) -> InferRequest:
    """A v2 request with binary tensors, keeping their bytes as they came.

    kserve 0.20's own `InferRequest.from_bytes` turns every binary tensor into a
    Python list, one element at a time (about 10 ms per 50,000 values), which
    `as_numpy()` then turns back into an array. Here `as_numpy()` reads the bytes
    directly. Errors are kserve's `InvalidInput`, answered as 400.
    """
    try:
        header = orjson.loads(body[:header_length])
    except orjson.JSONDecodeError as error:
        raise InvalidInput(
            f"the JSON header of the binary request (its first {header_length} bytes) is not JSON: {error}"
        ) from None
    if not isinstance(header, dict) or not isinstance(header.get("inputs"), list):
        raise InvalidInput("the JSON header of the binary request has no 'inputs' list")
    tensors, start = [], header_length
    for tensor in header["inputs"]:
        parameters = tensor.get("parameters") or {}
        infer_input = InferInput(
            name=tensor.get("name"), shape=tensor.get("shape"), datatype=tensor.get("datatype"), parameters=parameters or None
        )
        if tensor.get("data") is not None:
            infer_input.data = tensor["data"]
        elif "binary_data_size" in parameters:
            size = parameters["binary_data_size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise InvalidInput(
                    f"input '{infer_input.name}' has binary_data_size {size!r}: it must be the tensor's length in bytes, a whole number"
                )
            end = start + size
            if end > len(body):
                raise InvalidInput(
                    f"input '{infer_input.name}' has binary_data_size {size}, but the request ends {end - len(body)} bytes short of it; "
                    "send binary_data_size equal to the bytes that follow the JSON header"
                )
            infer_input._raw_data = body[start:end]
            start = end
        else:
            raise InvalidInput(f"input '{infer_input.name}' has neither 'data' nor parameters.binary_data_size")
        tensors.append(infer_input)
    outputs = [RequestedOutput(name=o.get("name"), parameters=o.get("parameters")) for o in header.get("outputs") or []]
    return InferRequest(
        model_name=model_name,
        infer_inputs=tensors,
        request_id=header.get("id"),
        parameters=header.get("parameters"),
        request_outputs=outputs or None,
    )


def encode_predictions(
    predictions: np.ndarray, request: DecodedRequest, model_name: str, request_id: str | None = None
) -> dict[str, Any] | InferResponse:
    """The answer in the protocol the request came in."""
    if request.protocol == "v2":
        output = InferOutput(name="output-0", shape=list(predictions.shape), datatype=from_np_dtype(predictions.dtype))
        output.set_data_from_numpy(predictions, binary_data=request.binary_output)
        return InferResponse(
            response_id=request_id or str(uuid.uuid4()),
            model_name=model_name,
            infer_outputs=[output],
            use_binary_outputs=request.binary_output,
        )
    return {"predictions": predictions.tolist()}


def json_body(body: Any) -> bytes:
    """JSON for a request body; numpy arrays serialise in C, not element by element."""
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def v1_request(instances: np.ndarray | list[str]) -> tuple[bytes, dict[str, str]]:
    if isinstance(instances, np.ndarray):
        # orjson serialises C-contiguous arrays only; a method may hand over a slice or a transpose.
        instances = np.ascontiguousarray(instances)
    return json_body({"instances": instances}), JSON_HEADERS


def v2_request(instances: np.ndarray | list[str], binary: bool, input_name: str = "input-0") -> tuple[bytes, dict[str, str]]:
    """A v2 request: numbers as a binary FP32 tensor after a JSON header (KServe's and Triton's binary
    extension), or as JSON; strings always as JSON BYTES."""
    if isinstance(instances, list):
        return json_body(
            {"inputs": [{"name": input_name, "shape": [len(instances)], "datatype": "BYTES", "data": instances}]}
        ), JSON_HEADERS
    array = np.ascontiguousarray(instances, dtype=np.float32)
    if not binary:
        tensor = {"name": input_name, "shape": list(array.shape), "datatype": "FP32", "data": array.reshape(-1)}
        return json_body({"inputs": [tensor]}), JSON_HEADERS
    header = json_body(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": list(array.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": array.nbytes},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    )
    return header + array.tobytes(), {"content-type": "application/octet-stream", INFERENCE_HEADER: str(len(header))}


def predictions_from_v1(body: Any, rows: int) -> np.ndarray:
    """Predictions from a v1 response; raises ValueError when the body is not what a predictor answers."""
    if not isinstance(body, dict) or "predictions" not in body:
        raise ValueError(f"the response has no 'predictions': {str(body)[:200]}")
    array = np.asarray(body["predictions"], dtype=np.float64)
    return _checked(array, rows)


def predictions_from_v2(body: Any, rows: int, binary: bytes = b"") -> np.ndarray:
    """Predictions from a v2 response: JSON `data`, or `binary` (the bytes after the JSON header)."""
    if not isinstance(body, dict) or not body.get("outputs"):
        raise ValueError(f"the response has no 'outputs': {str(body)[:200]}")
    output = body["outputs"][0]
    if not isinstance(output, dict) or "shape" not in output:
        raise ValueError(f"the first output has no shape: {str(output)[:200]}")
    size = (output.get("parameters") or {}).get("binary_data_size")
    if size is not None:
        dtype = to_np_dtype(output.get("datatype"))
        if dtype is None or not np.issubdtype(dtype, np.number):
            raise ValueError(f"binary output of datatype {output.get('datatype')} is not numeric")
        if size > len(binary):
            raise ValueError(f"the binary output should hold {size} bytes; the response has {len(binary)}")
        array = np.frombuffer(binary[:size], dtype=dtype).astype(np.float64).reshape(output["shape"])
    else:
        array = np.asarray(output.get("data"), dtype=np.float64).reshape(output["shape"])
    return _checked(array, rows)


def predictions_from_response(protocol: str, content: bytes, header_length: str | None, rows: int) -> np.ndarray:
    """Predictions from a response body in either protocol, binary tensors included."""
    split = int(header_length) if header_length else len(content)
    try:
        body = orjson.loads(content[:split])
    except orjson.JSONDecodeError as error:
        raise ValueError(f"the response is not JSON ({error}): {content[:200]!r}") from None
    if protocol == "v2":
        return predictions_from_v2(body, rows, content[split:])
    return predictions_from_v1(body, rows)


def _checked(array: np.ndarray, rows: int) -> np.ndarray:
    if array.ndim == 0 or array.shape[0] != rows:
        raise ValueError(f"the predictor answered {array.shape[0] if array.ndim else 'a scalar'} rows for {rows} instances")
    if not np.all(np.isfinite(array)):
        raise ValueError("the predictor answered NaN or infinity")
    return array
