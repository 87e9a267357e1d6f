"""A small synchronous chain client over web3.py: deploy, call, transact, decode reverts.

The daemon calls it through `trio.to_thread` with a limiter; tests and tools call it
directly. Every revert comes back as `ContractRevert` naming the contract's custom error.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from eth_abi.abi import decode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted
from web3.types import TxParams, TxReceipt, Wei

from node.chain.artifacts import DEPLOYABLE_CONTRACTS, abi_selector, abi_type, load_artifact
from node.chain.errors import ContractRevert, RpcUnavailable, TransactionFailed, WrongChain

_ERROR_STRING = keccak(text="Error(string)")[:4]
_PANIC = keccak(text="Panic(uint256)")[:4]


@dataclass(frozen=True)
class _ErrorAbi:
    contract: str
    name: str
    types: tuple[str, ...]


@cache
def _known_errors() -> dict[bytes, _ErrorAbi]:
    errors: dict[bytes, _ErrorAbi] = {}
    for name in DEPLOYABLE_CONTRACTS:
        for item in load_artifact(name).abi:
            if item["type"] != "error":
                continue
            types = tuple(abi_type(p) for p in item["inputs"])
            errors.setdefault(abi_selector(item), _ErrorAbi(name, item["name"], types))
    return errors


def decode_revert(contract: str, data: bytes) -> ContractRevert:
    """Turn raw revert data into a ContractRevert naming the error and its arguments."""
    selector, body = data[:4], data[4:]
    if selector == _ERROR_STRING:
        return ContractRevert(contract, "Error", tuple(decode(["string"], body)), data)
    if selector == _PANIC:
        return ContractRevert(contract, "Panic", tuple(decode(["uint256"], body)), data)
    known = _known_errors().get(selector)
    if known is None:
        return ContractRevert(contract, f"unknown error 0x{selector.hex()}", (), data)
    try:
        values = decode(list(known.types), body)
    except Exception:  # malformed error data still deserves a name
        return ContractRevert(known.contract, known.name, (), data)
    args = tuple(
        to_checksum_address(v) if t == "address" else v
        for t, v in zip(known.types, values, strict=True)
    )
    return ContractRevert(known.contract, known.name, args, data)


def _revert_data(exc: Exception) -> bytes | None:
    data = getattr(exc, "data", None)
    if isinstance(data, str) and data.startswith("0x"):
        return bytes.fromhex(data[2:])
    if isinstance(data, bytes):
        return data
    if isinstance(data, dict):
        inner = data.get("data")
        if isinstance(inner, str) and inner.startswith("0x"):
            return bytes.fromhex(inner[2:])
    return None


class ChainClient:
    """web3.py bound to one endpoint and one chain id."""

    def __init__(
        self,
        rpc_url: str,
        *,
        expected_chain_id: int | None = None,
        timeout: float = 10.0,
        receipt_timeout: float = 60.0,
    ) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self.receipt_timeout = receipt_timeout
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except Exception as exc:
            raise RpcUnavailable(f"no answer from {rpc_url}: {exc}") from exc
        if expected_chain_id is not None and self.chain_id != expected_chain_id:
            raise WrongChain(expected_chain_id, self.chain_id)

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=to_checksum_address(address), abi=load_artifact(name).abi
        )

    def deploy(self, name: str, sender: LocalAccount, *args: object) -> tuple[str, TxReceipt]:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        tx = factory.constructor(*args).build_transaction(self._tx_params(sender, 0))
        receipt = self._send(name, tx, sender)
        address = receipt["contractAddress"]
        if address is None:
            raise TransactionFailed(f"deploying {name} created no contract")
        return to_checksum_address(address), receipt

    def call(self, name: str, fn: ContractFunction) -> Any:
        try:
            return fn.call()
        except (ContractCustomError, ContractLogicError) as exc:
            raise self._translate(name, exc) from exc

    def transact(
        self, name: str, fn: ContractFunction, sender: LocalAccount, *, value: int = 0
    ) -> TxReceipt:
        try:
            tx = fn.build_transaction(self._tx_params(sender, value))
        except (ContractCustomError, ContractLogicError) as exc:
            raise self._translate(name, exc) from exc
        return self._send(name, tx, sender)

    def _tx_params(self, sender: LocalAccount, value: int) -> TxParams:
        return {
            "from": sender.address,
            "value": Wei(value),
            "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": self.chain_id,
        }

    def _send(self, name: str, tx: TxParams, sender: LocalAccount) -> TxReceipt:
        signed = sender.sign_transaction(cast(dict[str, Any], tx))
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.receipt_timeout, poll_latency=0.05
            )
        except TimeExhausted as exc:
            raise RpcUnavailable(f"{name}: no receipt for 0x{tx_hash.hex()} in time") from exc
        if receipt["status"] != 1:
            raise TransactionFailed(f"{name}: transaction 0x{tx_hash.hex()} reverted")
        return receipt

    def _translate(self, name: str, exc: Exception) -> Exception:
        data = _revert_data(exc)
        if data is None or len(data) < 4:
            return TransactionFailed(f"{name}: {exc}")
        return decode_revert(name, data)
