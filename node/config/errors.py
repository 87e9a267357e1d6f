"""Errors of the configuration: each one is a single line naming the key and the expected form."""

from __future__ import annotations

import errno


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


class PortInUse(ConfigError):
    """A port the configuration names is taken, most often by another daemon on this machine."""


def address_in_use(exc: BaseException) -> bool:
    """Whether `exc`, or an exception inside its groups or causes, is EADDRINUSE."""
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(address_in_use(inner) for inner in exc.exceptions)
    cause = exc.__cause__ or exc.__context__
    return cause is not None and address_in_use(cause)
