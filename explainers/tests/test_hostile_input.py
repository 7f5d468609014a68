"""Malformed and hostile requests against both servers over real loopback HTTP: every one a 4xx whose
`{"error": ...}` names the problem; never a 5xx, a hang or a dropped connection; and the server answers
the next valid request as before."""

from __future__ import annotations

import json

import httpx
import pytest

from glassbox.local import LocalDeployment
from glassbox_testing.dataplane import FaultProxy, pretty
from glassbox_testing.hostile import CASES, EXPLAIN, PREDICT_V1, ROW, rss_bytes, send_raw

Tabular = tuple[LocalDeployment, FaultProxy]


def base_of(deployment: LocalDeployment, path: str) -> str:
    return deployment.explainer_base if path == EXPLAIN else deployment.predictor_base


@pytest.mark.parametrize(("case", "path", "body", "headers", "status", "words"), CASES, ids=[c[0] for c in CASES])
def test_a_malformed_request_gets_a_4xx_naming_the_problem(
    tabular: Tabular, case: str, path: str, body: bytes, headers: dict[str, str], status: int, words: str
) -> None:
    deployment = tabular[0]
    method = "GET" if case.startswith("GET") else "POST"
    answer = httpx.request(method, base_of(deployment, path) + path, content=body, headers=headers, timeout=30)
    assert answer.status_code == status, f"{case}: {pretty(answer)}"
    error = answer.json()["error"]
    assert words.lower() in str(error).lower(), f"{case}: {pretty(answer)}"
    healthy = httpx.post(deployment.predictor_base + PREDICT_V1, json={"instances": [ROW]}, timeout=30)
    assert healthy.status_code == 200


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/json;charset=UTF-8", "text/plain"])
def test_json_is_json_whatever_the_charset_parameter(tabular: Tabular, content_type: str) -> None:
    """What many Java and .NET clients send; once a 500 from the explainer and a 400 blaming the body from the predictor."""
    deployment = tabular[0]
    headers = {"content-type": content_type}
    predicted = httpx.post(
        deployment.predictor_base + PREDICT_V1, content=json.dumps({"instances": [ROW]}), headers=headers, timeout=30
    )
    assert predicted.status_code == 200, pretty(predicted)
    explained = httpx.post(
        deployment.explainer_base + EXPLAIN,
        content=json.dumps({"instances": [ROW], "method": "shap"}),
        headers=headers,
        timeout=60,
    )
    assert explained.status_code == 200, pretty(explained)


@pytest.mark.parametrize("server", ["predictor", "explainer"])
def test_a_body_past_the_limit_gets_413_without_being_read_whole(tabular: Tabular, server: str) -> None:
    """A declared 1 GiB upload: 413 after at most a few MiB sent, and the server does not hold the body."""
    deployment = tabular[0]
    process = next(p for p in deployment.processes if p.name == server)
    base = deployment.predictor_base if server == "predictor" else deployment.explainer_base
    port = int(base.rsplit(":", 1)[1])
    path = PREDICT_V1 if server == "predictor" else EXPLAIN
    before = rss_bytes(process.process.pid)
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {2**30}\r\n\r\n".encode()
    answer = send_raw(port, head, body_chunks=64, chunk=b"[" * 65536)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"at most" in answer and b"--max_body_bytes" in answer
    # Sent in chunks with no length: refused once past the limit, still without holding it all.
    limit = 64 * 2**20 if server == "predictor" else 8 * 2**20
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".encode()
    piece = b"[" * 2**20
    chunked = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    answer = send_raw(port, head, body_chunks=limit // len(piece) + 16, chunk=chunked)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert rss_bytes(process.process.pid) - before < 1.5 * limit
    healthy = httpx.post(deployment.predictor_base + PREDICT_V1, json={"instances": [ROW]}, timeout=30)
    assert healthy.status_code == 200
