"""The blocking predict function alibi calls, bound to the explanation its worker thread runs: through
that explanation's memo and the calls shared with concurrent explanations, cut off at its deadline."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.explainers.predictor_calls.client import PredictorClient
from glassbox.explainers.predictor_calls.coalescer import CallCoalescer
from glassbox.explainers.predictor_calls.errors import PastDeadline
from glassbox.explainers.predictor_calls.memo import PredictionMemo

# Set by the worker thread running an explanation; read by the predictor calls it makes.
_CURRENT = threading.local()


class PredictorUsage:
    """What one explanation asked of the predictor (its own thread counts it)."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0


@dataclass
class ExplanationBounds:
    """One explanation's cancellation, deadline, usage count and memo, held by the worker thread running it."""

    cancelled: threading.Event
    deadline: float
    usage: PredictorUsage
    memo: PredictionMemo

    def hold(self) -> None:
        _CURRENT.cancelled, _CURRENT.deadline, _CURRENT.usage, _CURRENT.memo = (
            self.cancelled,
            self.deadline,
            self.usage,
            self.memo,
        )

    @staticmethod
    def release() -> None:
        _CURRENT.cancelled = _CURRENT.deadline = _CURRENT.usage = _CURRENT.memo = None


class RoutedPredict:
    """The blocking predict function alibi calls: the predictor's API, through the explanation's memo
    and calls shared with concurrent explanations, bounded by its explanation's deadline."""

    def __init__(self, client: PredictorClient):
        self.client = client
        self.shared_calls = CallCoalescer(client.predict)

    def __call__(self, instances: Any) -> np.ndarray:
        cancelled: threading.Event | None = getattr(_CURRENT, "cancelled", None)
        deadline: float | None = getattr(_CURRENT, "deadline", None)
        if (cancelled is not None and cancelled.is_set()) or (deadline is not None and time.monotonic() >= deadline):
            raise PastDeadline("the explanation ran past its deadline")
        if not isinstance(instances, list):
            instances = np.asarray(instances)
        usage: PredictorUsage | None = getattr(_CURRENT, "usage", None)

        def send(rows: np.ndarray | list[str]) -> np.ndarray:
            if usage is not None:
                usage.calls += 1
                usage.rows += len(rows)
            return self.shared_calls.predict(rows, deadline)

        memo: PredictionMemo | None = getattr(_CURRENT, "memo", None)
        return memo.predict(instances, send) if memo is not None else send(instances)
