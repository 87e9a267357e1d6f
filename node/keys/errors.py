"""Errors of key handling; messages name files, never secrets."""

from __future__ import annotations


class KeysError(Exception):
    """Base of key handling failures."""


class KeyFileMissing(KeysError):
    """The keystore or identity file does not exist."""


class KeyFileInvalid(KeysError):
    """The file exists but does not hold a key in the expected form."""


class WrongPassword(KeysError):
    """The keystore did not open with the password given."""


class PasswordUnavailable(KeysError):
    """No password source (environment, file, prompt) gave a password."""


class KeyFileExists(KeysError):
    """Refusing to overwrite an existing key."""
