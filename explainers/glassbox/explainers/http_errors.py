"""Errors the servers answer with a status code and a message naming the problem."""

from __future__ import annotations

from fastapi import HTTPException


def http_error(status: int, message: str) -> HTTPException:
    """FastAPI answers these as `{"detail": message}` with this status code."""
    return HTTPException(status_code=status, detail=message)
