"""The explainer's only way to the model: the predictor's prediction API over HTTP.

Blocking, because its callers are alibi's blocking explainers running in
worker threads: one pool of keep-alive connections shared by every thread
(see http_connections). A call is bounded as a whole, by `timeout_seconds`
and by its explanation's deadline, whichever comes first. A call that timed
out is not sent again (the predictor is slow, and a second call would only
load it more); a 502, 503 or failed connection is, with backoff, while the
deadline allows and the retry budget lasts (retries at most a fifth of calls,
beyond a burst of ten).
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from glassbox.contract.server_args import MAX_REQUEST_ROWS
from glassbox.contract.wire import CALLER_HEADER, EXPLAINER_CALLER
from glassbox.explainers.predictor_calls.errors import PastDeadline, PredictorError
from glassbox.explainers.predictor_calls.http_connections import ConnectionPool
from glassbox.explainers.serving.payloads import INFERENCE_HEADER, predictions_from_response, v1_request, v2_request

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({502, 503})


class RetryBudget:
    """Retries may add at most `ratio` to the calls made, beyond a burst of `burst`: a predictor that
    fails every call is not sent (1 + retries) times the load."""

    def __init__(self, ratio: float = 0.2, burst: float = 10.0):
        self.ratio = ratio
        self.burst = burst
        self._tokens = burst
        self._lock = threading.Lock()

    def called(self) -> None:
        with self._lock:
            self._tokens = min(self.burst, self._tokens + self.ratio)

    def take(self) -> bool:
        """Whether one more retry may be sent now."""
        with self._lock:
            if self._tokens < 1:
                return False
            self._tokens -= 1
            return True


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
        self._retry_budget = RetryBudget()
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
        return self.readiness_problem() is None

    def readiness_problem(self, timeout_seconds: float = 5.0) -> str | None:
        """None when the predictor says its model is ready, else what it did instead."""
        try:
            answer = self._http.request(
                "GET", self.ready_path, timeout_seconds=timeout_seconds, deadline=time.monotonic() + timeout_seconds
            )
        except TimeoutError:
            return f"the predictor at {self.ready_url} did not answer within {timeout_seconds:g} s"
        except (OSError, http.client.HTTPException) as error:
            return f"the predictor at {self.ready_url} could not be reached ({type(error).__name__}: {error})"
        if answer.status != 200:
            return f"the predictor at {self.ready_url} answered {answer.status}: {answer.text[:200]}"
        return None

    def wait_until_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while not self.ready():
            if time.monotonic() > deadline:
                raise PredictorError(
                    f"the predictor at {self.ready_url} was not ready within {timeout_seconds:g} s", 503, down=True
                )
            time.sleep(1.0)

    def predict(self, instances: np.ndarray | list[str], deadline: float | None = None) -> np.ndarray:
        """The predictor's outputs for these instances, in order; PastDeadline past `deadline`
        (a `time.monotonic()` instant)."""
        row_values = 1 if isinstance(instances, list) else max(1, int(np.prod(np.shape(instances)[1:])))
        size = self.settings.request_rows(row_values)
        if len(instances) <= size:
            return self._predict_part(instances, deadline)
        parts = [instances[i : i + size] for i in range(0, len(instances), size)]
        return np.concatenate(list(self._parts.map(lambda part: self._predict_part(part, deadline), parts)), axis=0)

    def _encode(self, instances: np.ndarray | list[str]) -> tuple[bytes, dict[str, str]]:
        """The call's body and headers: these are the explainer's perturbed inputs, not users' traffic (CALLER_HEADER)."""
        content, headers = v2_request(instances, self.binary) if self.settings.protocol == "v2" else v1_request(instances)
        return content, {**headers, CALLER_HEADER: EXPLAINER_CALLER}

    def _timed_out(self, started: float, deadline: float | None) -> Exception:
        """A call that got no whole answer in time: the explanation's deadline, or the predictor's own timeout."""
        settings = self.settings
        if deadline is not None and time.monotonic() >= deadline:
            return PastDeadline(
                f"the explanation ran past its deadline waiting {time.monotonic() - started:.1f} s for the predictor at {settings.url}"
            )
        return PredictorError(
            f"the predictor at {settings.url} did not answer within {settings.timeout_seconds:g} s", 504, down=True
        )

    def _may_retry(self, attempt: int, backoff: float, deadline: float | None) -> bool:
        """Another attempt: within the retries, before the deadline, and while the retry budget allows."""
        if attempt >= self.settings.retries or (deadline is not None and time.monotonic() + backoff >= deadline):
            return False
        return self._retry_budget.take()

    def _predict_part(self, instances: np.ndarray | list[str], deadline: float | None) -> np.ndarray:
        settings = self.settings
        rows = len(instances)
        attempt = 0
        while True:
            binary = self.binary
            content, headers = self._encode(instances)
            started = time.monotonic()
            own_deadline = started + settings.timeout_seconds
            if attempt == 0:
                self._retry_budget.called()
            try:
                answer = self._http.request(
                    "POST", settings.path, content, headers, deadline=min(own_deadline, deadline or own_deadline)
                )
            except TimeoutError:
                # Not sent again: a predictor this slow is only slowed further by a second call.
                raise self._timed_out(started, deadline) from None
            except (OSError, http.client.HTTPException) as error:
                problem, status = f"could not be reached ({type(error).__name__}: {error})", 502
            else:
                if answer.status == 200:
                    self.stats.add(rows)
                    self._binary_answered = self._binary_answered or binary
                    try:
                        return predictions_from_response(
                            settings.protocol, answer.body, answer.headers.get(INFERENCE_HEADER), rows
                        )
                    except ValueError as error:
                        raise PredictorError(f"the predictor at {settings.url} answered garbage: {error}") from None
                detail = answer.text[:300]
                refused_binary = binary and not self._binary_answered and not isinstance(instances, list)
                if refused_binary and answer.status in (400, 415, 422):
                    # A v2 server without the binary tensor extension: JSON from now on.
                    log.warning(
                        "the predictor at %s refused a binary tensor (%s: %s); sending JSON from now on",
                        settings.url,
                        answer.status,
                        detail,
                    )
                    self.binary = False
                    continue
                if answer.status not in RETRIED_STATUSES:
                    raise PredictorError(
                        f"the predictor at {settings.url} refused {rows} instances with {answer.status}: {detail}"
                    )
                problem, status = f"answered {answer.status}: {detail}", 502
            backoff = settings.backoff_seconds * 2**attempt
            if not self._may_retry(attempt, backoff, deadline):
                raise PredictorError(
                    f"the predictor at {settings.url} {problem} (after {attempt + 1} attempts)", status, down=True
                )
            attempt += 1
            self.stats.retried()
            time.sleep(backoff)
