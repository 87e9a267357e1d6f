"""What goes wrong while bringing a devnet up or down, in the devnet's words."""

from __future__ import annotations


class DevnetError(Exception):
    """Root of the devnet's errors; the message is one line unless it carries a log tail."""


class DevnetRunning(DevnetError):
    """The directory holds a devnet whose processes are still alive."""


class DevnetMissing(DevnetError):
    """No devnet state file where one was expected."""


class StateFileInvalid(DevnetError):
    """The state file exists but is not one this version wrote."""


class NodeFailed(DevnetError):
    """A node exited during start-up or did not become ready in time."""

    def __init__(self, name: str, reason: str, log_tail: list[str]) -> None:
        self.name = name
        self.reason = reason
        self.log_tail = log_tail
        shown = "\n".join(f"  | {line}" for line in log_tail)
        super().__init__(
            f"{name} {reason}" + (f"; last lines of its log:\n{shown}" if shown else "")
        )
