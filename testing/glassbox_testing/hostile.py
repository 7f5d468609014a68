"""Malformed and hostile requests, each with the status and words its answer must carry, and a raw-socket
sender for bodies no HTTP client would send: shared by the hostile-input tests and `make reliability`."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

ROW = [0.9, 0.2, 0.5, 0.7, 0.1]
JSON = {"content-type": "application/json"}
PREDICT_V1 = "/v1/models/synthetic:predict"
PREDICT_V2 = "/v2/models/synthetic/infer"
EXPLAIN = "/v1/models/synthetic:explain"


def binary(header: dict[str, Any], data: bytes, length: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A v2 binary request: the JSON header, then the tensor bytes (KServe's binary tensor extension)."""
    text = json.dumps(header).encode()
    return text + data, {"content-type": "application/octet-stream", "inference-header-content-length": length or str(len(text))}


def fp32_tensor(shape: list[int], size: int | str | None = None) -> dict[str, Any]:
    parameters = {"binary_data_size": size if size is not None else 4 * int(np.prod(shape))}
    return {"inputs": [{"name": "input-0", "shape": shape, "datatype": "FP32", "parameters": parameters}]}


def v2(shape: list[int], data: Any, datatype: str = "FP32") -> bytes:
    return json.dumps({"inputs": [{"name": "input-0", "shape": shape, "datatype": datatype, "data": data}]}).encode()


ROW_BYTES = np.asarray([ROW], dtype=np.float32).tobytes()

# (case, path, body, headers, status, words the error must contain)
CASES: list[tuple[str, str, bytes, dict[str, str], int, str]] = [
    # JSON that is not JSON
    ("truncated JSON", PREDICT_V1, b'{"instances": [[0.9, 0.2', JSON, 400, "JSON"),
    ("invalid UTF-8", PREDICT_V1, b'{"instances": [[0.9, 0.2, 0.5, 0.7, "\xff"]]}', JSON, 400, "UTF-8"),
    ("empty body", PREDICT_V1, b"", JSON, 400, "empty"),
    ("a JSON array, not an object", PREDICT_V1, b"[[0.9, 0.2, 0.5, 0.7, 0.1]]", JSON, 400, "JSON object"),
    ("duplicate keys", PREDICT_V1, b'{"instances": [[0.9, 0.2, 0.5, 0.7, 0.1]], "instances": [[1, 2]]}', JSON, 400, "duplicate"),
    ("a number too large for a float", PREDICT_V1, b'{"instances": [[1e999, 0.2, 0.5, 0.7, 0.1]]}', JSON, 400, "finite numbers"),
    ("deeply nested", PREDICT_V1, b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", JSON, 400, ""),
    # v1 bodies of the wrong shape or type
    ("instances is a string", PREDICT_V1, b'{"instances": "0.9, 0.2"}', JSON, 400, "instances"),
    ("no rows", PREDICT_V1, b'{"instances": []}', JSON, 400, "instances"),
    ("one dimension too many", PREDICT_V1, json.dumps({"instances": [[[x] for x in ROW]]}).encode(), JSON, 400, "shape"),
    ("a 1-D request", PREDICT_V1, b'{"instances": [0.9, 0.2, 0.5]}', JSON, 400, "shape"),
    # v2 JSON tensors that lie about themselves
    ("shape and data disagree", PREDICT_V2, v2([2, 5], ROW), JSON, 400, "shape"),
    ("a huge shape with little data", PREDICT_V2, v2([1_000_000_000, 5], ROW), JSON, 400, "shape"),
    ("a negative dimension", PREDICT_V2, v2([-1, 5], ROW), JSON, 400, "shape"),
    ("an unknown datatype", PREDICT_V2, v2([1, 5], ROW, "FP99"), JSON, 400, "FP99"),
    ("strings declared FP32", PREDICT_V2, v2([1, 5], ["a", "b", "c", "d", "e"]), JSON, 400, "datatype FP32"),
    ("text for a numeric model", PREDICT_V2, v2([1], ["hello"], "BYTES"), JSON, 400, "numeric"),
    ("inputs holds a number", PREDICT_V2, b'{"inputs": [1]}', JSON, 422, "inputs"),
    ("no inputs", PREDICT_V2, b'{"inputs": []}', JSON, 400, "input"),
    # v2 binary tensors that lie about themselves
    (
        "a header length that is not a number",
        PREDICT_V2,
        *binary(fp32_tensor([1, 5]), ROW_BYTES, length="abc"),
        400,
        "inference-header-content-length",
    ),
    (
        "a header length past the body",
        PREDICT_V2,
        *binary(fp32_tensor([1, 5]), ROW_BYTES, length="100000"),
        400,
        "inference-header-content-length",
    ),
    (
        "a header that is not JSON",
        PREDICT_V2,
        b"{not json" + ROW_BYTES,
        {"content-type": "application/octet-stream", "inference-header-content-length": "9"},
        400,
        "JSON",
    ),
    ("binary_data_size not a number", PREDICT_V2, *binary(fp32_tensor([1, 5], "abc"), ROW_BYTES), 400, "binary_data_size"),
    ("binary_data_size past the body", PREDICT_V2, *binary(fp32_tensor([1, 5], 4000), ROW_BYTES), 400, "binary_data_size"),
    ("binary data shorter than the shape", PREDICT_V2, *binary(fp32_tensor([2, 5], 20), ROW_BYTES), 400, "shape"),
    (
        "a BYTES length prefix of 2^31",
        PREDICT_V2,
        *binary(
            {"inputs": [{"name": "input-0", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 8}}]},
            struct.pack("<I", 2**31) + b"abcd",
        ),
        400,
        "BYTES",
    ),
    # the wrong model, verb or media type
    ("a model that is not here", "/v1/models/other:predict", json.dumps({"instances": [ROW]}).encode(), JSON, 404, "other"),
    ("GET on the predict path", PREDICT_V1, b"", {}, 404, "does not exist"),
    # the explainer
    ("an unknown method", EXPLAIN, json.dumps({"instances": [ROW], "method": "lime"}).encode(), JSON, 404, "the methods are"),
    (
        "an unknown parameter",
        EXPLAIN,
        json.dumps({"instances": [ROW], "method": "anchors", "treshold": 0.9}).encode(),
        JSON,
        400,
        "treshold",
    ),
    (
        "picture as a string",
        EXPLAIN,
        json.dumps({"instances": [ROW], "method": "anchors", "picture": "false"}).encode(),
        JSON,
        400,
        "picture",
    ),
    ("explainer: truncated JSON", EXPLAIN, b'{"instances": [[0.9', JSON, 400, "JSON"),
    ("explainer: invalid UTF-8", EXPLAIN, b'{"instances": [[0.9, 0.2, 0.5, 0.7, 0.1]], "method": "\xff"}', JSON, 400, "UTF-8"),
    (
        "explainer: the wrong width",
        EXPLAIN,
        json.dumps({"instances": [[0.9, 0.2]], "method": "shap"}).encode(),
        JSON,
        400,
        "features",
    ),
    (
        "explainer: text for a numeric model",
        EXPLAIN,
        json.dumps({"instances": ["hello"], "method": "shap"}).encode(),
        JSON,
        400,
        "numeric",
    ),
    ("explainer: no rows", EXPLAIN, json.dumps({"instances": [], "method": "shap"}).encode(), JSON, 400, "instances"),
    (
        "explainer: duplicate keys",
        EXPLAIN,
        b'{"instances": [[0.9, 0.2, 0.5, 0.7, 0.1]], "method": "shap", "method": "anchors"}',
        JSON,
        400,
        "duplicate",
    ),
]


def rss_bytes(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def content_length(answer: bytes) -> int:
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    for line in head.split(b"\r\n"):
        if line.startswith(b"content-length:"):
            return int(line.split(b":", 1)[1])
    return 0


def send_raw(port: int, head: bytes, body_chunks: int, chunk: bytes) -> bytes:
    """Send a request head, then body chunks until the server answers or the chunks run out; its answer."""
    import select
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        pending, left = b"", body_chunks
        while True:
            readable, writable, _ = select.select([sock], [sock] if pending or left else [], [], 30)
            if readable or not writable:
                break  # the server answers (or, after 30 s of nothing, the test reads what there is)
            if not pending:
                pending, left = chunk, left - 1
            try:
                pending = pending[sock.send(pending) :]
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < content_length(answer):
            more = sock.recv(65536)
            if not more:
                break
            answer += more
        return answer
