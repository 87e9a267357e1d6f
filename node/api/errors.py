"""Errors of the API, on the server side (HTTP answers) and the client side (CLI)."""

from __future__ import annotations


class ApiError(Exception):
    """Base of API failures."""


class NotFound(ApiError):
    """No such resource; becomes HTTP 404."""


class WrongRole(ApiError):
    """The action is not one this node's role takes; becomes HTTP 409."""


class NotReady(ApiError):
    """The resource exists but is not there yet (a job's output before it is verified);
    becomes HTTP 409."""


class InvalidAction(ApiError):
    """The action is well-formed but cannot be carried out as given; becomes HTTP 422."""


class Unavailable(ApiError):
    """The daemon cannot take the action now (busy or stopping); becomes HTTP 503."""


class DaemonRefused(ApiError):
    """The daemon answered a CLI request with an error status (the client side of the above)."""

    def __init__(self, message: str, *, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class DaemonUnreachable(ApiError):
    """The CLI found no running daemon (no URL/token file, or nothing answers)."""
