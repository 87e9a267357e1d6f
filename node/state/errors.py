"""Errors of the state machine."""

from __future__ import annotations


class StateError(Exception):
    """Base of the state machine's failures."""


class CodecError(StateError):
    """A stored state change, effect or snapshot cannot be decoded."""


class InvalidValue(StateError, ValueError):
    """A domain value (address, job id, hash) has the wrong form."""
