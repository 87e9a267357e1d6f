"""Errors of the store; each message names the file and says what was (not) touched."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's failures."""


class StoreCorrupt(StoreError):
    """The file is not a usable node store; it was left exactly as it was."""


class StoreMismatch(StoreError):
    """The store belongs to another role or account than the configuration names."""
