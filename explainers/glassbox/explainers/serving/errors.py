"""Errors the servers answer with a status code and a message naming the problem: bad input (4xx),
a request the guard refuses before any work, and a full server (503 with Retry-After)."""

from __future__ import annotations

from fastapi import HTTPException

RETRY_AFTER_SECONDS = 1


def http_error(status: int, message: str, headers: dict[str, str] | None = None) -> HTTPException:
    """Both servers answer these as `{"error": message}` with this status code (see model_server)."""
    return HTTPException(status_code=status, detail=message, headers=headers)


def overloaded(message: str, retry_after_seconds: int = RETRY_AFTER_SECONDS) -> HTTPException:
    """503 with Retry-After: the server is full now, the request is fine; a client (or KServe's router) may retry."""
    return http_error(503, f"{message}; retry after {retry_after_seconds} s", {"Retry-After": str(retry_after_seconds)})


class InputError(ValueError):
    """Bad input: the server answers 4xx with this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class RequestRefused(Exception):
    """The request guard's answer to a body or header it will not read (its status and message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
