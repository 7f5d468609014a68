"""Where explanations run: at most `workers` at once on threads, the rest waiting for one in turn, each
cut off at its deadline. A request is admitted to wait only while the work ahead of it leaves it time to
finish by its deadline (admission decides, from each method's recent time per explanation); otherwise
it is refused at once with 503 and a Retry-After from the same estimate.

An explanation past its deadline is answered at once; its worker is told through `cancelled`, so its
predictor calls stop there and one not yet started never starts. What an explanation computes, and what
its answer says, is the server's business (explainer.server); admission and deadlines are this one's.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from glassbox.explainers.explainer import metrics
from glassbox.explainers.explainer.admission import Refused, decide, recent_seconds
from glassbox.explainers.predictor_calls.errors import PastDeadline
from glassbox.explainers.serving.errors import overloaded

Answer = TypeVar("Answer")


@dataclass(eq=False)
class _Ticket:
    """One admitted explanation: waiting until `started`, then running on a worker."""

    method: str
    started: float | None = None
    abandoned: bool = False  # answered 504 while it waited: its worker will skip it at once


class WorkerPool:
    def __init__(self, model_name: str, workers: int, max_waiting: int):
        self.model_name = model_name
        self.workers = workers
        # The waiting room's hard size, whatever the estimates say: waiting costs bounded memory.
        self.max_waiting = max_waiting
        self._lock = threading.Lock()
        self._tickets: list[_Ticket] = []  # admitted and not yet answered by a worker, in order of admission
        self._recent: dict[str, float] = {}  # each method's recent seconds per explanation
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="explain")
        for gauge, value in ((metrics.RUNNING, self._running_count), (metrics.WAITING, self._waiting_count)):
            gauge.labels(model_name).set_function(value)

    def recent_seconds(self, method: str) -> float | None:
        """What an explanation by `method` has taken lately, or None before the first."""
        with self._lock:
            return self._recent.get(method)

    async def run(self, work: Callable[[threading.Event], Answer], deadline: float, method: str) -> Answer:
        """`work(cancelled)` on a worker thread, its answer by `deadline` (time.monotonic), or PastDeadline;
        503 at once when it would not finish by then (or the waiting room is full)."""
        ticket = self._admit(method, deadline)
        cancelled = threading.Event()

        def counted() -> Answer:
            with self._lock:
                ticket.started = time.monotonic()
            timed = not cancelled.is_set()  # a worker that only finds the deadline passed says nothing of the time
            try:
                return work(cancelled)
            except PastDeadline:
                raise  # cut off at its deadline: that is how long this method takes now
            except Exception:
                timed = False
                raise
            finally:
                self._finish(ticket, timed)

        future = self._executor.submit(counted)
        future.add_done_callback(lambda _: self._finish(ticket, False))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            cancelled.set()  # the worker's predictor calls are cut off at the deadline; one not yet started never starts
            with self._lock:
                ticket.abandoned = ticket.started is None
            raise PastDeadline() from None
        except asyncio.CancelledError:  # its caller gave up (a cancelled job): the same, at once
            cancelled.set()
            with self._lock:
                ticket.abandoned = ticket.started is None
            raise

    def has_free_worker(self) -> bool:
        """Whether an explanation admitted now would start at once."""
        with self._lock:
            return len(self._tickets) < self.workers

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _admit(self, method: str, deadline: float) -> _Ticket:
        now = time.monotonic()
        with self._lock:
            running = [t for t in self._tickets if t.started is not None]
            waiting = [t for t in self._tickets if t.started is None and not t.abandoned]
            verdict = decide(
                workers=self.workers,
                max_waiting=self.max_waiting,
                running=[(self._recent.get(t.method), now - (t.started or now)) for t in running],
                waiting=[self._recent.get(t.method) for t in waiting],
                own_seconds=self._recent.get(method),
                seconds_to_deadline=deadline - now,
            )
            if isinstance(verdict, Refused):
                metrics.REFUSED.labels(self.model_name).inc()
                raise overloaded(verdict.reason, verdict.retry_after_seconds)
            ticket = _Ticket(method)
            self._tickets.append(ticket)
            return ticket

    def _finish(self, ticket: _Ticket, timed: bool) -> None:
        with self._lock:
            if ticket not in self._tickets:
                return
            self._tickets.remove(ticket)
            if timed and ticket.started is not None:
                self._recent[ticket.method] = recent_seconds(self._recent.get(ticket.method), time.monotonic() - ticket.started)

    def _running_count(self) -> float:
        with self._lock:
            return sum(t.started is not None for t in self._tickets)

    def _waiting_count(self) -> float:
        with self._lock:
            return sum(t.started is None for t in self._tickets)
