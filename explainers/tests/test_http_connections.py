"""The explainer's keep-alive connections, against a real HTTP server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from glassbox.explainers.predictor_calls.http_connections import ConnectionPool


class Server(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0
    delay_seconds = 0.0
    drip_seconds = 0.0  # then the answer comes one byte at a time, this far apart
    close_after_answer = False
    idle_timeout_seconds: float | None = None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise
    server: Server

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout_seconds  # then the server closes a connection left idle
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        time.sleep(self.server.delay_seconds)
        answer = body[::-1]
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.send_header("X-Path", self.path)
        if self.server.close_after_answer:
            self.send_header("Connection", "close")
        self.end_headers()
        if not self.server.drip_seconds:
            self.wfile.write(answer)
            return
        try:
            for byte in answer:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(self.server.drip_seconds)
        except OSError:
            pass  # the client gave up

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def base(server: Server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_calls_share_one_kept_alive_connection(server: Server) -> None:
    pool = ConnectionPool(base(server), timeout_seconds=5)
    answers = [pool.request("POST", f"/v2/models/m/infer?i={i}", f"body {i}".encode()) for i in range(20)]
    assert [a.body for a in answers] == [f"body {i}".encode()[::-1] for i in range(20)]
    assert answers[3].status == 200 and answers[3].headers["X-Path"] == "/v2/models/m/infer?i=3"
    assert server.connections == 1
    pool.close()


def test_concurrent_calls_each_get_a_connection_and_give_it_back(server: Server) -> None:
    server.delay_seconds = 0.05
    pool = ConnectionPool(base(server), timeout_seconds=5, max_idle=4)
    threads = [threading.Thread(target=lambda i=i: pool.request("POST", "/", b"x" * i)) for i in range(1, 5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert server.connections == 4
    for _ in range(8):
        pool.request("POST", "/", b"again")
    assert server.connections == 4  # reused, none opened
    pool.close()


def test_a_connection_the_server_closed_while_idle_is_replaced_without_an_error(server: Server) -> None:
    server.idle_timeout_seconds = 0.2  # like uvicorn's keep-alive timeout, only shorter
    pool = ConnectionPool(base(server), timeout_seconds=5)
    assert pool.request("POST", "/", b"first").body == b"tsrif"
    time.sleep(0.5)
    assert pool.request("POST", "/", b"second").body == b"dnoces"
    assert server.connections == 2
    pool.close()


def test_an_answer_that_closes_the_connection_is_not_kept(server: Server) -> None:
    server.close_after_answer = True
    pool = ConnectionPool(base(server), timeout_seconds=5)
    for _ in range(3):
        assert pool.request("POST", "/", b"ab").body == b"ba"
    assert server.connections == 3 and pool._idle == []


def test_a_silent_server_times_out_and_a_call_may_ask_for_less(server: Server) -> None:
    server.delay_seconds = 1.0
    pool = ConnectionPool(base(server), timeout_seconds=0.2)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        pool.request("POST", "/", b"slow")
    assert time.monotonic() - began < 0.9
    server.delay_seconds = 0.3
    with pytest.raises(TimeoutError):
        pool.request("POST", "/", b"slow", timeout_seconds=0.1)
    assert pool.request("POST", "/", b"ok", timeout_seconds=5).body == b"ko"


def test_a_dripping_answer_is_cut_off_at_the_deadline_and_the_pool_goes_on(server: Server) -> None:
    """One byte every 0.1 s never trips a 1 s read timeout; the deadline bounds the whole call."""
    from glassbox.explainers.predictor_calls.errors import CallPastDeadline

    server.drip_seconds = 0.1
    pool = ConnectionPool(base(server), timeout_seconds=1)
    began = time.monotonic()
    with pytest.raises(CallPastDeadline):
        pool.request("POST", "/", b"x" * 100, deadline=began + 0.5)
    assert 0.45 < time.monotonic() - began < 0.7
    assert pool._idle == []  # the cut-off connection is not kept
    server.drip_seconds = 0.0
    for _ in range(3):  # calls that end long before their deadline: their alarms never touch the connection again
        assert pool.request("POST", "/", b"ok", deadline=time.monotonic() + 0.3).body == b"ko"
    time.sleep(0.4)  # past those deadlines
    assert pool.request("POST", "/", b"again").body == b"niaga"
    assert server.connections == 2
    with pytest.raises(CallPastDeadline):
        pool.request("POST", "/", b"late", deadline=time.monotonic() - 1)


def test_nothing_listening_is_an_os_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pool = ConnectionPool(f"http://127.0.0.1:{port}", timeout_seconds=1)
    with pytest.raises(ConnectionRefusedError):
        pool.request("POST", "/", b"x")


def test_a_path_in_the_base_url_prefixes_every_request(server: Server) -> None:
    pool = ConnectionPool(base(server) + "/gateway/", timeout_seconds=5)
    assert pool.request("POST", "/v2/models/m/infer", b"x").headers["X-Path"] == "/gateway/v2/models/m/infer"


def test_a_url_without_scheme_or_host_is_refused_with_what_is_expected() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        ConnectionPool("predictor:8080", timeout_seconds=1)
