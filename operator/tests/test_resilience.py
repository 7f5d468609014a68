"""The operator's behaviour under API trouble, as pure decisions: retry delays, Event rate, the periodic check."""

from __future__ import annotations

import collections.abc
import itertools
from typing import Any

import pytest

from glassbox.operator.backoff import MAX_RETRY_SECONDS, retry_delay
from glassbox.operator.handlers import EndlessBackoff, WarningLimiter
from glassbox.operator.kube import Transient
from glassbox.operator.resync import PeriodicResync


def test_retries_back_off_exponentially_with_jitter_up_to_a_cap() -> None:
    lowest = [retry_delay(n, draw=lambda: 0.0) for n in range(12)]
    highest = [retry_delay(n, draw=lambda: 1.0) for n in range(12)]
    assert highest[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert lowest[:3] == [1.0, 2.0, 4.0]  # jitter: between half and all of the step
    assert max(highest) == MAX_RETRY_SECONDS and highest[-1] == MAX_RETRY_SECONDS
    assert retry_delay(10_000, draw=lambda: 1.0) == MAX_RETRY_SECONDS  # no overflow
    # Retry-After (429) is a floor, not replaced by a shorter backoff.
    assert retry_delay(0, retry_after=17, draw=lambda: 1.0) == 17
    assert retry_delay(6, retry_after=1, draw=lambda: 1.0) == 128


def test_kopfs_requests_retry_without_end_from_a_fresh_series_each_time() -> None:
    backoffs = EndlessBackoff(first=1.0, cap=30.0)
    # kopf counts the attempts only of a sized series and escalates after its last one; ours has no size.
    assert isinstance(backoffs, collections.abc.Iterable) and not isinstance(backoffs, collections.abc.Sized)
    first_series = list(itertools.islice(backoffs, 1000))
    assert len(first_series) == 1000  # still going after 1,000 attempts (over six hours at the cap)
    assert 0.5 <= first_series[0] <= 1.0 and all(15.0 <= d <= 30.0 for d in first_series[10:])
    # Each request starts from the first delay again: one long outage does not slow the next request's retries.
    assert next(iter(backoffs)) <= 1.0


def test_the_same_warning_reaches_an_object_at_most_once_per_interval() -> None:
    now = [0.0]
    limiter = WarningLimiter(interval=600, clock=lambda: now[0])
    assert limiter.allow("uid-1", "NameConflict")
    assert not limiter.allow("uid-1", "NameConflict")
    assert limiter.allow("uid-1", "InvalidSpec")  # another reason
    assert limiter.allow("uid-2", "NameConflict")  # another object
    now[0] = 599
    assert not limiter.allow("uid-1", "NameConflict")
    now[0] = 600
    assert limiter.allow("uid-1", "NameConflict")


def _xm(name: str, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ml"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


def test_the_periodic_check_hands_on_each_object_and_survives_api_failures() -> None:
    seen: list[str] = []
    resync = PeriodicResync(
        lambda ns: [_xm("a"), _xm("b"), _xm("gone", deleting=True), _xm("c")],
        lambda body: seen.append(body["metadata"]["name"]),
        ["ml"],
    )
    assert resync.run_pass() == 3
    assert seen == ["a", "b", "c"]

    def failing_list(_: Any) -> list[dict[str, Any]]:
        raise Transient("could not list ExplainedModel: connection refused")

    assert PeriodicResync(failing_list, lambda body: None, []).run_pass() == 0


@pytest.mark.parametrize("elapsed,stuck", [(0, False), (60 + 3 * 120, False), (60 + 3 * 120 + 1, True)])
def test_a_periodic_check_without_progress_is_reported_stuck(elapsed: float, stuck: bool) -> None:
    now = [1000.0]
    resync = PeriodicResync(lambda ns: [], lambda body: None, [], interval=120, first_delay=60, clock=lambda: now[0])
    now[0] += elapsed
    assert (resync.stuck_for() is not None) == stuck
    resync.run_pass()  # progress
    assert resync.stuck_for() is None


def test_the_watches_cache_is_on_unless_the_operator_is_told_to_read_every_child() -> None:
    from glassbox.cli import build_parser

    assert build_parser().parse_args(["operator"]).read_children_from_api is False
    assert build_parser().parse_args(["operator", "--read-children-from-api"]).read_children_from_api is True
