"""Admission by deadline: who may wait for a worker, and when one refused should come back."""

from __future__ import annotations

from glassbox.explainers.explainer.admission import Admitted, Refused, decide, expected_start, recent_seconds


def test_the_newcomer_starts_when_the_work_ahead_of_it_frees_a_worker() -> None:
    assert expected_start(4, [], []) == 0.0  # an idle worker
    assert expected_start(2, [1.0], []) == 0.0  # one of two busy
    assert expected_start(2, [1.0, 3.0], []) == 1.0
    # Two workers free at 1 and 3; the three queued ahead start at 1, 2 (1 + 1) and 3: the newcomer at 3.
    assert expected_start(2, [1.0, 3.0], [1.0, 1.0, 5.0]) == 3.0
    # Overdue explanations are expected to end now, not in the past.
    assert expected_start(1, [-2.0], []) == 0.0


def test_a_method_s_recent_time_follows_its_latest_explanations() -> None:
    assert recent_seconds(None, 2.0) == 2.0
    assert recent_seconds(1.0, 2.0) == 1.2
    seconds: float | None = None
    for _ in range(30):
        seconds = recent_seconds(seconds, 0.5)
    assert seconds == 0.5


def test_the_24_burst_on_four_workers_is_admitted_while_its_deadline_allows() -> None:
    """24 at once, 0.5 s each, four workers, 60 s: the last waits about 2.5 s and is admitted."""
    running: list[tuple[float | None, float]] = []
    waiting: list[float | None] = []
    for _ in range(24):
        verdict = decide(workers=4, max_waiting=32, running=running, waiting=waiting, own_seconds=0.5, seconds_to_deadline=60)
        assert isinstance(verdict, Admitted), verdict
        if len(running) < 4:
            running.append((0.5, 0.0))
        else:
            waiting.append(0.5)
    assert verdict.expected_seconds == 3.0  # five rounds ahead, then its own


def test_one_that_would_finish_past_its_deadline_is_refused_with_when_to_come_back() -> None:
    # One worker, busy for 4 s more (of 5), two of 5 s waiting: a newcomer would start at 14 s and end at 19 s.
    verdict = decide(workers=1, max_waiting=32, running=[(5.0, 1.0)], waiting=[5.0, 5.0], own_seconds=5.0, seconds_to_deadline=10)
    assert isinstance(verdict, Refused)
    assert verdict.retry_after_seconds == 9  # 19 s of work, 10 s of deadline
    assert "past its deadline of 10 s" in verdict.reason and "explainer.timeoutSeconds" in verdict.reason
    # The same newcomer with a deadline that allows it waits.
    assert decide(
        workers=1, max_waiting=32, running=[(5.0, 1.0)], waiting=[5.0, 5.0], own_seconds=5.0, seconds_to_deadline=19
    ) == Admitted(19.0)


def test_a_method_not_timed_yet_counts_as_the_mean_of_those_that_were() -> None:
    # Ahead: one running (2 s expected, untimed method counts as the mean 2 s), one waiting untimed.
    verdict = decide(workers=1, max_waiting=8, running=[(None, 0.0)], waiting=[None], own_seconds=2.0, seconds_to_deadline=5)
    assert isinstance(verdict, Refused) and verdict.retry_after_seconds == 1  # 6 s of work, 5 s of deadline


def test_before_anything_is_timed_only_the_waiting_room_s_size_decides() -> None:
    assert decide(
        workers=1, max_waiting=1, running=[(None, 0.0)], waiting=[], own_seconds=None, seconds_to_deadline=0.1
    ) == Admitted(None)
    full = decide(workers=1, max_waiting=1, running=[(None, 0.0)], waiting=[None], own_seconds=None, seconds_to_deadline=60)
    assert isinstance(full, Refused) and full.retry_after_seconds == 1
    assert "--max_waiting_explanations" in full.reason


def test_a_full_waiting_room_says_when_its_first_one_will_have_started() -> None:
    full = decide(
        workers=2, max_waiting=1, running=[(3.0, 0.5), (8.0, 0.0)], waiting=[1.0], own_seconds=1.0, seconds_to_deadline=60
    )
    assert isinstance(full, Refused) and full.retry_after_seconds == 3  # the first worker frees at 2.5 s


def test_one_that_finds_a_worker_free_runs_even_when_its_method_has_been_running_into_its_deadline() -> None:
    """Only running refreshes a method's recent time: refusing it here would refuse it for good."""
    assert decide(
        workers=2, max_waiting=8, running=[(3.0, 2.0)], waiting=[], own_seconds=3.0, seconds_to_deadline=3.0
    ) == Admitted(3.0)
    waits = decide(workers=1, max_waiting=8, running=[(3.0, 2.0)], waiting=[], own_seconds=3.0, seconds_to_deadline=3.0)
    assert isinstance(waits, Refused) and waits.retry_after_seconds == 1  # 1 s ahead of it, then 3 s: 1 s past
