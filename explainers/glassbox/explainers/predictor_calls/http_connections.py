"""Keep-alive HTTP/1.1 connections to one server, pooled, on the standard library.

The explainer calls its predictor about a hundred times per anchor, one call
after another, each a few kilobytes. A general-purpose client's layers (auth,
redirects, cookies, a connection pool built for many hosts) cost more CPU per
call than the predictor's forward pass; `http.client` on a connection kept
open costs a fraction of it. A connection serves one call at a time: a thread
takes an idle one or opens a new one, and gives it back when the answer has
been read.

`timeout_seconds` bounds each wait for the server (connecting, or the next
bytes of the answer); a call may ask for a shorter one. A `deadline` (a
`time.monotonic()` instant) bounds the whole call: a server that answers one
byte at a time is cut off there, by one alarm thread that shuts the call's
socket down, and the call raises `CallPastDeadline`. A connection the server
closed while it sat idle is found on its next use and the call is sent again
on a new connection, once. A path in the base URL (a gateway's prefix) comes
before every request's path.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from glassbox.explainers.predictor_calls.errors import CallPastDeadline

# What a connection that sat idle raises when the server closed it meanwhile.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


@dataclass(order=True)
class _Alarm:
    deadline: float
    order: int
    connection: http.client.HTTPConnection | None = field(compare=False)
    rung: bool = field(default=False, compare=False)
    off: bool = field(default=False, compare=False)


class _AlarmClock:
    """One daemon thread that shuts down the socket of every call still running at its deadline.

    `set` and `unset` cost a heap push and a flag under one lock; an alarm unset
    before its time never touches its connection, so a connection given back to
    the pool is never shut down by a late alarm."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._alarms: list[_Alarm] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._unset = 0  # alarms unset but still in the heap

    def set(self, deadline: float, connection: http.client.HTTPConnection) -> _Alarm:
        alarm = _Alarm(deadline, next(self._order), connection)
        with self._lock:
            heapq.heappush(self._alarms, alarm)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            elif self._alarms[0] is alarm:
                self._lock.notify()
        return alarm

    def unset(self, alarm: _Alarm) -> bool:
        """Whether the alarm had rung (then the call was cut off)."""
        with self._lock:
            alarm.off = True
            alarm.connection = None
            self._unset += 1
            if self._unset > 1024 and 2 * self._unset > len(self._alarms):
                # Most calls end long before their deadline: drop their alarms now and then, not one by one.
                self._alarms = [a for a in self._alarms if not a.off]
                heapq.heapify(self._alarms)
                self._unset = 0
            return alarm.rung

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._alarms and self._alarms[0].off:
                    heapq.heappop(self._alarms)
                    self._unset -= 1
                if not self._alarms:
                    self._lock.wait()
                    continue
                wait = self._alarms[0].deadline - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                alarm = heapq.heappop(self._alarms)
                alarm.rung = True
                sock = alarm.connection.sock if alarm.connection is not None else None
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked reading or writing
                    except OSError:
                        pass  # closed meanwhile


_ALARMS = _AlarmClock()


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class ConnectionPool:
    def __init__(self, base_url: str, timeout_seconds: float, max_idle: int = 16):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http:// or https:// URL with a host, got {base_url!r}")
        self.https = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.prefix = parts.path.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.max_idle = max_idle
        self._ssl_context = ssl.create_default_context() if self.https else None
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_seconds, context=self._ssl_context)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_seconds)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_seconds: float | None = None,
        deadline: float | None = None,
    ) -> Answer:
        """Raises TimeoutError when the server is silent for the timeout, CallPastDeadline (a TimeoutError)
        when the whole answer has not come by `deadline`, OSError or http.client.HTTPException when the
        server cannot be reached or breaks the protocol."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                return self._exchange(connection, method, path, body, headers, timeout_seconds, deadline)
            except _STALE:
                pass  # closed by the server while idle: once more on a new connection
        return self._exchange(self._connect(), method, path, body, headers, timeout_seconds, deadline)

    def _exchange(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str] | None,
        timeout_seconds: float | None,
        deadline: float | None,
    ) -> Answer:
        timeout = timeout_seconds or self.timeout_seconds
        alarm = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                connection.close()
                raise CallPastDeadline("the deadline had passed before the call")
            timeout = min(timeout, left)
            alarm = _ALARMS.set(deadline, connection)
        if connection.timeout != timeout:
            connection.timeout = timeout  # for connecting
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        try:
            connection.request(method, self.prefix + path, body=body, headers=headers or {})
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        except BaseException as error:
            connection.close()
            if alarm is not None and (_ALARMS.unset(alarm) or time.monotonic() >= deadline):  # type: ignore[operator]
                raise CallPastDeadline(f"no whole answer by the deadline ({type(error).__name__})") from None
            raise
        if alarm is not None and _ALARMS.unset(alarm):
            connection.close()  # the answer came whole, but its socket is shut down
            return answer
        if response.will_close:
            connection.close()
            return answer
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(connection)
                return answer
        connection.close()
        return answer

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()
