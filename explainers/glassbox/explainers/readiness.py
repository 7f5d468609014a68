"""Readiness that tells the truth: the explainer is ready only while its predictor is.

kserve asks `Model.healthy()` on every request as well as on the readiness
paths, and loads the model again when it says no; so the predictor's state
cannot live there. Instead a background thread probes the predictor's own
readiness path every few seconds (`PredictorWatch`), and `ReadinessGate`
answers the readiness paths (`GET /v1/models/NAME`, `/v2/models/NAME/ready`,
`/v2/health/ready`) with 503 and the reason while the last probe failed.
Explanations are still attempted meanwhile: one that reaches a predictor that
is down gets the 502 that names it.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from glassbox.explainers.request_guard import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

PROBE_PERIOD_SECONDS = 2.0


class PredictorWatch:
    """Runs `probe` (None when the predictor is ready, else what is wrong) every `period_seconds`;
    `problem` is the last answer, and a change is logged once."""

    def __init__(self, probe: Callable[[], str | None], period_seconds: float = PROBE_PERIOD_SECONDS):
        self._probe = probe
        self.period_seconds = period_seconds
        self.problem: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.problem = self._probe()
        self._thread = threading.Thread(target=self._run, name="predictor-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.period_seconds):
            problem = self._probe()
            if problem != self.problem:
                if problem is None:
                    log.info("the predictor is ready again: the explainer is ready")
                else:
                    log.warning("not ready: %s", problem)
            self.problem = problem


def readiness_paths(model_name: str) -> frozenset[str]:
    """kserve's readiness paths for a server of one model."""
    return frozenset({f"/v1/models/{model_name}", f"/v2/models/{model_name}/ready", "/v2/health/ready"})


class ReadinessGate:
    """Answers GET on the readiness paths with 503 and `not_ready()`'s reason while it has one; else kserve answers."""

    def __init__(self, app: ASGIApp, paths: frozenset[str], not_ready: Callable[[], str | None]):
        self.app = app
        self.paths = paths
        self.not_ready = not_ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in self.paths:
            reason = self.not_ready()
            if reason is not None:
                body = json.dumps({"error": f"not ready: {reason}"}).encode()
                headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
