"""The work queue and its workers: one reconcile per name however many events, the waiting before the
backlog, retries with backoff, and threads that survive a reconcile's failure."""

from __future__ import annotations

import threading
import time

from glassbox.operator.kube import Transient
from glassbox.operator.workqueue import Key, Result, Workers, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drain(queue: WorkQueue) -> list[Key]:
    taken = []
    while (key := queue.get(timeout=0)) is not None:
        taken.append(key)
        queue.done(key)
    return taken


def test_a_name_waits_once_however_many_events_ask_for_it() -> None:
    queue = WorkQueue()
    for _ in range(3):
        queue.add(("ml", "a"))
    queue.add(("ml", "b"), urgent=False)
    queue.add(("ml", "b"), urgent=False)
    assert drain(queue) == [("ml", "a"), ("ml", "b")]


def test_what_someone_waits_for_goes_before_the_backlog() -> None:
    queue = WorkQueue()
    for number in range(1000):  # a restart's listing: every object reconciled before
        queue.add(("ml", f"old-{number}"), urgent=False)
    queue.add(("ml", "new"))  # created meanwhile
    queue.add(("ml", "old-500"))  # changed meanwhile: out of the backlog, into the lane now
    assert queue.get(timeout=0) == ("ml", "new")
    assert queue.get(timeout=0) == ("ml", "old-500")
    assert queue.depth()["backlog"] == 999


def test_a_name_added_while_it_is_reconciled_is_reconciled_once_more_after_never_twice_at_once() -> None:
    queue = WorkQueue()
    queue.add(("ml", "a"))
    key = queue.get(timeout=0)
    queue.add(("ml", "a"))  # KServe reported while the reconcile ran
    queue.add(("ml", "a"))
    assert queue.get(timeout=0) is None  # not handed to a second worker meanwhile
    queue.done(key)  # type: ignore[arg-type]
    assert drain(queue) == [("ml", "a")]


def test_a_failed_reconcile_is_retried_after_a_growing_backoff_and_an_event_does_not_wait_for_it() -> None:
    clock = Clock()
    queue = WorkQueue(clock=clock)
    queue.add(("ml", "a"))
    key = queue.get(timeout=0)
    assert key is not None
    first = queue.retry(key, Result(retry=True, api_error=True))
    queue.done(key)
    assert 0.5 <= first <= 1.0  # 1 s, drawn between half and all of it
    assert queue.get(timeout=0) is None  # not due yet
    clock.now = first
    assert queue.get(timeout=0) == key
    second = queue.retry(key, Result(retry=True, api_error=True))
    queue.done(key)
    assert 1.0 <= second <= 2.0
    assert queue.retry(("ml", "b"), Result(retry=True, retry_after=17)) >= 17  # the API server's Retry-After first
    queue.add(("ml", "b"))  # an event: reconciled now, not at its retry's time
    assert queue.get(timeout=0) == ("ml", "b")
    queue.done(("ml", "b"))
    queue.succeeded(key)
    queue.forget(("ml", "a"))
    clock.now += 3600
    assert queue.get(timeout=0) is None  # forgotten: deleted, no retry owed


def test_workers_retry_what_failed_and_live_on_after_any_exception() -> None:
    attempts: dict[str, int] = {"api": 0, "bug": 0, "fine": 0}
    all_done = threading.Event()

    def reconcile(key: Key) -> Result:
        name = key[1]
        attempts[name] += 1
        if name == "api" and attempts[name] < 3:
            raise Transient("could not apply InferenceService 'api-explainer': 503")
        if name == "bug" and attempts[name] < 2:
            raise ValueError("a bug in one object's reconcile")
        if attempts["api"] >= 3 and attempts["bug"] >= 2 and attempts["fine"] >= 1:
            all_done.set()
        return Result()

    queue = WorkQueue()
    workers = Workers(queue, reconcile, count=2)
    workers.start()
    try:
        for name in attempts:
            queue.add(("ml", name))
        assert all_done.wait(30), attempts
    finally:
        workers.stop()
    assert attempts == {"api": 3, "bug": 2, "fine": 1}


def test_workers_that_finish_nothing_while_names_wait_are_reported_stuck() -> None:
    clock = Clock()
    queue = WorkQueue(clock=clock)
    workers = Workers(queue, lambda key: Result(), clock=clock)  # not started: as if every thread hung
    clock.now = 10_000.0
    assert workers.stuck_for(limit=600) is None  # nothing waits
    queue.add(("ml", "a"))
    assert workers.stuck_for(limit=600) is None  # it has only just begun to wait
    clock.now += 601
    assert workers.stuck_for(limit=600) == 1.0
    started = time.monotonic()
    assert queue.get(timeout=0) == ("ml", "a") and time.monotonic() - started < 1
    assert workers.stuck_for(limit=600) is None  # taken: nothing waits any more


def test_the_backlog_gets_only_its_share_of_the_workers() -> None:
    queue = WorkQueue(backlog_workers=2)
    for number in range(5):
        queue.add(("ml", f"old-{number}"), urgent=False)
    first, second = queue.get(timeout=0), queue.get(timeout=0)
    assert first is not None and second is not None
    assert queue.get(timeout=0) is None  # two workers on the backlog already: a third waits
    queue.add(("ml", "new"))
    assert queue.get(timeout=0) == ("ml", "new")  # what someone waits for is never held back
    queue.done(first)
    assert queue.get(timeout=0) == ("ml", "old-2")


def test_the_backlog_waits_until_it_is_ready_and_what_someone_waits_for_does_not() -> None:
    listed = threading.Event()  # the children's watches' first listings
    queue = WorkQueue(backlog_ready=listed.is_set)
    queue.add(("ml", "old"), urgent=False)
    queue.add(("ml", "new"))
    assert queue.get(timeout=0) == ("ml", "new")
    assert queue.get(timeout=0) is None  # the backlog is held
    threading.Timer(0.1, listed.set).start()
    assert queue.get(timeout=5) == ("ml", "old")  # a waiting worker notices without another add


def test_a_name_asked_again_later_waits_for_its_time_unless_an_event_comes_first() -> None:
    clock = Clock()
    queue = WorkQueue(clock=clock)
    queue.add_after(("ml", "held"), 2.0)
    assert queue.get(timeout=0) is None
    clock.now = 2.5
    assert drain(queue) == [("ml", "held")]
    queue.add_after(("ml", "held"), 2.0)
    queue.add(("ml", "held"))  # KServe reported: reconciled at once, not at the hold's end
    assert drain(queue) == [("ml", "held")]
    clock.now = 5.0
    assert drain(queue) == []


def test_the_queue_is_behind_while_names_someone_waits_for_wait_for_a_worker() -> None:
    queue = WorkQueue()
    queue.add(("ml", "old"), urgent=False)
    assert not queue.behind()  # the backlog is not someone waiting
    queue.add(("ml", "new"))
    assert queue.behind()
    assert queue.get(timeout=0) == ("ml", "new")
    assert not queue.behind()  # taken by a worker
