"""Errors of the daemon's lifecycle."""

from __future__ import annotations


class DaemonError(Exception):
    """The daemon cannot start or had to stop; the message says why in one line."""


class StateDiverged(DaemonError):
    """A store write failed after the in-memory state moved: only a restart (replay) is safe."""
