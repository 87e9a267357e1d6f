"""The p2p layer's errors; libp2p and trio exceptions are translated into these at the edge."""

from __future__ import annotations


class P2PError(Exception):
    """Base of every error the p2p layer raises."""


class ConfigError(P2PError):
    """A P2PConfig value or an address that cannot work."""


class ListenFailed(P2PError):
    """None of the listen addresses could be bound (py-libp2p only logs it and runs on)."""


class DialError(P2PError):
    """A peer could not be reached or the connection upgrade failed."""


class StreamClosedError(P2PError):
    """The remote closed or reset the stream before the exchange finished."""


class PeerTimeoutError(P2PError):
    """The remote did not answer within the deadline (a slow or stalling peer)."""


class ProtocolViolation(P2PError):
    """The remote sent bytes that break the protocol: bad framing, schema or order."""


class FrameTooLarge(ProtocolViolation):
    """A length prefix announced more than the protocol's cap."""


class RemoteRefused(P2PError):
    """The remote answered with a well-formed refusal; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UploadRefused(P2PError):
    """The input store will not take this upload now; `reason` goes back to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IntegrityError(P2PError):
    """Transferred bytes do not match their announced hash or size."""


class OfferRejected(P2PError):
    """An offer listing failed validation; `reason` is a short machine-readable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
