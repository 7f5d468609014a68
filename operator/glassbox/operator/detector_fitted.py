"""The one place the operator calls servers of the data plane: what the outlier detector fitted (its
threshold), read once per detector spec, and the drift monitor's latest report, read each reconcile (the
periodic check included), both for the ExplainedModel's status.

The address is the one KServe reported for the detector InferenceService the operator itself created.
A short timeout, no redirects, a small answer: an unreachable detector (a mesh that requires mTLS, a
network policy) leaves the threshold out of the status and costs the reconcile at most the timeout.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from glassbox.contract.wire import (
    DETECTOR_FITTED_PATH,
    DRIFT_PATH,
    FITTED_FALSE_POSITIVE_RATE,
    FITTED_HELD_OUT_ROWS,
    FITTED_REALISED_RATE,
    FITTED_REPRESENTATION,
    FITTED_THRESHOLD,
)

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *_: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects())


def _get_json(url: str) -> Any:
    with _OPENER.open(urllib.request.Request(url, headers={"accept": "application/json"}), timeout=TIMEOUT_SECONDS) as answer:
        return json.loads(answer.read(MAX_ANSWER_BYTES))


# The most drifted features the status names.
STATUS_FEATURES = 5


def read_drift_report(base_url: str, model: str) -> dict[str, Any] | None:
    """The drift monitor's latest verdict as the status shows it ({"drifted", "pValue", "falseAlarmRate",
    "windowRows", "driftedFeatures", "testedAt"}), or None: not reachable, or no window tested yet."""
    url = base_url.rstrip("/") + DRIFT_PATH.format(model=model)
    try:
        body = _get_json(url)
        if body.get("drifted") is None:
            return None
        return {
            "drifted": bool(body["drifted"]),
            "pValue": float(body["pValue"]),
            "falseAlarmRate": float(body["falseAlarmRate"]),
            "windowRows": int(body["windowRows"]),
            "driftedFeatures": [str(name) for name in body["driftedFeatures"]][:STATUS_FEATURES],
            "testedAt": str(body["testedAt"]),
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.info("could not read the drift monitor's report at %s (%s); the status keeps what it said", url, error)
        return None


def read_detector_fitted(base_url: str, model: str) -> dict[str, Any] | None:
    """{"threshold", "falsePositiveRate", "heldOutRows"} from the detector at `base_url`, with "representation" and
    "realisedFalsePositiveRate" where it reports them (a detector older than the operator may not), or None."""
    url = base_url.rstrip("/") + DETECTOR_FITTED_PATH.format(model=model)
    try:
        body = _get_json(url)
        fitted: dict[str, Any] = {
            FITTED_THRESHOLD: float(body[FITTED_THRESHOLD]),
            FITTED_FALSE_POSITIVE_RATE: float(body[FITTED_FALSE_POSITIVE_RATE]),
            FITTED_HELD_OUT_ROWS: int(body[FITTED_HELD_OUT_ROWS]),
        }
        if FITTED_REPRESENTATION in body:
            fitted[FITTED_REPRESENTATION] = str(body[FITTED_REPRESENTATION])[:32]
        if FITTED_REALISED_RATE in body:
            rate = body[FITTED_REALISED_RATE]
            fitted[FITTED_REALISED_RATE] = {key: float(rate[key]) for key in ("low", "high", "confidence")}
    except (OSError, ValueError, KeyError, TypeError) as error:  # urllib's errors are OSErrors
        log.info("could not read what the detector at %s fitted (%s); the status leaves the threshold out for now", url, error)
        return None
    return fitted
