"""The predictor's dynamic batching: shared forward passes, splits, its queue bound, failures kept to their
requests."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import torch

from glassbox.explainers.predictor.batching import DynamicBatcher
from glassbox.explainers.predictor.errors import Overloaded


async def test_concurrent_requests_share_forward_passes() -> None:
    calls: list[int] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        time.sleep(0.01)
        return rows.sum(axis=1, keepdims=True)

    batcher = DynamicBatcher(forward, max_batch_size=64, max_latency_ms=20)
    requests = [np.full((4, 3), i, dtype=float) for i in range(10)]
    answers = await asyncio.gather(*(batcher.predict(r) for r in requests))
    for i, answer in enumerate(answers):
        np.testing.assert_array_equal(answer, np.full((4, 1), 3.0 * i))  # each request gets its own rows back
    assert sum(calls) == 40
    assert len(calls) < 10, calls  # coalesced
    assert max(calls) <= 64


async def test_a_large_request_is_split_to_the_batch_limit() -> None:
    sizes: list[int] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        sizes.append(len(rows))
        return rows * 2

    batcher = DynamicBatcher(forward, max_batch_size=100, max_latency_ms=1)
    rows = np.arange(250, dtype=float).reshape(-1, 1)
    np.testing.assert_array_equal(await batcher.predict(rows), rows * 2)
    assert max(sizes) <= 100 and sum(sizes) == 250


async def test_without_a_wait_a_lone_request_runs_at_once_and_requests_queue_while_the_model_is_busy() -> None:
    sizes: list[int] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        sizes.append(len(rows))
        time.sleep(0.2)
        return rows

    batcher = DynamicBatcher(forward, max_batch_size=100, max_latency_ms=0)
    first = asyncio.ensure_future(batcher.predict(np.zeros((1, 1))))
    await asyncio.sleep(0.05)  # the first forward pass is running
    rest = [np.full((2, 1), float(i)) for i in range(5)]
    answers = await asyncio.gather(*(batcher.predict(r) for r in rest))
    await first
    assert sizes == [1, 10]  # the five that queued meanwhile shared one pass
    for r, a in zip(rest, answers, strict=True):
        np.testing.assert_array_equal(a, r)


async def test_small_batches_can_run_in_place_and_large_ones_in_a_worker_thread() -> None:
    import threading

    threads: list[str] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return rows + 1

    batcher = DynamicBatcher(forward, max_batch_size=1000, max_latency_ms=0, inline_max_rows=10)
    np.testing.assert_array_equal(await batcher.predict(np.zeros((10, 1))), np.ones((10, 1)))
    np.testing.assert_array_equal(await batcher.predict(np.zeros((11, 1))), np.ones((11, 1)))
    assert threads[0] == threading.current_thread().name and threads[1] != threads[0]


async def test_a_failing_forward_pass_fails_its_requests_not_the_batcher() -> None:
    def forward(rows: np.ndarray) -> np.ndarray:
        if (rows < 0).any():
            raise RuntimeError("negative input")
        return rows

    batcher = DynamicBatcher(forward, max_batch_size=8, max_latency_ms=1)
    with pytest.raises(RuntimeError, match="negative"):
        await batcher.predict(np.array([[-1.0]]))
    np.testing.assert_array_equal(await batcher.predict(np.array([[2.0]])), [[2.0]])


@pytest.mark.parametrize("max_latency_ms", [0, 5])
async def test_a_malformed_request_fails_alone_and_every_request_beside_it_is_answered(max_latency_ms: float) -> None:
    """A 1-D or wrong-width request arriving among valid ones once killed the batcher: nobody got an answer."""

    torch.manual_seed(0)
    model = torch.nn.Linear(5, 2)

    def forward(rows: np.ndarray) -> np.ndarray:
        time.sleep(0.001)  # long enough for requests to queue behind a pass
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))).numpy()

    batcher = DynamicBatcher(forward, max_batch_size=64, max_latency_ms=max_latency_ms)
    rng = np.random.default_rng(0)
    sent: list[tuple[np.ndarray, bool]] = [(rng.normal(size=(int(rng.integers(1, 8)), 5)), True) for _ in range(100)]
    # 1-D, too narrow, one dimension too many: each must fail alone. Integer rows of the right width are fine.
    for index, (rows, ok) in enumerate(
        [(np.ones(3), False), (np.ones((2, 3)), False), (np.ones((2, 5, 1)), False), (np.ones((1, 5), dtype=np.int64), True)]
    ):
        sent.insert(index * 25 + 3, (rows, ok))
    answers = await asyncio.wait_for(
        asyncio.gather(*(batcher.predict(rows) for rows, _ in sent), return_exceptions=True), timeout=30
    )
    for (rows, ok), answer in zip(sent, answers, strict=True):
        if ok:
            assert not isinstance(answer, BaseException), answer
            np.testing.assert_allclose(answer, forward(rows), rtol=1e-5)  # as if it had been alone
        else:
            assert isinstance(answer, Exception), (rows.shape, answer)
    assert batcher.queued_rows == 0
    np.testing.assert_allclose(await batcher.predict(sent[0][0]), forward(sent[0][0]), rtol=1e-5)  # the batcher lives on


async def test_past_its_queue_bound_a_request_is_refused_at_once_and_the_rest_are_answered() -> None:
    import threading

    release = threading.Event()

    def forward(rows: np.ndarray) -> np.ndarray:
        release.wait(10)
        return rows

    batcher = DynamicBatcher(forward, max_batch_size=10, max_latency_ms=0, max_queued_rows=30)
    admitted = [asyncio.ensure_future(batcher.predict(np.full((10, 1), float(i)))) for i in range(3)]
    await asyncio.sleep(0.05)
    began = time.monotonic()
    with pytest.raises(Overloaded, match="30 rows are waiting for the model"):
        await batcher.predict(np.zeros((1, 1)))
    refused_in = time.monotonic() - began
    release.set()
    for i, job in enumerate(admitted):
        np.testing.assert_array_equal(await job, np.full((10, 1), float(i)))
    assert batcher.queued_rows == 0 and refused_in < 5
    np.testing.assert_array_equal(await batcher.predict(np.ones((1, 1))), np.ones((1, 1)))


async def test_a_caller_that_gives_up_has_its_rows_skipped() -> None:
    import threading

    release = threading.Event()
    sizes: list[int] = []

    def forward(rows: np.ndarray) -> np.ndarray:
        sizes.append(len(rows))
        release.wait(10)
        return rows

    batcher = DynamicBatcher(forward, max_batch_size=100, max_latency_ms=0)
    busy = asyncio.ensure_future(batcher.predict(np.zeros((1, 1))))
    await asyncio.sleep(0.05)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(batcher.predict(np.zeros((7, 1))), timeout=0.05)
    release.set()
    await busy
    np.testing.assert_array_equal(await batcher.predict(np.ones((2, 1))), np.ones((2, 1)))
    assert sizes == [1, 2] and batcher.queued_rows == 0
