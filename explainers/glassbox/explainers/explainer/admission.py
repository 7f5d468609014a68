"""Whether an explanation may wait for a worker: the decision, as pure functions of what is queued.

A request that finds a worker free runs. One that must wait is admitted when the explanations ahead of
it, at the time recent ones of their method took, leave it time to finish before its deadline; otherwise
it is refused at once (503), with a Retry-After that says when the work ahead will have drained enough for
it to fit. The waiting room also has a hard size (`max_waiting`), so waiting costs bounded memory whatever
the estimates say.

The expected start is list scheduling: the workers free up as those running finish (at their method's
recent time, less what they have run), and those waiting start in turn, first come first served, as the
executor's queue serves them.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

# How much the latest explanation moves a method's recent time: about the last ten count.
RECENT_WEIGHT = 0.2


@dataclass(frozen=True)
class Admitted:
    expected_seconds: float | None  # from now to the answer; None before any explanation has been timed


@dataclass(frozen=True)
class Refused:
    reason: str
    retry_after_seconds: int


def recent_seconds(previous: float | None, latest: float) -> float:
    """A method's recent time per explanation after one more took `latest` seconds."""
    return latest if previous is None else previous + RECENT_WEIGHT * (latest - previous)


def expected_start(workers: int, running_left: Sequence[float], waiting: Sequence[float]) -> float:
    """Seconds until a newcomer starts: `running_left` are the seconds each running explanation is
    expected to need still, `waiting` the expected seconds of each one queued ahead, in order."""
    free_at = [max(0.0, left) for left in running_left] + [0.0] * max(0, workers - len(running_left))
    heapq.heapify(free_at)
    for seconds in waiting:
        heapq.heappush(free_at, heapq.heappop(free_at) + seconds)
    return free_at[0]


def decide(
    *,
    workers: int,
    max_waiting: int,
    running: Sequence[tuple[float | None, float]],
    waiting: Sequence[float | None],
    own_seconds: float | None,
    seconds_to_deadline: float,
) -> Admitted | Refused:
    """Admit a newcomer, or refuse it with how long to wait before trying again.

    `running` holds each running explanation's expected seconds and the seconds it has run, `waiting`
    the expected seconds of each one queued, in order; `own_seconds` is the newcomer's. An explanation
    whose method has not been timed yet counts as the mean of those that have; when none has, nothing
    can be estimated and only the waiting room's size decides."""
    known = [s for s in (*(expected for expected, _ in running), *waiting, own_seconds) if s is not None]
    typical = sum(known) / len(known) if known else None

    def start_after(ahead: Sequence[float | None]) -> float:
        assert typical is not None
        left = [(typical if expected is None else expected) - ran for expected, ran in running]
        return expected_start(workers, left, [typical if s is None else s for s in ahead])

    if len(running) + len(waiting) + 1 - workers > max_waiting:
        # Room again once the first one waiting has started.
        first_starts = start_after([]) if typical is not None else 1.0
        return Refused(
            f"the explainer is computing {workers} explanations and {max_waiting} more wait, as many as its waiting "
            "room holds (--max_waiting_explanations; or more explainer replicas)",
            max(1, math.ceil(first_starts)),
        )
    if typical is None:
        return Admitted(None)
    start = start_after(waiting)
    finish = start + (typical if own_seconds is None else own_seconds)
    # One that finds a worker free always runs: only running refreshes a method's recent time (one that
    # ran into its deadline would otherwise refuse every later one for good), and it keeps no one waiting.
    if finish <= seconds_to_deadline or start <= 0:
        return Admitted(finish)
    return Refused(
        f"the explanations ahead of this one would take about {start:.1f} s and it about {finish - start:.1f} s more, "
        f"past its deadline of {seconds_to_deadline:.0f} s (explainer.timeoutSeconds; or more explainer replicas)",
        max(1, math.ceil(finish - seconds_to_deadline)),
    )
