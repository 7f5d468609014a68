"""Dynamic batching: concurrent requests share forward passes.

Explanations send many perturbed rows, often from several explanations at
once. The batcher gathers rows from concurrent requests until it has
`max_batch_size` rows or the oldest has waited `max_latency_ms`, runs one
forward pass in a worker thread (the event loop stays free; tiny CPU passes
may run in place), and hands each request its own rows back. A request
larger than the batch is split. Only requests whose rows have the same shape
and type share a pass, so a malformed request fails alone; whatever one batch
does, every request in it gets an answer and the loop goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from glassbox.explainers.predictor.errors import Overloaded


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def kind(self) -> tuple[tuple[int, ...], np.dtype[Any]]:
        """Requests batch together only with requests of the same row shape and type."""
        return self.rows.shape[1:], self.rows.dtype


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    largest: int = 0


class DynamicBatcher:
    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_latency_ms: float,
        inline_max_rows: int = 0,
        max_queued_rows: int | None = None,
    ):
        """`inline_max_rows`: batches of at most this many rows run on the event loop itself, skipping
        the hop to a worker thread (worth it for small CPU forward passes, which take microseconds).
        `max_queued_rows`: rows that may wait for the model at once; a request that would go past it is
        refused with Overloaded (None: no bound)."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._forward = forward
        self.inline_max_rows = inline_max_rows
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self.max_queued_rows = max_queued_rows
        self.queued_rows = 0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        # Taken from the queue but not batched yet (another shape, or past the batch's size): they go first.
        self._held: deque[_Pending] = deque()
        self._task: asyncio.Task[None] | None = None
        self.stats = BatchStats()

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        """The model's output for these rows, computed in shared batches."""
        if self.max_queued_rows is not None and self.queued_rows > 0 and self.queued_rows + len(rows) > self.max_queued_rows:
            raise Overloaded(f"{self.queued_rows} rows are waiting for the model (at most {self.max_queued_rows})")
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        loop = asyncio.get_running_loop()
        parts = [rows[i : i + self.max_batch_size] for i in range(0, len(rows), self.max_batch_size)] or [rows]
        futures = []
        for part in parts:
            future: asyncio.Future[np.ndarray] = loop.create_future()
            self._queue.put_nowait(_Pending(part, future))
            self.queued_rows += len(part)
            futures.append(future)
        try:
            results = await asyncio.gather(*futures)
        finally:
            for future in futures:
                future.cancel()  # a caller that gave up (a timeout): its rows are skipped, not scored
        return results[0] if len(results) == 1 else np.concatenate(results, axis=0)

    async def _next(self, timeout: float | None) -> _Pending | None:
        if self._held:
            return self._held.popleft()
        try:
            if timeout is None:
                return await self._queue.get()
            return self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
        except (TimeoutError, asyncio.QueueEmpty):
            return None

    async def _run(self) -> None:
        while True:
            first = await self._next(None)
            assert first is not None
            batch = [first]
            size = len(first.rows)
            deadline = first.enqueued + self.max_latency
            passed_over: list[_Pending] = []
            while size < self.max_batch_size:
                item = await self._next(deadline - time.monotonic())
                if item is None:
                    break
                if item.kind != first.kind or size + len(item.rows) > self.max_batch_size:
                    passed_over.append(item)  # its own batch, next
                    if item.kind == first.kind:
                        break
                    continue
                batch.append(item)
                size += len(item.rows)
            self._held.extendleft(reversed(passed_over))
            try:
                await self._execute(batch)
            except BaseException as error:  # the loop outlives anything one batch does
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(
                            error if isinstance(error, Exception) else RuntimeError("the batch was cancelled")
                        )
                if not isinstance(error, Exception):
                    raise
            finally:
                self.queued_rows -= sum(len(item.rows) for item in batch)

    async def _execute(self, batch: list[_Pending]) -> None:
        live = [item for item in batch if not item.future.done()]
        if not live:
            return
        rows = np.concatenate([item.rows for item in live], axis=0) if len(live) > 1 else live[0].rows
        try:
            if len(rows) <= self.inline_max_rows:
                outputs = self._forward(rows)
            else:
                outputs = await asyncio.to_thread(self._forward, rows)
        except Exception as error:  # noqa: BLE001  (every waiting request gets the model's error)
            for item in live:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        self.stats.batches += 1
        self.stats.rows += len(rows)
        self.stats.largest = max(self.stats.largest, len(rows))
        start = 0
        for item in live:
            end = start + len(item.rows)
            if not item.future.done():
                item.future.set_result(outputs[start:end])
            start = end
