"""The explainer's only way to the model: the predictor's prediction API over HTTP.

Blocking, because its callers are alibi's blocking explainers running in
worker threads: one pool of keep-alive connections shared by every thread
(see http_connections), a timeout on every call, retries with backoff on
502/503/504 and connection failures.
Numbers travel as v2 binary tensors when the predictor speaks v2 (falling back
to JSON, once and for good, if it refuses them). A perturbation batch goes in
one request when it fits `max_request_rows` and `max_request_values`, else in
parts sent concurrently. Failures become `PredictorError`, whose message
names the predictor and what it did.
"""

from __future__ import annotations

import http.client
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from glassbox.explainers.http_connections import ConnectionPool
from glassbox.explainers.payloads import INFERENCE_HEADER, MAX_REQUEST_ROWS, predictions_from_response, v1_request, v2_request

log = logging.getLogger(__name__)

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
    # Most rows and values in one request (a KernelSHAP explanation is one request).
    max_request_rows: int = MAX_REQUEST_ROWS
    max_request_values: int = 16_000_000
    max_connections: int = 16
    use_ssl: bool = False
    binary_tensors: bool = True  # v2 only

    @property
    def base_url(self) -> str:
        scheme = "https" if self.use_ssl else "http"
        return self.host if "://" in self.host else f"{scheme}://{self.host}"

    @property
    def path(self) -> str:
        if self.protocol == "v2":
            return f"/v2/models/{self.model_name}/infer"
        return f"/v1/models/{self.model_name}:predict"

    @property
    def url(self) -> str:
        return self.base_url + self.path

    def request_rows(self, row_values: int) -> int:
        """Rows per request for rows of `row_values` values each."""
        return max(1, min(self.max_request_rows, self.max_request_values // max(1, row_values)))


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

    def retried(self) -> None:
        with self._lock:
            self.retries += 1


class PredictorClient:
    def __init__(self, settings: PredictorSettings):
        self.settings = settings
        self.stats = CallStats()
        self.binary = settings.protocol == "v2" and settings.binary_tensors
        self._binary_answered = False  # once the predictor has answered a binary request, a 4xx is about the input
        self._http = ConnectionPool(settings.base_url, settings.timeout_seconds, max_idle=settings.max_connections)
        self._parts = ThreadPoolExecutor(max_workers=settings.max_connections, thread_name_prefix="predictor-part")

    def close(self) -> None:
        self._parts.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    @property
    def ready_path(self) -> str:
        name = self.settings.model_name
        return f"/v2/models/{name}/ready" if self.settings.protocol == "v2" else f"/v1/models/{name}"

    @property
    def ready_url(self) -> str:
        return self.settings.base_url + self.ready_path

    def ready(self) -> bool:
        """Whether the predictor says its model is ready."""
        try:
            answer = self._http.request("GET", self.ready_path, timeout_seconds=5)
        except (OSError, http.client.HTTPException):
            return False
        return answer.status == 200

    def wait_until_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not self.ready():
            if time.monotonic() > deadline:
                raise PredictorError(f"the predictor at {self.ready_url} was not ready within {timeout_seconds:g} s", 503)
            time.sleep(1.0)

    def predict(self, instances: np.ndarray | list[str]) -> np.ndarray:
        """The predictor's outputs for these instances, in order."""
        row_values = 1 if isinstance(instances, list) else max(1, int(np.prod(np.shape(instances)[1:])))
        size = self.settings.request_rows(row_values)
        if len(instances) <= size:
            return self._predict_part(instances)
        parts = [instances[i : i + size] for i in range(0, len(instances), size)]
        return np.concatenate(list(self._parts.map(self._predict_part, parts)), axis=0)

    def _encode(self, instances: np.ndarray | list[str]) -> tuple[bytes, dict[str, str]]:
        if self.settings.protocol == "v2":
            return v2_request(instances, self.binary)
        return v1_request(instances)

    def _predict_part(self, instances: np.ndarray | list[str]) -> np.ndarray:
        settings = self.settings
        rows = len(instances)
        attempt = 0
        while True:
            binary = self.binary
            content, headers = self._encode(instances)
            try:
                answer = self._http.request("POST", settings.path, content, headers)
            except TimeoutError:
                problem, status = f"did not answer within {settings.timeout_seconds:g} s", 504
            except (OSError, http.client.HTTPException) as error:
                problem, status = f"could not be reached ({type(error).__name__}: {error})", 502
            else:
                if answer.status == 200:
                    self.stats.add(rows)
                    self._binary_answered = self._binary_answered or binary
                    try:
                        return predictions_from_response(settings.protocol, answer.body, answer.headers.get(INFERENCE_HEADER), rows)
                    except ValueError as error:
                        raise PredictorError(f"the predictor at {settings.url} answered garbage: {error}") from None
                detail = answer.text[:300]
                refused_binary = binary and not self._binary_answered and not isinstance(instances, list)
                if refused_binary and answer.status in (400, 415, 422):
                    # A v2 server without the binary tensor extension: JSON from now on.
                    log.warning("the predictor at %s refused a binary tensor (%s: %s); sending JSON from now on", settings.url, answer.status, detail)
                    self.binary = False
                    continue
                if answer.status not in RETRIED_STATUSES:
                    raise PredictorError(f"the predictor at {settings.url} refused {rows} instances with {answer.status}: {detail}")
                problem, status = f"answered {answer.status}: {detail}", 502
            if attempt >= settings.retries:
                raise PredictorError(f"the predictor at {settings.url} {problem} (after {attempt + 1} attempts)", status)
            attempt += 1
            self.stats.retried()
            time.sleep(settings.backoff_seconds * 2 ** (attempt - 1))


class PredictionMemo:
    """Within one explanation, a row already scored is not sent again.

    alibi and shap ask for the explained instance's prediction more than once,
    anchor samples repeat rows, and text perturbations repeat sentences. Calls
    larger than `max_rows_per_call` (KernelSHAP's coalitions, all distinct) go
    straight through: hashing them would cost more than it saves.
    """

    def __init__(self, max_rows_per_call: int = 4096, max_entries: int = 50_000):
        self.max_rows_per_call = max_rows_per_call
        self.max_entries = max_entries
        self._position: dict[bytes | str, int] = {}  # row -> its scores' position in _table
        self._table: np.ndarray | None = None

    def predict(self, instances: np.ndarray | list[str], predict: Callable[[np.ndarray | list[str]], np.ndarray]) -> np.ndarray:
        if len(instances) > self.max_rows_per_call or len(instances) == 0:
            return predict(instances)
        if isinstance(instances, list):
            keys: list[bytes | str] = list(instances)
        else:
            instances = np.ascontiguousarray(instances)
            rows = instances.reshape(len(instances), -1)
            # Each row's bytes as one numpy scalar: one C pass instead of a tobytes() per row.
            keys = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel().tolist()
        position = self._position
        missing: dict[bytes | str, int] = {}
        for index, key in enumerate(keys):
            if key not in position and key not in missing:
                missing[key] = index
        if missing:
            wanted = list(missing.values())
            scores = predict([instances[i] for i in wanted] if isinstance(instances, list) else instances[wanted])
            if len(missing) == len(keys):  # every row new and distinct: the answer as it came
                self._remember(list(missing), scores)
                return scores
            if not self._remember(list(missing), scores):
                fresh = dict(zip(missing, range(len(wanted)), strict=True))
                return np.stack([scores[fresh[k]] if k in fresh else self._table[position[k]] for k in keys])  # type: ignore[index]
        assert self._table is not None
        return self._table[[position[k] for k in keys]]

    def _remember(self, keys: list[bytes | str], scores: np.ndarray) -> bool:
        """Keeps these rows' scores unless the memo is full; whether it kept them."""
        if len(self._position) + len(keys) > self.max_entries:
            return False
        first = len(self._position)  # rows kept so far: the table's filled part
        if self._table is None or first + len(keys) > len(self._table):
            # Room for twice what is needed, so that rows are copied about once in all, not once a call.
            grown = np.empty((2 * (first + len(keys)), *scores.shape[1:]), dtype=scores.dtype)
            if self._table is not None:
                grown[:first] = self._table[:first]
            self._table = grown
        self._table[first : first + len(keys)] = scores
        self._position.update(zip(keys, range(first, first + len(keys)), strict=True))
        return True


@dataclass
class _Waiting:
    rows: np.ndarray
    woken: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    lead: bool = False  # woken to send the next shared call, not with a result


class CallCoalescer:
    """Concurrent explanations' perturbations share predictor calls.

    While one call is in flight, the calls other explanation threads make
    queue up; when it returns, the first of them sends everything queued as
    one request and hands each thread its own rows back. A lone explanation
    waits for nothing. Text and arrays of another row shape than the first
    queued go in a later call.
    """

    def __init__(self, send: Callable[[np.ndarray | list[str]], np.ndarray]):
        self._send = send
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._busy = False

    def predict(self, instances: np.ndarray | list[str]) -> np.ndarray:
        if isinstance(instances, list):
            return self._send(instances)  # text: rare to coincide, and strings do not stack
        me = _Waiting(np.asarray(instances))
        with self._lock:
            self._queue.append(me)
            me.lead = not self._busy
            self._busy = True
        if not me.lead:
            me.woken.wait()
        if me.lead:
            self._send_queued()
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _send_queued(self) -> None:
        with self._lock:
            shape = self._queue[0].rows.shape[1:]
            batch = [w for w in self._queue if w.rows.shape[1:] == shape]
            self._queue = [w for w in self._queue if w.rows.shape[1:] != shape]
        try:
            scores = self._send(np.concatenate([w.rows for w in batch]) if len(batch) > 1 else batch[0].rows)
            ends = np.cumsum([len(w.rows) for w in batch])
            for waiting, start, end in zip(batch, [0, *ends[:-1]], ends, strict=True):
                waiting.result = scores[start:end]
        except BaseException as error:  # noqa: BLE001  (each waiting explanation gets the predictor's error)
            for waiting in batch:
                waiting.error = error
        with self._lock:
            if self._queue:
                self._queue[0].lead = True  # the next call is theirs to send
                self._queue[0].woken.set()
            else:
                self._busy = False
        for waiting in batch:
            waiting.woken.set()
