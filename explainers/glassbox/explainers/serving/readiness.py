"""Readiness that tells the truth: the explainer is ready only while its predictor is.

kserve asks `Model.healthy()` on every request as well as on the readiness
paths, and loads the model again when it says no; so the predictor's state
cannot live there. Instead a background thread probes the predictor's own
readiness path every few seconds (`PredictorWatch`), and `ReadinessGate`
answers the readiness paths (`GET /v1/models/NAME`, `/v2/models/NAME/ready`,
`/v2/health/ready`) with 503 and the reason while the last probe failed.
Explanations are still attempted meanwhile: one that reaches a predictor that
is down gets the 502 that names it.

A predictor that may scale to zero (KServe's serverless mode, `minReplicas: 0`)
would never be let go by a probe every few seconds, each one a request through
its activator. For it the watch probes only after an explanation's call failed
as a down predictor's does, until the predictor is ready again, and stays
quiet while explanations succeed or none come.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable

from glassbox.explainers.serving.request_guard import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

PROBE_PERIOD_SECONDS = 2.0


class PredictorWatch:
    """Runs `probe` (None when the predictor is ready, else what is wrong) every `period_seconds`;
    `problem` is the last answer, and a change is logged once. With `while_idle` False it probes only
    from a failed call (`call_failed`) until the predictor is ready again."""

    def __init__(self, probe: Callable[[], str | None], period_seconds: float = PROBE_PERIOD_SECONDS, while_idle: bool = True):
        self._probe = probe
        self.period_seconds = period_seconds
        self.while_idle = while_idle
        self.problem: str | None = None
        self.probes = 0  # probes sent since start, the first included
        self._stop = threading.Event()
        self._failed_call = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.problem = self._probed()
        self._thread = threading.Thread(target=self._run, name="predictor-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._failed_call.set()

    def call_failed(self, problem: str) -> None:
        """An explanation's call found the predictor down (unreachable, 502 or 503, no answer in time): not ready
        until a probe finds it ready. A watch that probes while idle finds that out itself."""
        if not self.while_idle:
            self._record(problem)
            self._failed_call.set()

    def _probed(self) -> str | None:
        self.probes += 1
        return self._probe()

    def _record(self, problem: str | None) -> None:
        if problem != self.problem:
            if problem is None:
                log.info("the predictor is ready again: the explainer is ready")
            else:
                log.warning("not ready: %s", problem)
        self.problem = problem

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self.while_idle and self.problem is None:
                self._failed_call.wait()  # quiet until a call fails (or the watch stops)
                self._failed_call.clear()
                continue
            if self._stop.wait(self.period_seconds):
                return
            self._record(self._probed())


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
