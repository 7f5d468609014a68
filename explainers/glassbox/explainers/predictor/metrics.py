"""What the predictor serves on kserve's /metrics, beside kserve's own request metrics: requests and
rows answered, refusals and why, rows waiting, and the forward passes (dynamic batches) run."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS = Counter("glassbox_predictor_requests", "Prediction requests answered", ["model"])
REFUSED = Counter(
    "glassbox_predictor_refused", "Prediction requests refused: overloaded (503) or past the deadline (504)", ["model", "why"]
)
QUEUED_ROWS = Gauge("glassbox_predictor_queued_rows", "Rows waiting for the model", ["model"])
ROWS = Counter("glassbox_predictor_rows", "Rows scored", ["model"])
FORWARD_PASSES = Counter("glassbox_predictor_forward_passes", "Forward passes (dynamic batches) run", ["model"])
