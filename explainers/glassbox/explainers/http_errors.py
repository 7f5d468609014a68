"""Errors the servers answer with a status code and a message naming the problem."""

from __future__ import annotations

from fastapi import HTTPException


def http_error(status: int, message: str) -> HTTPException:
    """Both servers answer these as `{"error": message}` with this status code (see serving)."""
    return HTTPException(status_code=status, detail=message)
