"""Knative Serving's request path and autoscaler, played in front of real server processes (`make scale`).

No Knative can run here (its controllers need a Go build and a network), so this stands in for the two parts
that decide what a burst meets:

- the activator and queue-proxy (`Activator`): with `containerConcurrency` set, no replica is sent more than
  that many requests at once; the rest are buffered, in order, until a replica has room or the revision's
  timeout passes (then 504). With it unset (0), every request goes at once to the least busy replica,
  which is what a pod meets when nothing told Knative it was full. (knative.dev/docs/serving/
  request-flow; serving pkg/activator/net/throttler.go and pkg/queue/breaker.go hold the same rule.)
- the Knative Pod Autoscaler (`kpa_scale`): the stable and panic windows of knative/serving
  pkg/autoscaler/scaling/autoscaler.go `Scale`, with config-autoscaler's defaults (`KpaSettings`): desired
  replicas are the observed concurrency over target x utilization, averaged over the stable window;
  panic mode starts when the panic window asks for twice the ready replicas, scales only up while it
  lasts, and ends a stable window after the surge; each tick moves at most by max-scale-up-rate and
  max-scale-down-rate. `scaled` shortens the windows and tick for a benchmark that cannot wait minutes.

The observed concurrency is what Knative's metric counts: requests in flight at replicas plus those the
activator holds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import Any

import httpx


@dataclass(frozen=True)
class KpaSettings:
    """One revision's autoscaling: its annotations and config-autoscaler's defaults (knative/serving
    config/core/configmaps/autoscaler.yaml)."""

    target: float  # autoscaling.knative.dev/target; container-concurrency-target-default 100 when unset
    min_replicas: int = 1
    max_replicas: int = 4
    target_utilization: float = 0.7  # container-concurrency-target-percentage: "70"
    stable_window: float = 60.0  # stable-window: "60s"
    panic_window_percentage: float = 10.0  # panic-window-percentage: "10.0"
    panic_threshold: float = 2.0  # panic-threshold-percentage: "200.0"
    max_scale_up_rate: float = 1000.0  # max-scale-up-rate: "1000.0"
    max_scale_down_rate: float = 2.0  # max-scale-down-rate: "2.0"
    tick: float = 2.0  # the autoscaler's tick-interval: "2s"

    @property
    def panic_window(self) -> float:
        return self.stable_window * self.panic_window_percentage / 100

    def scaled(self, factor: float) -> KpaSettings:
        """The same autoscaler, its windows and tick `factor` times shorter."""
        return replace(self, stable_window=self.stable_window / factor, tick=self.tick / factor)


@dataclass(frozen=True)
class KpaState:
    panic_since: float | None = None
    max_panic_replicas: int = 0


def kpa_scale(
    settings: KpaSettings, state: KpaState, ready: int, stable_average: float, panic_average: float, now: float
) -> tuple[int, KpaState]:
    """The replicas Knative's autoscaler wants now, and its state for the next tick."""
    ready_count = max(1.0, float(ready))
    per_replica = settings.target * settings.target_utilization
    most = math.ceil(settings.max_scale_up_rate * ready_count)
    fewest = math.floor(ready_count / settings.max_scale_down_rate)
    wanted_stable = math.ceil(stable_average / per_replica)
    wanted_panic = math.ceil(panic_average / per_replica)
    stable = min(max(wanted_stable, fewest), most)
    panic = min(max(wanted_panic, fewest), most)
    over_threshold = wanted_panic / ready_count >= settings.panic_threshold
    panic_since, max_panic = state.panic_since, state.max_panic_replicas
    if over_threshold:
        panic_since = now  # begin panicking, or extend the panic
    elif panic_since is not None and panic_since + settings.stable_window < now:
        panic_since, max_panic = None, 0  # the surge has reached the stable window
    desired = stable
    if panic_since is not None:
        desired = max(desired, panic)
        # No scaling down while panicking: only increases apply.
        max_panic = max(max_panic, desired)
        desired = max_panic
    desired = min(max(desired, settings.min_replicas), settings.max_replicas)
    return desired, KpaState(panic_since, max_panic)


@dataclass(eq=False)
class Replica:
    """One pod: where it answers, whether it is ready, and what it is computing now."""

    url: str
    stop: Callable[[], None]
    ready: bool = False
    leaving: bool = False
    in_flight: int = 0


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    retry_after: str | None = None


@dataclass
class Activator:
    """Requests in, replicas out, with `container_concurrency` semantics (0: no limit) and Knative's metric."""

    container_concurrency: int
    revision_timeout: float
    replicas: list[Replica] = field(default_factory=list)
    buffered: int = 0
    samples: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=100_000))

    def __post_init__(self) -> None:
        self._room = asyncio.Condition()
        self._client = httpx.AsyncClient(
            timeout=self.revision_timeout, limits=httpx.Limits(max_connections=None, max_keepalive_connections=256)
        )

    @property
    def concurrency(self) -> float:
        return self.buffered + sum(r.in_flight for r in self.replicas)

    def sample(self) -> None:
        self.samples.append((time.monotonic(), self.concurrency))

    def average(self, window: float) -> float:
        since = time.monotonic() - window
        values = [value for at, value in self.samples if at >= since]
        return sum(values) / len(values) if values else 0.0

    async def changed(self) -> None:
        """A replica became ready or is leaving: buffered requests look again."""
        async with self._room:
            self._room.notify_all()

    def _pick(self) -> Replica | None:
        open_ = [r for r in self.replicas if r.ready and not r.leaving]
        if self.container_concurrency:
            open_ = [r for r in open_ if r.in_flight < self.container_concurrency]
        return min(open_, key=lambda r: r.in_flight, default=None)

    async def _acquire(self, deadline: float) -> Replica | None:
        async with self._room:
            replica = self._pick()
            if replica is None:
                self.buffered += 1
                try:
                    while replica is None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            return None
                        try:
                            await asyncio.wait_for(self._room.wait(), left)
                        except TimeoutError:
                            return None
                        replica = self._pick()
                finally:
                    self.buffered -= 1
            replica.in_flight += 1
            return replica

    async def _release(self, replica: Replica) -> None:
        async with self._room:
            replica.in_flight -= 1
            self._room.notify_all()

    async def send(self, path: str, body: bytes) -> Answer:
        """One request, answered within the revision's timeout from its arrival, buffering included (then 504)."""
        began = time.monotonic()
        deadline = began + self.revision_timeout
        replica = await self._acquire(deadline)
        if replica is None:
            return Answer(504, time.monotonic() - began)
        try:
            response = await self._client.post(
                replica.url + path,
                content=body,
                headers={"content-type": "application/json"},
                timeout=max(0.001, deadline - time.monotonic()),
            )
            return Answer(response.status_code, time.monotonic() - began, response.headers.get("retry-after"))
        except httpx.TimeoutException:
            return Answer(504, time.monotonic() - began)
        except httpx.HTTPError:
            return Answer(502, time.monotonic() - began)
        finally:
            await self._release(replica)

    async def drain(self, replica: Replica) -> None:
        """Take a replica out of routing, wait for what it computes, then stop it (SIGTERM after endpoints)."""
        replica.leaving = True
        await self.changed()
        while replica.in_flight:
            await asyncio.sleep(0.1)
        self.replicas.remove(replica)
        await asyncio.to_thread(replica.stop)

    async def close(self) -> None:
        await self._client.aclose()


async def autoscale(
    activator: Activator,
    settings: KpaSettings,
    start_replica: Callable[[], Coroutine[Any, Any, Replica]],
    timeline: list[tuple[float, int, int, float]],
    stop: asyncio.Event,
    began: float,
) -> None:
    """Sample the activator's concurrency and, every tick, start or drain replicas as `kpa_scale` says;
    `timeline` gets (seconds since `began`, ready replicas, replicas wanted, requests in flight and buffered)
    at every tick."""
    state = KpaState()
    samples_per_tick = 10
    starting: list[asyncio.Task[None]] = []

    async def start_one() -> None:
        replica = await start_replica()
        # Routed, and no longer counted as starting, in one step: no tick counts it twice.
        activator.replicas.append(replica)
        this = asyncio.current_task()
        starting[:] = [task for task in starting if task is not this]
        await activator.changed()

    while not stop.is_set():
        for _ in range(samples_per_tick):
            activator.sample()
            await asyncio.sleep(settings.tick / samples_per_tick)
        now = time.monotonic()
        present = [r for r in activator.replicas if not r.leaving]
        ready = sum(r.ready for r in present)
        desired, state = kpa_scale(
            settings, state, ready, activator.average(settings.stable_window), activator.average(settings.panic_window), now
        )
        for _ in range(desired - len(present) - len(starting)):
            starting.append(asyncio.create_task(start_one()))
        surplus = len(present) + len(starting) - desired
        for replica in sorted((r for r in present if r.ready), key=lambda r: r.in_flight)[: max(0, surplus)]:
            replica.leaving = True  # out of the count at once; drained in the background
            asyncio.create_task(activator.drain(replica))
        timeline.append((round(now - began, 2), ready, len(present) + len(starting), activator.concurrency))
    await asyncio.gather(*starting)
