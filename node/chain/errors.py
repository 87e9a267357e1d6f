"""Errors of the chain client, in the market's words."""

from __future__ import annotations


class ChainError(Exception):
    """Base of every chain-side failure."""


class ArtifactError(ChainError):
    """A committed contract artifact is missing, malformed or stale."""


class RpcUnavailable(ChainError):
    """The JSON-RPC endpoint did not answer in time or refused the connection."""


class WrongChain(ChainError):
    """The endpoint serves another chain id than the one configured."""

    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"RPC serves chain id {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class ContractRevert(ChainError):
    """A call or transaction reverted; `error` is the decoded custom error name when known."""

    def __init__(self, contract: str, error: str, args: tuple[object, ...], raw: bytes) -> None:
        shown = ", ".join(_show(a) for a in args)
        super().__init__(f"{contract} reverted: {error}({shown})")
        self.contract = contract
        self.error = error
        self.args_decoded = args
        self.raw = raw


class InsufficientFunds(ChainError):
    """The sending account cannot pay a transaction's value and gas."""

    def __init__(self, account: str, detail: str) -> None:
        super().__init__(f"{account} cannot pay for the transaction: {detail}")
        self.account = account


class TransactionFailed(ChainError):
    """A mined transaction has status 0 without revert data we could decode."""


def _show(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)


class RpcRequestError(ChainError):
    """The endpoint answered with a JSON-RPC error object (not a transport failure)."""

    def __init__(self, method: str, code: int, message: str, data: bytes | None) -> None:
        super().__init__(f"{method}: JSON-RPC error {code}: {message}")
        self.method = method
        self.code = code
        self.message = message
        self.data = data


class ManifestError(ChainError):
    """A deployment manifest is missing, malformed, or of another chain than expected."""
