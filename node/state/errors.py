"""Errors of the state machine."""

from __future__ import annotations


class StateError(Exception):
    """Base of the state machine's failures."""


class CodecError(StateError):
    """A stored state change, effect or snapshot cannot be decoded."""


class InvalidValue(StateError, ValueError):
    """A domain value (address, job id, hash) has the wrong form."""


class UnexpectedChange(StateError):
    """A role was handed a state change it has no handler for: a wiring bug, never input."""

    def __init__(self, role: object, change: object) -> None:
        super().__init__(f"the {role} role has no handler for {type(change).__name__}")
