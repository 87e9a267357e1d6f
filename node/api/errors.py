"""Errors of the API, on the server side (HTTP answers) and the client side (CLI)."""

from __future__ import annotations


class ApiError(Exception):
    """Base of API failures."""


class BadRequest(ApiError):
    """The request is malformed; becomes HTTP 400 with this message."""


class NotFound(ApiError):
    """No such resource; becomes HTTP 404."""


class DaemonUnreachable(ApiError):
    """The CLI found no running daemon (no URL/token file, or nothing answers)."""
