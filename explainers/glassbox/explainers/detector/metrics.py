"""What the detector serves on kserve's /metrics: instances judged, outliers flagged (their ratio is
the outlier rate), each score against the threshold, and what the threshold was fitted for; with drift,
the logged inputs, the latest window's p-value and verdict, and each feature's distance."""

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

# Drift (spec.detector.drift): the latest window's test, and what feeds it.
DRIFT_INPUTS = Counter("glassbox_detector_drift_inputs", "Logged prediction inputs added to the drift window", ["model"])
DRIFT_EVENTS_IGNORED = Counter(
    "glassbox_detector_drift_events_ignored", "Logged events that carried no input (responses, bodiless requests)", ["model"]
)
DRIFT_EVENTS_REFUSED = Counter(
    "glassbox_detector_drift_events_refused",
    "Logged events refused (not a CloudEvent, or a request that cannot be read)",
    ["model"],
)
DRIFT_WINDOW_ROWS = Gauge("glassbox_detector_drift_window_rows", "Inputs in the drift window at its latest test", ["model"])
DRIFT_P_VALUE = Gauge(
    "glassbox_detector_drift_p_value", "The latest window's combined p-value (drifted at or below the rate)", ["model"]
)
DRIFTED = Gauge("glassbox_detector_drifted", "1 when the latest window drifted, else 0", ["model"])
DRIFT_FALSE_ALARM_RATE = Gauge("glassbox_detector_drift_false_alarm_rate", "The stated false-alarm rate per window", ["model"])
DRIFT_FEATURE_DISTANCE = Gauge(
    "glassbox_detector_drift_feature_distance",
    "Each feature's distance from the reference in the latest window (Kolmogorov-Smirnov, or total variation for categories)",
    ["model", "feature"],
)
DRIFT_TEST_SECONDS = Histogram("glassbox_detector_drift_test_seconds", "Time one drift test took", ["model"])
