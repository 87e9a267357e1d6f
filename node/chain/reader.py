"""Read-only contract calls over the daemon's JSON-RPC client, decoded from the committed ABI.

The daemon speaks JSON-RPC itself (no web3.py at run time): this is its `eth_call`, typed by
the artifacts, with answers that are not what the ABI says refused as a ChainError.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError, EncodingError
from eth_utils.address import to_checksum_address

from node.chain.artifacts import abi_selector, abi_type, load_artifact
from node.chain.errors import ChainError
from node.chain.rpc import JsonRpc

CONTRACT_ARTIFACTS = {
    "market": "JobMarket",
    "verifier": "AttestationVerifier",
    "registry": "ProviderRegistry",
}


@dataclass(frozen=True)
class _Function:
    selector: bytes
    inputs: tuple[dict[str, Any], ...]
    outputs: tuple[dict[str, Any], ...]


@cache
def functions_of(artifact: str) -> dict[str, _Function]:
    found = {}
    for item in load_artifact(artifact).abi:
        if item["type"] == "function":
            found[item["name"]] = _Function(
                abi_selector(item), tuple(item["inputs"]), tuple(item.get("outputs", ()))
            )
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) == 42 and value.startswith("0x"):
        return to_checksum_address(value)
    return value


class ContractReader:
    def __init__(self, rpc: JsonRpc, artifact: str, address: str) -> None:
        self._rpc = rpc
        self._artifact = artifact
        self.address = to_checksum_address(address)

    async def call(self, function: str, *args: Any, block: str = "latest") -> list[Any]:
        """The function's outputs, bytes as 0x hex and addresses checksummed."""
        spec = functions_of(self._artifact)[function]
        try:
            data = spec.selector + encode([abi_type(p) for p in spec.inputs], list(args))
        except (EncodingError, TypeError, ValueError, OverflowError) as exc:
            raise ChainError(f"{self._artifact}.{function}: bad arguments: {exc}") from exc
        raw = await self._rpc.call(
            "eth_call", [{"to": self.address, "data": "0x" + data.hex()}, block]
        )
        try:
            values = decode([abi_type(p) for p in spec.outputs], bytes.fromhex(str(raw)[2:]))
        except (DecodingError, ValueError, TypeError, OverflowError) as exc:
            raise ChainError(
                f"{self._artifact}.{function} at {self.address}: unreadable answer: {exc}"
            ) from exc
        return [_plain(v) for v in values]


@dataclass(frozen=True)
class Contracts:
    """The market and the two contracts it names, read from the market itself at start."""

    market: str
    verifier: str
    registry: str

    @classmethod
    async def discover(cls, rpc: JsonRpc, market: str) -> Contracts:
        reader = ContractReader(rpc, "JobMarket", market)
        (verifier,) = await reader.call("VERIFIER")
        (registry,) = await reader.call("REGISTRY")
        return cls(to_checksum_address(market), verifier, registry)

    def address_of(self, contract: str) -> str:
        return str(getattr(self, contract))

    def reader(self, rpc: JsonRpc, contract: str) -> ContractReader:
        return ContractReader(rpc, CONTRACT_ARTIFACTS[contract], self.address_of(contract))
