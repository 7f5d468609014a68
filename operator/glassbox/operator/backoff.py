"""How long to wait before trying again after a transient failure: one rule for the whole operator."""

from __future__ import annotations

import random
from collections.abc import Callable

# Retries after transient failures (API errors, KServe's CRDs not installed yet): exponential from
# the first delay, capped, each drawn between half and all of it so that many objects do not retry in step.
FIRST_RETRY_SECONDS = 2.0
MAX_RETRY_SECONDS = 300.0
# The watches, kopf's own requests, and reconciles that an event asked for and an API
# error stopped, retry from this delay, doubling up to the cap, for as long as it takes.
API_RETRY_FIRST_SECONDS = 1.0
API_RETRY_MAX_SECONDS = 30.0


def retry_delay(
    retry: int,
    retry_after: float | None = None,
    draw: Callable[[], float] = random.random,
    first: float = FIRST_RETRY_SECONDS,
    cap: float = MAX_RETRY_SECONDS,
) -> float:
    """Seconds before retry number `retry` (0 for the first): capped exponential backoff with jitter,
    never sooner than the API server's Retry-After."""
    ceiling = min(cap, first * 2.0 ** min(retry, 20))
    delay = ceiling * (0.5 + 0.5 * draw())
    return max(delay, retry_after or 0.0)
