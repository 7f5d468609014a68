"""What KServe's request logger does beside a predictor in a cluster, done by the predictor itself where no
KServe runs (local mode): a copy of each prediction request posted to a URL as a CloudEvent.

As KServe's logger (pkg/logger/handler.go `ServeHTTP`, pkg/logger/worker.go `sendHttpCloudEvent`): the
request's bytes as the body, its `Content-Type`, and the attributes as headers (`ce-specversion: 1.0`,
`ce-type: org.kubeflow.serving.inference.request`, `ce-id` from the request's own `ce-id` or a new UUID,
`ce-source`, `ce-time`, and the extensions `ce-inferenceservicename`, `ce-namespace`, `ce-component`,
`ce-endpoint`). Sent from a thread of its own through a queue of 100, as KServe's is; unlike KServe's, whose
full queue makes the predictor's requests wait, a full queue here drops the copy and counts it: a slow
monitor must not slow predictions.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from glassbox.contract.wire import CALLER_HEADER

log = logging.getLogger(__name__)

QUEUE_SIZE = 100
SEND_TIMEOUT_SECONDS = 10.0
REQUEST_EVENT = "org.kubeflow.serving.inference.request"


def _is_prediction(path: str) -> bool:
    return path.endswith(":predict") or path.endswith("/infer")


class RequestLogger:
    """ASGI: copies each POSTed prediction request (v1 `:predict`, v2 `/infer`; or each POST to a path `copied`
    accepts) to `url` as KServe's logger would."""

    def __init__(
        self,
        app: Any,
        url: str,
        inference_service: str,
        namespace: str = "local",
        copied: Callable[[str], bool] = _is_prediction,
    ):
        self.app = app
        self.copied = copied
        self.url = url
        self.inference_service = inference_service
        self.namespace = namespace
        self.sent = 0
        self.dropped = 0
        self._queue: queue.Queue[tuple[bytes, dict[str, str]] | None] = queue.Queue(maxsize=QUEUE_SIZE)
        self._sender = threading.Thread(target=self._send_forever, name="request-logger", daemon=True)
        self._sender.start()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not self.copied(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        chunks: list[bytes] = []

        async def copying() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    self._enqueue(b"".join(chunks), headers)
            return message

        await self.app(scope, copying, send)

    def _enqueue(self, body: bytes, headers: dict[str, str]) -> None:
        event = {
            "ce-specversion": "1.0",
            "ce-type": REQUEST_EVENT,
            "ce-id": headers.get("ce-id") or str(uuid.uuid4()),
            "ce-source": "http://localhost:9081/",
            "ce-time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "ce-inferenceservicename": self.inference_service,
            "ce-namespace": self.namespace,
            "ce-component": "predictor",
            "ce-endpoint": "default",
            "content-type": headers.get("content-type", "application/json"),
        }
        # As KServe's logger with `metadataHeaders: [CALLER_HEADER]` (the operator sets it): the caller passed on.
        caller = headers.get(CALLER_HEADER.lower())
        if caller is not None:
            event["ce-metadata"] = json.dumps({CALLER_HEADER: [caller]})
        try:
            self._queue.put_nowait((body, event))
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 10, 100) or self.dropped % 1000 == 0:
                log.warning("the request logger's queue is full: %d copies dropped so far (%s is slow)", self.dropped, self.url)

    def _send_forever(self) -> None:
        with httpx.Client(timeout=SEND_TIMEOUT_SECONDS) as client:
            while (item := self._queue.get()) is not None:
                body, event = item
                try:
                    answer = client.post(self.url, content=body, headers=event)
                    if answer.status_code != 200:
                        log.info("the request logger's copy got %d from %s: %s", answer.status_code, self.url, answer.text[:200])
                    self.sent += 1
                except httpx.HTTPError as error:
                    log.info("the request logger could not send a copy to %s: %s", self.url, error)

    def close(self) -> None:
        self._queue.put(None)
