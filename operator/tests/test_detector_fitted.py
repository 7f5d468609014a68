"""Reading what the detector fitted, from a real HTTP server on loopback: the answer, and every way it can fail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from glassbox.operator.detector_fitted import read_detector_fitted, read_drift_report

ANSWERS: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/glassbox/v1/models/good/fitted": (
        200,
        {},
        json.dumps({"threshold": 1.5, "falsePositiveRate": 0.01, "heldOutRows": 120}).encode(),
    ),
    "/glassbox/v1/models/new/fitted": (
        200,
        {},
        json.dumps(
            {
                "threshold": 1.5,
                "falsePositiveRate": 0.01,
                "heldOutRows": 120,
                "representation": "whitened",
                "realisedFalsePositiveRate": {"low": 0.001, "high": 0.04, "confidence": 0.95},
            }
        ).encode(),
    ),
    "/glassbox/v1/models/bad-interval/fitted": (
        200,
        {},
        json.dumps({"threshold": 1.5, "falsePositiveRate": 0.01, "heldOutRows": 120, "realisedFalsePositiveRate": 0.02}).encode(),
    ),
    "/glassbox/v1/models/garbage/fitted": (200, {}, b"<html>not json</html>"),
    "/glassbox/v1/models/partial/fitted": (200, {}, json.dumps({"threshold": 1.5}).encode()),
    "/glassbox/v1/models/starting/fitted": (503, {}, b'{"error": "not fitted yet"}'),
    "/glassbox/v1/models/moved/fitted": (302, {"Location": "http://169.254.169.254/latest/meta-data"}, b""),
    "/glassbox/v1/models/m-drift/drift": (
        200,
        {},
        json.dumps(
            {
                "drifted": True,
                "pValue": 0.001,
                "falseAlarmRate": 0.01,
                "windowRows": 500,
                "testedAt": "2026-12-04T04:30:00.000Z",
                "driftedFeatures": ["f1", "f2", "f3", "f4", "f5", "f6"],
                "features": [{"name": "f1"}],
            }
        ).encode(),
    ),
    "/glassbox/v1/models/young-drift/drift": (200, {}, json.dumps({"drifted": None, "windowRows": 3}).encode()),
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            status, headers, body = ANSWERS.get(self.path, (404, {}, b"{}"))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_a_detectors_answer_is_read(server: str) -> None:
    # A detector as old as the operator's first: no representation, no interval.
    assert read_detector_fitted(server + "/", "good") == {"threshold": 1.5, "falsePositiveRate": 0.01, "heldOutRows": 120}
    assert read_detector_fitted(server, "new") == {
        "threshold": 1.5,
        "falsePositiveRate": 0.01,
        "heldOutRows": 120,
        "representation": "whitened",
        "realisedFalsePositiveRate": {"low": 0.001, "high": 0.04, "confidence": 0.95},
    }


@pytest.mark.parametrize("model", ["garbage", "partial", "bad-interval", "starting", "moved", "absent"])
def test_anything_else_leaves_the_threshold_out_and_a_redirect_is_never_followed(server: str, model: str) -> None:
    assert read_detector_fitted(server, model) is None


def test_an_unreachable_detector_leaves_it_out() -> None:
    assert read_detector_fitted("http://127.0.0.1:9", "good") is None


def test_the_drift_monitors_latest_verdict_is_read_compactly_and_nothing_before_a_window_is_tested(server: str) -> None:
    assert read_drift_report(server, "m-drift") == {
        "drifted": True,
        "pValue": 0.001,
        "falseAlarmRate": 0.01,
        "windowRows": 500,
        "driftedFeatures": ["f1", "f2", "f3", "f4", "f5"],
        "testedAt": "2026-12-04T04:30:00.000Z",
    }
    assert read_drift_report(server, "young-drift") is None
    assert read_drift_report(server, "absent") is None
