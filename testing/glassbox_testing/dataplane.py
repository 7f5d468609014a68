"""Data with known answers, models trained on it, and a predictor proxy that misbehaves on demand."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from glassbox.contract.api import ExplainedModelSpec, explained_model
from glassbox.explainers.predictor.examples import image_classifier, tabular_classifier, text_classifier
from glassbox.explainers.serving.payloads import INFERENCE_HEADER

FEATURES = ["f0", "f1", "f2", "f3", "f4"]


def tabular_data(rows: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Five uniform features; the label depends only on f0 (f0 > 0.5)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, size=(rows, len(FEATURES)))
    return X, (X[:, 0] > 0.5).astype(int)


FILLER = "the movie plot story acting film scenes music cast was is and with a of very quite rather".split()


def text_data(rows: int = 300, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Sentences of filler words; the label is 1 exactly when 'excellent' appears."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for index in range(rows):
        words = list(rng.choice(FILLER, size=8))
        label = index % 2
        if label:
            words.insert(int(rng.integers(0, len(words))), "excellent")
        texts.append(" ".join(words))
        labels.append(label)
    return texts, np.asarray(labels)


def image_data(rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """16x16 grey images; the label is 1 exactly when the top-left 6x6 block is bright."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.3, size=(rows, 16, 16, 1))
    labels = np.arange(rows) % 2
    images[labels == 1, :6, :6, :] += 0.7
    return images, labels


def manifest(name: str, spec: dict[str, Any], folder: Path) -> Path:
    """`spec` as a user writes it, checked by the API models on the way to the file (a typo fails here)."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(explained_model(name, ExplainedModelSpec.model_validate(spec)), sort_keys=False))
    return path


def build_tabular(folder: Path, protocol: str = "v2") -> Path:
    X, y = tabular_data()
    tabular_classifier(X, y, folder / "model", epochs=400)
    frame = pd.DataFrame(X, columns=FEATURES)
    frame["label"] = y
    frame.to_csv(folder / "train.csv", index=False)
    np.save(folder / "train-labels.npy", y)
    return manifest(
        "synthetic",
        {
            "predictor": {
                "modelFormat": "pytorch",
                "storageUri": "model",
                "protocol": protocol,
                "batching": {"maxBatchSize": 512, "maxLatencyMs": 2},
            },
            "explainer": {
                "referenceData": {"uri": "train.csv", "targetColumn": "label"},
                "timeoutSeconds": 60,
                "methods": [
                    {"name": "anchors", "type": "AnchorTabular"},
                    {"name": "shap", "type": "KernelShap", "kernelShap": {"nsamples": 300, "backgroundSize": 40}},
                    {"name": "counterfactual", "type": "Counterfactual"},
                    {"name": "ig", "type": "IntegratedGradients", "integratedGradients": {"nSteps": 300}},
                    {"name": "influence", "type": "TrainingDataInfluence", "trainingDataInfluence": {"topK": 5}},
                ],
            },
            # Fitted on the explainer's reference data: 400 uniform rows, 120 of them held out.
            "detector": {"falsePositiveRate": 0.01},
        },
        folder,
    )


def build_text(folder: Path, detector: bool = False) -> Path:
    """The text model; with `detector`, an outlier detector fitted on 600 of the training texts (a CSV column)."""
    texts, y = text_data()
    text_classifier(texts, y, folder / "model")
    spec: dict[str, Any] = {
        "predictor": {"modelFormat": "pytorch", "storageUri": "model", "protocol": "v1"},
        "explainer": {"methods": [{"name": "anchors", "type": "AnchorText"}, {"name": "ig", "type": "IntegratedGradients"}]},
    }
    if detector:
        pd.DataFrame({"review": text_data(rows=600, seed=1)[0]}).to_csv(folder / "reviews.csv", index=False)
        spec["detector"] = {"falsePositiveRate": 0.02, "referenceData": {"uri": "reviews.csv", "textColumn": "review"}}
    return manifest("sentiment", spec, folder)


def build_image(folder: Path) -> Path:
    images, y = image_data()
    image_classifier(images, y, folder / "model")
    np.save(folder / "background.npy", images[y == 0][:20])
    return manifest(
        "squares",
        {
            "predictor": {"modelFormat": "pytorch", "storageUri": "model", "protocol": "v1"},
            "explainer": {
                "methods": [
                    {
                        "name": "anchors",
                        "type": "AnchorImage",
                        "anchorImage": {"nSegments": 16, "imageShape": [16, 16, 1]},
                        "referenceData": {"uri": "background.npy"},
                    },
                    {"name": "ig", "type": "IntegratedGradients"},
                ]
            },
        },
        folder,
    )


class _FaultHandler(BaseHTTPRequestHandler):
    """Answers as its proxy's mode says: forwarded, 503, garbage, no binary, late, or one byte at a time."""

    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def _answer(
        self, status: int, body: bytes, content_type: str = "application/json", extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.proxy.mode != "drip":
            self.wfile.write(body)
            return
        for sent in range(len(body)):
            self.wfile.write(body[sent : sent + 1])
            self.wfile.flush()
            time.sleep(self.proxy.drip_seconds)
            if self.proxy.mode != "drip":  # healthy again: the rest at once
                self.wfile.write(body[sent + 1 :])
                return

    def _forward(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.proxy.requests += 1
        if self.path.endswith(("/infer", ":predict")):
            self.proxy.predictions += 1
        if self.proxy.mode == "unavailable":
            return self._answer(503, b'{"error": "overloaded"}')
        if self.proxy.mode == "garbage":
            return self._answer(200, b'{"predictions": "not numbers')
        if self.proxy.mode == "json-only" and self.headers.get(INFERENCE_HEADER):
            return self._answer(400, b'{"error": "binary tensors are not supported"}')
        if self.proxy.mode == "slow":
            time.sleep(self.proxy.delay)
        forwarded = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", INFERENCE_HEADER)}
        answer = self.proxy.client.request(method, self.proxy.upstream + self.path, content=body, headers=forwarded)
        extra = {INFERENCE_HEADER: answer.headers[INFERENCE_HEADER]} if INFERENCE_HEADER in answer.headers else {}
        self._answer(answer.status_code, answer.content, answer.headers.get("content-type", "application/json"), extra)

    def do_POST(self) -> None:  # noqa: N802
        self._forward("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._forward("GET")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up on a slow answer is part of the test


class FaultProxy:
    """A real HTTP server on loopback in front of the predictor.

    mode "pass" forwards; "unavailable" answers 503; "slow" waits `delay` seconds
    first; "drip" sends the predictor's answer one byte every `drip_seconds`
    (no read ever times out, the answer takes minutes); "garbage" answers 200
    with a body no predictor would send; "json-only" refuses v2 binary tensors
    with 400, as a server without that extension does.
    """

    def __init__(self, upstream: str, delay: float = 5.0):
        self.upstream = upstream.rstrip("/")
        self.mode = "pass"
        self.delay = delay
        self.drip_seconds = 0.5
        self.requests = 0
        self.predictions = 0  # of those, prediction requests (not readiness probes)
        self.client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=16))
        handler = type("FaultHandler", (_FaultHandler,), {"proxy": self})
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.client.close()
        self.server.shutdown()
        self.server.server_close()


def explain(url: str, instances: Any, method: str, **extra: Any) -> httpx.Response:
    return httpx.post(url, json={"instances": instances, "method": method, **extra}, timeout=120)


def pretty(response: httpx.Response) -> str:
    try:
        return json.dumps(response.json())[:500]
    except ValueError:
        return response.text[:500]
