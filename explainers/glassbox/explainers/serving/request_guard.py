"""The first thing every request meets on both servers: bounds and well-formedness, before any work.

An ASGI wrapper around kserve's app (and the predictor's binary route):
- a body larger than `max_body_bytes` gets 413 without being read: at once when
  Content-Length says so, as soon as the limit is passed when it is sent in
  chunks;
- a JSON body (any `application/json` with parameters such as
  `charset=utf-8`, `text/plain`, or no Content-Type) must be UTF-8 JSON
  without duplicate keys (which parsers resolve differently: the last one
  would silently win); it reaches kserve as plain `application/json`;
- a binary v2 body's `inference-header-content-length` must be a whole number
  of bytes within the body.
Refusals are `{"error": ...}` answers naming what would be right.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from glassbox.explainers.serving.errors import RequestRefused

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BINARY_LENGTH_HEADER = b"inference-header-content-length"
JSON_TYPES = (b"application/json", b"text/plain", b"")


def media_type(headers: dict[bytes, bytes]) -> bytes:
    return headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()


def refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        raise RequestRefused(
            400, f"the JSON body has duplicate keys {repeated} (parsers differ on which one wins): name each key once"
        )
    return dict(pairs)


def refuse_constant(name: str) -> Any:
    raise RequestRefused(400, f"the JSON body holds {name}, which JSON does not have; send finite numbers")


def check_json(body: bytes) -> None:
    """Refuse a body that is not UTF-8 JSON, or that repeats a key (objects are few in a body: the check is cheap)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestRefused(
            400, f"the body is not UTF-8 (byte {error.start} is {body[error.start : error.start + 1]!r}); send UTF-8 JSON"
        ) from None
    try:
        orjson.loads(body)  # what kserve parses with: numbers too large for a double, NaN, trailing data
    except orjson.JSONDecodeError as error:
        raise RequestRefused(400, f"the body is not valid JSON ({error}); send a JSON object with finite numbers") from None
    try:
        json.loads(text, object_pairs_hook=refuse_duplicate_keys, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        raise RequestRefused(
            400, f"the body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}; send a JSON object"
        ) from None
    except RecursionError:
        raise RequestRefused(400, "the JSON body is nested too deeply; send rows as lists of numbers") from None


def check_binary_header(headers: dict[bytes, bytes], body: bytes) -> None:
    value = headers.get(BINARY_LENGTH_HEADER, b"").decode("latin-1").strip()
    if not value.isdigit() or not 0 < int(value) <= len(body):
        raise RequestRefused(
            400,
            f"inference-header-content-length is {value!r}: it must be the length in bytes of the JSON header "
            f"at the start of the body, a whole number from 1 to the body's {len(body)} bytes",
        )


class RequestGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int, limit_flag: str = "--max_body_bytes"):
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.limit_flag = limit_flag

    def _too_large(self, size: str) -> RequestRefused:
        return RequestRefused(
            413,
            f"the request body is {size}; this server takes at most {self.max_body_bytes} bytes ({self.limit_flag}): "
            "send fewer instances per request",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise self._too_large(f"{int(declared)} bytes (Content-Length)")
            body = await self._read(receive)
            kind = media_type(headers)
            if BINARY_LENGTH_HEADER in headers:
                check_binary_header(headers, body)
            elif kind in JSON_TYPES and body:
                check_json(body)
                if kind != b"application/json" or headers.get(b"content-type") != b"application/json":
                    headers[b"content-type"] = b"application/json"
                    scope = {**scope, "headers": list(headers.items())}
        except RequestRefused as refused:
            await _answer(send, refused.status, str(refused))
            return
        await self.app(scope, replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        try:
            return await read_body(receive, self.max_body_bytes)
        except OverflowError:
            raise self._too_large(f"more than {self.max_body_bytes} bytes") from None


async def read_body(receive: Receive, limit: int | None = None) -> bytes:
    """The whole request body; OverflowError as soon as it passes `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if limit is not None and size > limit:
            raise OverflowError(size)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(send: Send, status: int, message: str) -> None:
    content = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            # The body may be unread: the connection closes after this answer.
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})


def replay(body: bytes, receive: Receive) -> Receive:
    """The body once more, for the app behind; then whatever the connection says next."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
