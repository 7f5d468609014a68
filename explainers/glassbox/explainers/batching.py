"""Dynamic batching: concurrent requests share forward passes.

Explanations send many perturbed rows, often from several explanations at
once. The batcher gathers rows from concurrent requests until it has
`max_batch_size` rows or the oldest has waited `max_latency_ms`, runs one
forward pass in a worker thread (the event loop stays free; tiny CPU passes
may run in place), and hands each request its own rows back. A request
larger than the batch is split.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Pending:
    rows: np.ndarray
    future: asyncio.Future[np.ndarray]
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    batches: int = 0
    rows: int = 0
    largest: int = 0


class DynamicBatcher:
    def __init__(self, forward: Callable[[np.ndarray], np.ndarray], max_batch_size: int, max_latency_ms: float, inline_max_rows: int = 0):
        """`inline_max_rows`: batches of at most this many rows run on the event loop itself, skipping
        the hop to a worker thread (worth it for small CPU forward passes, which take microseconds)."""
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._forward = forward
        self.inline_max_rows = inline_max_rows
        self.max_batch_size = max_batch_size
        self.max_latency = max_latency_ms / 1000.0
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.stats = BatchStats()

    async def predict(self, rows: np.ndarray) -> np.ndarray:
        """The model's output for these rows, computed in shared batches."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        loop = asyncio.get_running_loop()
        parts = [rows[i : i + self.max_batch_size] for i in range(0, len(rows), self.max_batch_size)] or [rows]
        futures = []
        for part in parts:
            future: asyncio.Future[np.ndarray] = loop.create_future()
            self._queue.put_nowait(_Pending(part, future))
            futures.append(future)
        results = await asyncio.gather(*futures)
        return results[0] if len(results) == 1 else np.concatenate(results, axis=0)

    async def _run(self) -> None:
        carry: _Pending | None = None
        while True:
            first = carry or await self._queue.get()
            carry = None
            batch = [first]
            size = len(first.rows)
            deadline = first.enqueued + self.max_latency
            while size < self.max_batch_size:
                timeout = deadline - time.monotonic()
                try:
                    item = self._queue.get_nowait() if timeout <= 0 else await asyncio.wait_for(self._queue.get(), timeout)
                except (TimeoutError, asyncio.QueueEmpty):
                    break
                if size + len(item.rows) > self.max_batch_size:
                    carry = item  # starts the next batch
                    break
                batch.append(item)
                size += len(item.rows)
            await self._execute(batch)

    async def _execute(self, batch: list[_Pending]) -> None:
        live = [item for item in batch if not item.future.cancelled()]
        if not live:
            return
        rows = np.concatenate([item.rows for item in live], axis=0)
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
