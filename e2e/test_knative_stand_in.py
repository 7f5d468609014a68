"""The stand-in for Knative that `make scale` puts in front of explainer replicas: its autoscaler decides as
Knative's KPA does, and its activator keeps containerConcurrency, against a real server on loopback."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from glassbox_testing.knative import Activator, KpaSettings, KpaState, Replica, kpa_scale

SETTINGS = KpaSettings(target=4, max_replicas=10)  # 2.8 in flight per replica at 70% utilization


def test_the_stable_window_asks_for_concurrency_over_target_times_utilization() -> None:
    assert kpa_scale(SETTINGS, KpaState(), 1, 2.8, 2.8, 0.0)[0] == 1
    assert kpa_scale(SETTINGS, KpaState(), 1, 2.9, 2.9, 0.0)[0] == 2
    assert kpa_scale(SETTINGS, KpaState(), 3, 6.0, 6.0, 0.0)[0] == 3  # ceil(6 / 2.8)
    assert kpa_scale(SETTINGS, KpaState(), 3, 0.0, 0.0, 0.0)[0] == 1  # never below minReplicas


def test_a_burst_panics_scales_up_at_once_and_never_down_until_a_stable_window_after() -> None:
    # 24 in flight on one ready replica: the panic window wants 9, over twice the ready one.
    desired, state = kpa_scale(SETTINGS, KpaState(), 1, 1.0, 24.0, 0.0)
    assert desired == 9 and state.panic_since == 0.0
    # The burst is done (the panic window sees nothing) but the stable one remembers it: no scale-down.
    desired, state = kpa_scale(SETTINGS, state, 9, 3.0, 0.0, 30.0)
    assert desired == 9 and state.panic_since == 0.0
    # A stable window after the last panic, the stable figure decides; down by at most half a tick.
    desired, state = kpa_scale(SETTINGS, state, 9, 0.0, 0.0, 61.0)
    assert state.panic_since is None and desired == 4  # floor(9 / max-scale-down-rate 2)


def test_the_windows_shrink_together() -> None:
    scaled = KpaSettings(target=4).scaled(5)
    assert (scaled.stable_window, scaled.panic_window, scaled.tick) == (12.0, 1.2, 0.4)


class HeldServer:
    """A loopback server that holds each request `hold` seconds and records how many it held at once."""

    def __init__(self, hold: float):
        self.in_flight = 0
        self.most = 0
        lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    server.in_flight += 1
                    server.most = max(server.most, server.in_flight)
                time.sleep(hold)
                with lock:
                    server.in_flight -= 1
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        threading.Thread(target=self.http.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def held() -> Iterator[HeldServer]:
    server = HeldServer(0.3)
    yield server
    server.close()


@pytest.mark.parametrize("limit,most", [(2, 2), (0, 6)])
def test_the_activator_sends_a_replica_no_more_than_its_container_concurrency(held: HeldServer, limit: int, most: int) -> None:
    async def burst() -> tuple[list[int], float]:
        activator = Activator(limit, revision_timeout=30)
        activator.replicas.append(Replica(held.url, lambda: None, ready=True))
        sampled: list[float] = []

        async def watch() -> None:
            for _ in range(5):
                await asyncio.sleep(0.05)
                sampled.append(activator.concurrency)

        answers, _ = await asyncio.gather(asyncio.gather(*(activator.send("/", b"{}") for _ in range(6))), watch())
        await activator.close()
        return [a.status for a in answers], max(sampled)

    statuses, concurrency = asyncio.run(burst())
    assert statuses == [200] * 6
    assert held.most == most  # with a limit the rest waited in the activator, without one the replica took all
    assert concurrency == 6  # Knative's metric counts what the activator holds too


def test_a_request_the_activator_cannot_place_before_the_revision_timeout_gets_504() -> None:
    async def nowhere() -> int:
        activator = Activator(1, revision_timeout=0.3)
        answer = await activator.send("/", b"{}")  # no replica ready
        await activator.close()
        return answer.status

    assert asyncio.run(nowhere()) == 504


def test_the_revision_timeout_counts_from_arrival_buffering_included(held: HeldServer) -> None:
    """Two requests, room for one, 0.3 s each, a 0.45 s timeout: the second has 0.15 s left once placed."""

    async def two() -> list[tuple[int, float]]:
        activator = Activator(1, revision_timeout=0.45)
        activator.replicas.append(Replica(held.url, lambda: None, ready=True))
        answers = await asyncio.gather(*(activator.send("/", b"{}") for _ in range(2)))
        await activator.close()
        return [(a.status, a.seconds) for a in answers]

    (first, first_s), (second, second_s) = asyncio.run(two())
    assert (first, second) == (200, 504)
    assert second_s < 0.45 + 0.1  # not a fresh timeout after it was placed
