"""What the explainer serves on kserve's /metrics, beside kserve's own request metrics.

Explanation latency per method and outcome, what each explanation asked of the
predictor, how many explanations run and wait, and why requests were refused.
Labels hold only names the server chose (methods it hosts, fixed outcomes),
never a value from a request.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from glassbox.explainers.predictor_calls.errors import PredictorError
from glassbox.explainers.serving.errors import InputError

# What became of an explanation request.
OK = "ok"
BAD_REQUEST = "bad_request"  # a 4xx: the request, not the server
TIMEOUT = "timeout"  # 504: past explainer.timeoutSeconds
PREDICTOR_ERROR = "predictor_error"  # 502/504: the predictor failed or was too slow for one call
OVERLOADED = "overloaded"  # 503: every worker busy and the waiting room full
ERROR = "error"  # 500: the explainer failed
# The method label of a request refused before its method was known.
NO_METHOD = ""

EXPLANATION_SECONDS = Histogram(
    "glassbox_explainer_explanation_seconds",
    "Time from request to answer, per method and outcome",
    ["model", "method", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
PREDICTOR_CALLS = Histogram(
    "glassbox_explainer_predictor_calls_per_explanation",
    "Predictor calls one explanation made (after its memo; concurrent explanations may share one HTTP request)",
    ["model", "method"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
)
PREDICTOR_ROWS = Histogram(
    "glassbox_explainer_predictor_rows_per_explanation",
    "Rows one explanation sent to the predictor",
    ["model", "method"],
    buckets=(1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000),
)
RUNNING = Gauge("glassbox_explainer_running_explanations", "Explanations being computed now", ["model"])
WAITING = Gauge("glassbox_explainer_waiting_explanations", "Explanations admitted and waiting for a worker", ["model"])
REFUSED = Counter(
    "glassbox_explainer_refused", "Explanation requests refused with 503 (every worker busy, the waiting room full)", ["model"]
)
TIMEOUTS = Counter("glassbox_explainer_timeouts", "Explanations answered 504 at explainer.timeoutSeconds", ["model", "method"])
PREDICTOR_READY = Gauge("glassbox_explainer_predictor_ready", "1 while the predictor's last readiness probe succeeded", ["model"])
# Explanation records: what was written, found again, and what the store cost or failed.
RECORDS_WRITTEN = Counter("glassbox_explainer_records_written", "Explanation records written, per outcome", ["model", "outcome"])
RECORD_LOOKUPS = Counter(
    "glassbox_explainer_record_lookups",
    "Explanations asked for: served from a record (hit), computed (miss), or shared with an identical one in flight (shared)",
    ["model", "result"],
)
RECORD_STORE_ERRORS = Counter(
    "glassbox_explainer_record_store_errors", "Reads and writes of the records store that failed", ["model", "operation"]
)
RECORD_STORE_SECONDS = Histogram(
    "glassbox_explainer_record_store_seconds",
    "Time of one read or write of the records store",
    ["model", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)


def outcome_of(error: BaseException) -> str:
    """What became of an explanation that raised `error`, as its metrics and its record say it."""
    if isinstance(error, InputError):
        return BAD_REQUEST
    if isinstance(error, PredictorError):
        return PREDICTOR_ERROR
    status = getattr(error, "status_code", None)
    if status:
        return {503: OVERLOADED, 504: TIMEOUT}.get(status, BAD_REQUEST if status < 500 else ERROR)
    return ERROR
