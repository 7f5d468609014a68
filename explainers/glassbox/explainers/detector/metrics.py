"""What the detector serves on kserve's /metrics: instances judged, outliers flagged (their ratio is
the outlier rate), each score against the threshold, and what the threshold was fitted for."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Scores relative to the threshold: 1 is the line between ordinary and outlier.
SCORE_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)

INSTANCES = Counter("glassbox_detector_instances", "Instances scored", ["model"])
OUTLIERS = Counter(
    "glassbox_detector_outliers", "Instances flagged as outliers (their rate over instances is the outlier rate)", ["model"]
)
SCORE_RATIO = Histogram(
    "glassbox_detector_score_to_threshold",
    "Each instance's score divided by the threshold (above 1: flagged)",
    ["model"],
    buckets=SCORE_RATIO_BUCKETS,
)
THRESHOLD = Gauge("glassbox_detector_threshold", "The fitted threshold on the score", ["model"])
TARGET_RATE = Gauge(
    "glassbox_detector_target_false_positive_rate", "The false-positive rate the threshold was set for", ["model"]
)
