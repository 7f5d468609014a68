"""KServe's request logger, played by the tests and the demo: a prediction request posted as the CloudEvent
the logger sends (kserve pkg/logger/worker.go `sendHttpCloudEvent`, binary mode: the request's bytes as the
body, its content type, the attributes as `ce-` headers; pkg/logger/handler.go `ServeHTTP` for what is copied)."""

from __future__ import annotations

import json
import uuid

import httpx
import numpy as np


def logger_headers(
    body: bytes,
    content_type: str = "application/json",
    kind: str = "request",
    inference_service: str = "credit",
    namespace: str = "ml",
) -> dict[str, str]:
    """The headers KServe's logger sends with one logged request (or response, `kind="response"`)."""
    return {
        "Ce-Id": str(uuid.uuid4()),
        "Ce-Source": "http://localhost:9081/",
        "Ce-Specversion": "1.0",
        "Ce-Time": "2026-12-04T04:30:00.123456789Z",
        "Ce-Type": f"org.kubeflow.serving.inference.{kind}",
        "Ce-Inferenceservicename": inference_service,
        "Ce-Namespace": namespace,
        "Ce-Component": "predictor",
        "Ce-Endpoint": "default",
        "Ce-Metadata": "{}",
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
    }


def log_request(url: str, body: bytes, **headers: str) -> httpx.Response:
    """One logged request, posted to `url` (an InferenceService's logger.url)."""
    return httpx.post(url, content=body, headers=logger_headers(body, **headers), timeout=30)


def log_rows(url: str, rows: np.ndarray, batch: int = 10) -> int:
    """`rows` as v1 prediction requests of `batch` rows each, logged one by one; the rows the monitor accepted."""
    accepted = 0
    for start in range(0, len(rows), batch):
        answer = log_request(url, json.dumps({"instances": rows[start : start + batch].tolist()}).encode())
        answer.raise_for_status()
        accepted += int(answer.json()["accepted"])
    return accepted
