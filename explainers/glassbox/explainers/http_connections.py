"""Keep-alive HTTP/1.1 connections to one server, pooled, on the standard library.

The explainer calls its predictor about a hundred times per anchor, one call
after another, each a few kilobytes. A general-purpose client's layers (auth,
redirects, cookies, a connection pool built for many hosts) cost more CPU per
call than the predictor's forward pass; `http.client` on a connection kept
open costs a fraction of it. A connection serves one call at a time: a thread
takes an idle one or opens a new one, and gives it back when the answer has
been read.

`timeout_seconds` bounds each wait for the server (connecting, or the next
bytes of the answer); a call may ask for a shorter one. A connection the
server closed while it sat idle is found on its next use and the call is sent
again on a new connection, once. A path in the base URL (a gateway's prefix)
comes before every request's path.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

# What a connection that sat idle raises when the server closed it meanwhile.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


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
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout_seconds: float | None = None
    ) -> Answer:
        """Raises TimeoutError when the server is silent for the timeout, OSError or
        http.client.HTTPException when it cannot be reached or breaks the protocol."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is not None:
            try:
                return self._exchange(connection, method, path, body, headers, timeout_seconds)
            except _STALE:
                pass  # closed by the server while idle: once more on a new connection
        return self._exchange(self._connect(), method, path, body, headers, timeout_seconds)

    def _exchange(
        self, connection: http.client.HTTPConnection, method: str, path: str, body: bytes | None, headers: dict[str, str] | None,
        timeout_seconds: float | None,
    ) -> Answer:
        timeout = timeout_seconds or self.timeout_seconds
        if connection.timeout != timeout:
            connection.timeout = timeout  # for connecting
            if connection.sock is not None:
                connection.sock.settimeout(timeout)
        try:
            connection.request(method, self.prefix + path, body=body, headers=headers or {})
            response = connection.getresponse()
            answer = Answer(response.status, response.headers, response.read())
        except BaseException:
            connection.close()
            raise
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
