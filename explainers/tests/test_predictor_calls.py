"""What one explanation (the memo) and concurrent explanations (the coalescer) save of predictor calls, and
deadlines on shared calls."""

from __future__ import annotations

import time

import numpy as np
import pytest


def test_the_memo_sends_each_row_once_per_explanation() -> None:
    from glassbox.explainers.predictor_calls.memo import PredictionMemo

    sent: list[int] = []

    def predict(rows: np.ndarray | list[str]) -> np.ndarray:
        sent.append(len(rows))
        return (
            np.asarray([[float(len(r))] for r in rows]) if isinstance(rows, list) else np.asarray(rows).sum(axis=1, keepdims=True)
        )

    memo = PredictionMemo(max_rows_per_call=10)
    rows = np.asarray([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]])
    np.testing.assert_array_equal(memo.predict(rows, predict), [[3.0], [7.0], [3.0]])
    np.testing.assert_array_equal(memo.predict(rows[::-1], predict), [[3.0], [7.0], [3.0]])
    assert sent == [2]  # the repeat inside the call and the whole second call came from the memo
    assert memo.predict(np.ones((11, 2)), predict).shape == (11, 1) and sent[-1] == 11  # large calls go straight through
    np.testing.assert_array_equal(memo.predict(["ab", "abc", "ab"], predict), [[2.0], [3.0], [2.0]])
    assert sent[-1] == 2
    # Old rows, a new one twice and -0.0 (other bytes than 0.0, so scored apart: the answer is still right).
    mixed = np.asarray([[3.0, 4.0], [5.0, 6.0], [1.0, 2.0], [5.0, 6.0], [-0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(memo.predict(mixed, predict), [[7.0], [11.0], [3.0], [11.0], [0.0], [0.0]])
    assert sent[-1] == 3
    # Images: rows of any shape are one key each.
    images = np.arange(24, dtype=np.float32).reshape(3, 2, 2, 2)
    np.testing.assert_array_equal(
        PredictionMemo().predict(np.concatenate([images, images[:1]]), lambda x: np.asarray(x).reshape(len(x), -1).sum(axis=1)),
        [28, 92, 156, 28],
    )


def test_a_full_memo_still_answers_every_row() -> None:
    from glassbox.explainers.predictor_calls.memo import PredictionMemo

    sent: list[int] = []

    def predict(rows: np.ndarray | list[str]) -> np.ndarray:
        sent.append(len(rows))
        return np.asarray(rows) * 10

    memo = PredictionMemo(max_bytes=400)  # two rows of one float64 (8 bytes, 160 of bookkeeping, room for 4 scores): 368
    first = memo.predict(np.asarray([[1.0], [2.0]]), predict)
    assert memo.held_bytes == 368
    second = memo.predict(np.asarray([[2.0], [3.0], [4.0], [3.0]]), predict)  # would pass 400 bytes: not kept
    np.testing.assert_array_equal(first, [[10.0], [20.0]])
    np.testing.assert_array_equal(second, [[20.0], [30.0], [40.0], [30.0]])
    assert memo.held_bytes == 368 and sent == [2, 2]
    memo.predict(np.asarray([[3.0]]), predict)
    assert sent[-1] == 1  # scored again: it was not kept


def test_the_memo_holds_images_within_its_bytes() -> None:
    from glassbox.explainers.predictor_calls.memo import PredictionMemo

    memo = PredictionMemo(max_bytes=16 * 1024 * 1024)
    rng = np.random.default_rng(0)
    for _ in range(20):  # 20 calls of 10 new 224x224x3 float32 images: 120 MB if all were kept
        images = rng.random((10, 224, 224, 3), dtype=np.float32)
        scores = memo.predict(images, lambda x: np.asarray(x).reshape(len(x), -1).mean(axis=1, keepdims=True))
        np.testing.assert_allclose(scores[:, 0], images.reshape(10, -1).mean(axis=1), rtol=1e-6)
        assert memo.held_bytes <= 16 * 1024 * 1024
    assert memo.held_bytes > 8 * 1024 * 1024  # it kept what fitted (20 images of 0.6 MB; 30 would not fit)


def test_concurrent_calls_share_predictor_calls_and_each_gets_its_own_rows() -> None:
    import threading

    from glassbox.explainers.predictor_calls.coalescer import CallCoalescer

    sizes: list[int] = []

    def send(rows: np.ndarray | list[str], deadline: float | None) -> np.ndarray:
        sizes.append(len(rows))
        time.sleep(0.05)
        array = np.asarray(rows)
        if (array < 0).any():
            raise RuntimeError("the predictor refused a negative row")
        return array * 2

    shared = CallCoalescer(send)
    answers: dict[int, np.ndarray] = {}

    def explain(index: int) -> None:
        answers[index] = shared.predict(np.full((index + 1, 3), float(index)))

    threads = [threading.Thread(target=explain, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for index, answer in answers.items():
        np.testing.assert_array_equal(answer, np.full((index + 1, 3), 2.0 * index))
    assert len(answers) == 8 and len(sizes) < 8 and sum(sizes) == sum(range(1, 9))

    with pytest.raises(RuntimeError, match="negative"):
        shared.predict(np.full((1, 3), -1.0))
    np.testing.assert_array_equal(shared.predict(np.ones((1, 3))), [[2.0, 2.0, 2.0]])  # not stuck after an error


def test_no_explanation_waits_past_its_deadline_for_a_shared_call_and_calls_flow_again_after() -> None:
    """A call stuck in the predictor: explanations queued behind it give up at their own deadlines,
    the stuck call ends at the latest deadline of those in it, and the next call goes straight out."""
    import threading

    from glassbox.explainers.predictor_calls.coalescer import CallCoalescer
    from glassbox.explainers.predictor_calls.errors import PastDeadline

    release = threading.Event()
    deadlines_sent: list[float | None] = []

    def send(rows: np.ndarray | list[str], deadline: float | None) -> np.ndarray:
        deadlines_sent.append(deadline)
        if len(deadlines_sent) == 1:  # the first call hangs until its deadline, as a dripping predictor's would
            release.wait(None if deadline is None else deadline - time.monotonic())
            raise PastDeadline("cut off at the deadline")
        return np.asarray(rows) * 2

    shared = CallCoalescer(send)
    start = time.monotonic()
    outcomes: dict[str, tuple[str, float]] = {}

    def explain(name: str, deadline: float) -> None:
        try:
            shared.predict(np.ones((1, 2)), deadline)
            outcomes[name] = ("answered", time.monotonic() - start)
        except PastDeadline:
            outcomes[name] = ("cancelled", time.monotonic() - start)

    stuck = threading.Thread(target=explain, args=("stuck", start + 1.0))
    stuck.start()
    time.sleep(0.1)
    queued = [threading.Thread(target=explain, args=(f"queued{i}", start + 0.3 + 0.1 * i)) for i in range(3)]
    for thread in queued:
        thread.start()
    for thread in [stuck, *queued]:
        thread.join(5)
    for i in range(3):
        state, at = outcomes[f"queued{i}"]
        assert state == "cancelled" and abs(at - (0.3 + 0.1 * i)) < 0.1, outcomes
    assert outcomes["stuck"][0] == "cancelled" and abs(outcomes["stuck"][1] - 1.0) < 0.1, outcomes
    assert deadlines_sent == [start + 1.0]  # those who gave up were never sent
    before = time.monotonic()
    np.testing.assert_array_equal(shared.predict(np.ones((1, 2)), time.monotonic() + 5), [[2.0, 2.0]])
    assert time.monotonic() - before < 0.1  # nothing left in flight or queued
