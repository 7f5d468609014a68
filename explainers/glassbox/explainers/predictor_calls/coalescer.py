"""Concurrent explanations' perturbations share predictor calls (the coalescer)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from glassbox.explainers.predictor_calls.errors import PastDeadline


@dataclass(eq=False)  # a waiting thread is itself, whatever its rows
class _Waiting:
    rows: np.ndarray
    deadline: float | None
    woken: threading.Event = field(default_factory=threading.Event)
    result: np.ndarray | None = None
    error: BaseException | None = None
    lead: bool = False  # woken to send the next shared call, not with a result


def _latest(deadlines: list[float | None]) -> float | None:
    return None if any(d is None for d in deadlines) else max(deadlines)  # type: ignore[type-var]


class CallCoalescer:
    """Concurrent explanations' perturbations share predictor calls.

    While one call is in flight, the calls other explanation threads make
    queue up; when it returns, the first of them sends everything queued as
    one request and hands each thread its own rows back. A lone explanation
    waits for nothing. Text and arrays of another row shape than the first
    queued go in a later call. A shared call is bounded by the latest deadline
    of the explanations in it; a thread whose own deadline comes first stops
    waiting then (leaving the queue, and passing on the next call if it was
    its to send), so no explanation waits past its deadline for another's call.
    """

    def __init__(self, send: Callable[[np.ndarray | list[str], float | None], np.ndarray]):
        self._send = send
        self._lock = threading.Lock()
        self._queue: list[_Waiting] = []
        self._busy = False

    def predict(self, instances: np.ndarray | list[str], deadline: float | None = None) -> np.ndarray:
        if isinstance(instances, list):
            return self._send(instances, deadline)  # text: rare to coincide, and strings do not stack
        me = _Waiting(np.asarray(instances), deadline)
        with self._lock:
            self._queue.append(me)
            me.lead = not self._busy
            self._busy = True
        if not me.lead:
            woken = me.woken.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if not woken:
                self._give_up(me)
        if me.lead:
            self._send_queued()
        if me.error is not None:
            raise me.error
        assert me.result is not None
        return me.result

    def _give_up(self, me: _Waiting) -> None:
        """Past this thread's deadline: out of the queue (the next call passed on if it was this thread's to send),
        or, if its rows are in a call in flight, no longer waiting for it."""
        with self._lock:
            if me.woken.is_set() and not me.lead:
                return  # the answer came just now
            if me in self._queue:
                self._queue.remove(me)
                if me.lead:
                    self._pass_lead()
        raise PastDeadline("the explanation ran past its deadline waiting for a predictor call shared with other explanations")

    def _pass_lead(self) -> None:
        """Under the lock: the first queued thread sends the next call, or nothing is in flight."""
        if self._queue:
            self._queue[0].lead = True
            self._queue[0].woken.set()
        else:
            self._busy = False

    def _send_queued(self) -> None:
        with self._lock:
            shape = self._queue[0].rows.shape[1:]
            batch = [w for w in self._queue if w.rows.shape[1:] == shape]
            self._queue = [w for w in self._queue if w.rows.shape[1:] != shape]
        try:
            rows = np.concatenate([w.rows for w in batch]) if len(batch) > 1 else batch[0].rows
            scores = self._send(rows, _latest([w.deadline for w in batch]))
            ends = np.cumsum([len(w.rows) for w in batch])
            for waiting, start, end in zip(batch, [0, *ends[:-1]], ends, strict=True):
                waiting.result = scores[start:end]
        except BaseException as error:  # noqa: BLE001  (each waiting explanation gets the predictor's error)
            for waiting in batch:
                waiting.error = error
        with self._lock:
            self._pass_lead()
            for waiting in batch:
                waiting.lead = False
                waiting.woken.set()
