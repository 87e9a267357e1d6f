"""Closing what a peer left behind: bounded, shielded from cancellation, never raising.

The guards around py-libp2p reset streams and close connections after a failure, often
while their own task is being cancelled; a close that raised or hung there would undo
the containment it is part of.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from libp2p.exceptions import BaseLibp2pError, ParseError

logger = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0


def shielded(seconds: float = CLOSE_TIMEOUT_S) -> trio.CancelScope:
    """A scope that ignores outside cancellation but gives up after `seconds`."""
    return trio.CancelScope(deadline=trio.current_time() + seconds, shield=True)


async def close_quietly(close: Callable[[], Awaitable[Any]]) -> None:
    with shielded():
        try:
            await close()
        except Exception as exc:
            logger.debug("close after a failure: %r", exc)


def is_stream_end(exc: BaseException) -> bool:
    """A stream or connection that closed, reset or broke under a handler: ordinary
    churn, nobody's fault (a parse error is the exception: the peer sent garbage)."""
    return isinstance(
        exc,
        BaseLibp2pError | trio.BrokenResourceError | trio.ClosedResourceError | ConnectionError,
    ) and not isinstance(exc, ParseError)
