"""The explainer's only way to the model: the predictor's prediction API over HTTP.

Pooled keep-alive connections, a timeout on every call, retries with backoff on
502/503/504 and connection failures, and perturbation batches split to the
predictor's batch limit and sent concurrently. Failures become
`PredictorError`, whose message names the predictor and what it did.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from glassbox.explainers.payloads import predictions_from_v1, predictions_from_v2, v2_request_body

RETRIED_STATUSES = frozenset({502, 503, 504})


class PredictorError(RuntimeError):
    """The predictor is down, slow, refused the call, or answered garbage; `status` is what the explainer answers."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


class ExplanationCancelled(RuntimeError):
    """The explanation ran past its deadline; its worker thread stops at the next predictor call."""


@dataclass(frozen=True)
class PredictorSettings:
    host: str
    model_name: str
    protocol: str = "v1"
    timeout_seconds: float = 30.0
    retries: int = 3
    backoff_seconds: float = 0.2
    max_batch_size: int = 1024
    max_connections: int = 16
    use_ssl: bool = False

    @property
    def url(self) -> str:
        scheme = "https" if self.use_ssl else "http"
        base = self.host if "://" in self.host else f"{scheme}://{self.host}"
        if self.protocol == "v2":
            return f"{base}/v2/models/{self.model_name}/infer"
        return f"{base}/v1/models/{self.model_name}:predict"


@dataclass
class CallStats:
    """What the explainer asked of the predictor (for logs and benchmarks)."""

    calls: int = 0
    rows: int = 0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, rows: int) -> None:
        with self._lock:
            self.calls += 1
            self.rows += rows


class PredictorClient:
    def __init__(self, settings: PredictorSettings):
        self.settings = settings
        self.stats = CallStats()
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(max_connections=self.settings.max_connections, max_keepalive_connections=self.settings.max_connections)
            self._client = httpx.AsyncClient(timeout=self.settings.timeout_seconds, limits=limits)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def ready_url(self) -> str:
        base = self.settings.url.rsplit("/models/", 1)[0]
        name = self.settings.model_name
        return f"{base}/models/{name}/ready" if self.settings.protocol == "v2" else f"{base}/models/{name}"

    async def ready(self) -> bool:
        """Whether the predictor says its model is ready."""
        try:
            response = await self._http().get(self.ready_url, timeout=5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def wait_until_ready(self, timeout_seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_seconds
        while not await self.ready():
            if asyncio.get_running_loop().time() > deadline:
                raise PredictorError(f"the predictor at {self.ready_url} was not ready within {timeout_seconds:g} s", 503)
            await asyncio.sleep(1.0)

    async def predict(self, instances: np.ndarray | list[str]) -> np.ndarray:
        """The predictor's outputs for these instances, in order."""
        size = self.settings.max_batch_size
        chunks = [instances[i : i + size] for i in range(0, len(instances), size)]
        if len(chunks) == 1:
            return await self._predict_chunk(chunks[0])
        results = await asyncio.gather(*(self._predict_chunk(chunk) for chunk in chunks))
        return np.concatenate(results, axis=0)

    async def _predict_chunk(self, instances: np.ndarray | list[str]) -> np.ndarray:
        settings = self.settings
        if settings.protocol == "v2":
            body = v2_request_body(instances if isinstance(instances, list) else np.asarray(instances))
        else:
            body = {"instances": instances if isinstance(instances, list) else np.asarray(instances).tolist()}
        rows = len(instances)
        attempt = 0
        while True:
            try:
                response = await self._http().post(settings.url, json=body)
            except httpx.TimeoutException:
                problem, status = f"did not answer within {settings.timeout_seconds:g} s", 504
            except httpx.TransportError as error:
                problem, status = f"could not be reached ({type(error).__name__}: {error})", 502
            else:
                if response.status_code == 200:
                    self.stats.add(rows)
                    try:
                        parse = predictions_from_v2 if settings.protocol == "v2" else predictions_from_v1
                        return parse(response.json(), rows)
                    except ValueError as error:
                        raise PredictorError(f"the predictor at {settings.url} answered garbage: {error}") from None
                detail = response.text[:300]
                if response.status_code not in RETRIED_STATUSES:
                    raise PredictorError(
                        f"the predictor at {settings.url} refused {rows} instances with {response.status_code}: {detail}"
                    )
                problem, status = f"answered {response.status_code}: {detail}", 502
            if attempt >= settings.retries:
                raise PredictorError(f"the predictor at {settings.url} {problem} (after {attempt + 1} attempts)", status)
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(settings.backoff_seconds * 2 ** (attempt - 1))

    def blocking_predict_fn(
        self, loop: asyncio.AbstractEventLoop, cancelled: threading.Event | None = None
    ) -> Callable[[np.ndarray | list[str]], np.ndarray]:
        """A blocking `predict(X) -> array` for alibi, run in a worker thread; the calls run on the server's loop."""

        def predict(instances: np.ndarray | list[str]) -> np.ndarray:
            if cancelled is not None and cancelled.is_set():
                raise ExplanationCancelled("the explanation ran past its deadline")
            if not isinstance(instances, list):
                instances = np.asarray(instances)
            future = asyncio.run_coroutine_threadsafe(self.predict(instances), loop)
            return future.result()

        return predict


class IoLoop:
    """An event loop on its own thread for predictor calls.

    alibi's blocking code runs in worker threads and waits on calls scheduled
    here, so neither the server's loop nor load-time fitting ever blocks on a
    nested loop.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="predictor-io", daemon=True)
        self._thread.start()

    def run(self, coroutine: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
