"""The detector's drift monitor: logged prediction requests fill a window of recent inputs, and every few of
them the window is tested against the reference data (see drift for the tests).

Answering the logger is never slowed by a test: KServe's logger hands each request to a queue of 100 that
the predictor's own request path waits on when it is full (pkg/logger/worker.go, `QueueLogRequest`), so a
logged request is added to the window under a lock and answered at once, and the test runs on a thread of
its own, one at a time; the latest report is what is read.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np

from glassbox.contract.api import DriftSpec
from glassbox.explainers.detector import metrics
from glassbox.explainers.detector.drift import DriftReport, DriftTest, RecentWindow
from glassbox.explainers.detector.drift_inputs import DriftInputs
from glassbox.explainers.detector.outliers import Inputs

log = logging.getLogger(__name__)


class DriftMonitor:
    def __init__(self, model: str, spec: DriftSpec, inputs: DriftInputs, seed: int = 0):
        self.model = model
        self.spec = spec
        self.inputs_seen_as = inputs
        self.test = DriftTest(inputs.reference, inputs.names, inputs.categorical, spec.false_alarm_rate, seed=seed)
        self.window = RecentWindow(spec.window_rows, spec.window_seconds)
        self.latest: DriftReport | None = None
        self.latest_window: np.ndarray | None = None  # the rows the latest report tested (for its picture)
        self.tested_at: float | None = None
        self._lock = threading.Lock()
        self._since_test = 0
        self._testing = False
        # Inputs logged so far, and how many of them the latest report had seen (its freshness).
        self.inputs = 0
        self.tested_inputs = 0
        self._tester = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift")
        metrics.DRIFT_FALSE_ALARM_RATE.labels(model).set(spec.false_alarm_rate)

    def observe(self, instances: Inputs, now: float | None = None) -> int:
        """Add logged inputs to the window (as the tests see them); start a test in the background when one is
        due. How many were added; InputError when they are not the kind of input the reference data is."""
        rows = self.inputs_seen_as.vectors(instances)
        with self._lock:
            self.window.add(rows, now)
            self.inputs += len(rows)
            self._since_test += len(rows)
            due = self._since_test >= self.spec.test_every_rows and not self._testing
            if due:
                self._testing = True
                self._since_test = 0
        metrics.DRIFT_INPUTS.labels(self.model).inc(len(rows))
        if due:
            self._tester.submit(self._test_in_background, now)
        return len(rows)

    def test_now(self, now: float | None = None) -> DriftReport | None:
        """Test the window as it is (None while it holds fewer than minRows inputs); the report becomes the latest."""
        with self._lock:
            rows = self.window.current(now)
            seen = self.inputs
        metrics.DRIFT_WINDOW_ROWS.labels(self.model).set(len(rows))
        if len(rows) < self.spec.min_rows:
            return None
        started = time.monotonic()
        report = self.test.test(rows)
        metrics.DRIFT_TEST_SECONDS.labels(self.model).observe(time.monotonic() - started)
        was = self.latest.drifted if self.latest is not None else False
        if report.drifted != was:
            log.warning(
                "drift %s: p-value %.3g over %d inputs (false-alarm rate %g); most moved: %s",
                "began" if report.drifted else "ended",
                report.p_value,
                report.window_rows,
                report.false_alarm_rate,
                ", ".join(f.name for f in report.features[:3]),
            )
        self.latest, self.tested_at, self.tested_inputs = report, time.time() if now is None else now, seen
        self.latest_window = rows
        metrics.DRIFT_P_VALUE.labels(self.model).set(report.p_value)
        metrics.DRIFTED.labels(self.model).set(1.0 if report.drifted else 0.0)
        for feature in report.features:
            metrics.DRIFT_FEATURE_DISTANCE.labels(self.model, feature.name).set(feature.distance)
        return report

    def _test_in_background(self, now: float | None) -> None:
        """Test, and again while enough inputs arrived meanwhile (their events found a test running)."""
        while True:
            try:
                self.test_now(now)
            except Exception:
                log.exception("the drift test failed")
            with self._lock:
                if self._since_test < self.spec.test_every_rows:
                    self._testing = False
                    return
                self._since_test = 0

    def report_json(self) -> dict[str, Any]:
        """The latest report as the API answers it, or what the window waits for."""
        with self._lock:
            rows = len(self.window.current())
        if self.latest is None:
            return {
                "drifted": None,
                "windowRows": rows,
                "inputs": self.inputs,
                "falseAlarmRate": self.spec.false_alarm_rate,
                "message": f"not judged yet: a window is tested once it holds {self.spec.min_rows} inputs "
                f"(spec.detector.drift.minRows), and it holds {rows}",
            }
        report = self.latest
        return {
            "drifted": report.drifted,
            "pValue": report.p_value,
            "falseAlarmRate": report.false_alarm_rate,
            "windowRows": report.window_rows,
            "testedAt": None
            if self.tested_at is None
            else datetime.fromtimestamp(self.tested_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "inputs": self.inputs,
            "testedInputs": self.tested_inputs,
            "driftedFeatures": report.drifted_features,
            "mmd": report.mmd,
            "mmdPValue": report.mmd_p_value,
            "features": [
                {
                    "name": f.name,
                    "kind": f.kind,
                    "distance": f.distance,
                    "pValue": f.p_value,
                    "adjustedPValue": f.adjusted_p_value,
                }
                for f in report.features
            ],
        }

    def picture(self, top: int = 6) -> str | None:
        """A base64 PNG of the latest report: the `top` most drifted features, reference against recent."""
        from glassbox.explainers.data.pictures import reference_against_recent

        report, window = self.latest, self.latest_window
        if report is None or window is None:
            return None
        index = {name: i for i, name in enumerate(self.test.names)}
        shown = [
            (f.name, f.kind, f.distance, self.test.reference[:, index[f.name]], window[:, index[f.name]])
            for f in report.features[:top]
        ]
        verdict = "drifted" if report.drifted else "no drift"
        title = (
            f"{verdict}: p = {report.p_value:.3g} over the last {report.window_rows} inputs "
            f"(false-alarm rate {report.false_alarm_rate:g}); most drifted first\n"
            f"the rows as a whole (correlations included): p = {report.mmd_p_value:.3g}"
        )
        return base64.b64encode(reference_against_recent(shown, title)).decode()

    def stop(self) -> None:
        self._tester.shutdown(wait=False, cancel_futures=True)
