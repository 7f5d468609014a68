"""Where explanations run: at most `workers` at once on threads, `max_waiting` more admitted to wait for
one (past that, 503 with Retry-After), each cut off at its deadline.

An explanation past its deadline is answered at once; its worker is told through `cancelled`, so its
predictor calls stop there and one not yet started never starts. What an explanation computes, and what
its answer says, is the server's business (explainer_server); admission and deadlines are this one's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from glassbox.explainers import explanation_metrics as metrics
from glassbox.explainers.deadlines import ExplanationCancelled
from glassbox.explainers.http_errors import overloaded

Answer = TypeVar("Answer")


class PastDeadline(Exception):
    """The explanation ran past its deadline: waiting for a worker, or while its worker computed it."""

    def __init__(self, cause: str | None):
        super().__init__(cause or "past the deadline")
        self.cause = cause


class ExplanationPool:
    def __init__(self, model_name: str, workers: int, max_waiting: int):
        self.model_name = model_name
        self.workers = workers
        # Explanations admitted beyond those running; past it, 503 with Retry-After. None by default: an
        # explanation that waits for a worker takes twice as long or more (`make reliability`, overload),
        # and a refusal lets the caller go elsewhere and the autoscaler see the load.
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._admitted = 0  # running or waiting for a worker
        self._running = 0
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="explain")
        for gauge, value in ((metrics.RUNNING, lambda: self._running), (metrics.WAITING, lambda: self._admitted - self._running)):
            gauge.labels(model_name).set_function(value)

    async def run(self, work: Callable[[threading.Event], Answer], deadline: float) -> Answer:
        """`work(cancelled)` on a worker thread, its answer by `deadline` (time.monotonic), or PastDeadline."""
        self._admit()
        cancelled = threading.Event()

        def counted() -> Answer:
            with self._lock:
                self._running += 1
            try:
                return work(cancelled)
            finally:
                with self._lock:
                    self._running -= 1

        future = self._executor.submit(counted)
        future.add_done_callback(self._leave)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            cancelled.set()  # the worker's predictor calls are cut off at the deadline; one not yet started never starts
            raise PastDeadline(None) from None
        except ExplanationCancelled as error:  # the worker found the deadline first
            raise PastDeadline(str(error)) from None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.workers + self.max_waiting:
                metrics.REFUSED.labels(self.model_name).inc()
                raise overloaded(
                    f"the explainer is computing {self.workers} explanations and {self.max_waiting} more wait "
                    "(--explain_workers, --max_waiting_explanations; or more explainer replicas)"
                )
            self._admitted += 1

    def _leave(self, _: object) -> None:
        with self._lock:
            self._admitted -= 1
