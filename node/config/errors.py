"""Errors of the configuration: each one is a single line naming the key and the expected form."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration cannot be used; the message is one line meant for the operator."""


class ConfigFileError(ConfigError):
    """The file is missing, unreadable or not TOML."""


class SettingError(ConfigError):
    """One setting is missing or has the wrong form."""

    def __init__(self, key: str, expected: str, *, got: object = None, source: str = "") -> None:
        where = f" (from {source})" if source else ""
        if got is None:
            message = f"{key} is missing{where}: expected {expected}"
        else:
            message = f"{key} = {got!r}{where}: expected {expected}"
        super().__init__(message)
        self.key = key
        self.expected = expected
        self.got = got
