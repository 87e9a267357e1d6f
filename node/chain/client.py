"""A small synchronous chain client over web3.py: deploy, call, transact, decode reverts.

The daemon calls it through `trio.to_thread` with a limiter; tests and tools call it
directly. Every revert comes back as `ContractRevert` naming the contract's custom error.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import requests
from eth_abi.abi import decode
from eth_account.signers.local import LocalAccount
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractCustomError, ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import TxParams, TxReceipt, Wei

from node.chain.artifacts import DEPLOYABLE_CONTRACTS, abi_selector, abi_type, load_artifact
from node.chain.errors import (
    ContractRevert,
    InsufficientFunds,
    RpcUnavailable,
    TransactionFailed,
    WrongChain,
)

_ERROR_STRING = keccak(text="Error(string)")[:4]
_PANIC = keccak(text="Panic(uint256)")[:4]


@dataclass(frozen=True)
class _ErrorAbi:
    contract: str
    name: str
    types: tuple[str, ...]


@cache
def _known_errors() -> dict[bytes, list[_ErrorAbi]]:
    errors: dict[bytes, list[_ErrorAbi]] = {}
    for name in DEPLOYABLE_CONTRACTS:
        for item in load_artifact(name).abi:
            if item["type"] != "error":
                continue
            types = tuple(abi_type(p) for p in item["inputs"])
            errors.setdefault(abi_selector(item), []).append(_ErrorAbi(name, item["name"], types))
    return errors


def decode_revert(contract: str, data: bytes) -> ContractRevert:
    """Turn raw revert data into a ContractRevert naming the error and its arguments.

    Several contracts declare errors of one signature (ZeroAmount, ZeroAddress, ...): the
    called contract's own declaration is preferred, so the revert names the contract that
    raised it; an error only another contract declares came from a call it made.
    """
    selector, body = data[:4], data[4:]
    if selector == _ERROR_STRING:
        return ContractRevert(contract, "Error", tuple(decode(["string"], body)), data)
    if selector == _PANIC:
        return ContractRevert(contract, "Panic", tuple(decode(["uint256"], body)), data)
    candidates = _known_errors().get(selector)
    if not candidates:
        return ContractRevert(contract, f"unknown error 0x{selector.hex()}", (), data)
    known = next((c for c in candidates if c.contract == contract), candidates[0])
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
    """web3.py bound to one endpoint and one chain id.

    Every failure leaves as a ChainError: a revert as ContractRevert (decoded, also when
    only the gas estimate reverted, in which case nothing was sent), an endpoint that stops
    answering as RpcUnavailable, an account short of value or gas as InsufficientFunds.
    """

    def __init__(
        self,
        rpc_url: str,
        *,
        expected_chain_id: int | None = None,
        timeout: float = 10.0,
        receipt_timeout: float = 60.0,
    ) -> None:
        self.rpc_url = rpc_url
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
        self.receipt_timeout = receipt_timeout
        try:
            self.chain_id = int(self.w3.eth.chain_id)
        except Exception as exc:
            raise RpcUnavailable(f"no answer from {rpc_url}: {_transport_reason(exc)}") from exc
        if expected_chain_id is not None and self.chain_id != expected_chain_id:
            raise WrongChain(expected_chain_id, self.chain_id)

    def contract(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=to_checksum_address(address), abi=load_artifact(name).abi
        )

    def deploy(self, name: str, sender: LocalAccount, *args: object) -> tuple[str, TxReceipt]:
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        with self.errors(name, sender):
            tx = factory.constructor(*args).build_transaction(self._tx_params(sender, 0))
        receipt = self._send(name, tx, sender)
        address = receipt["contractAddress"]
        if address is None:
            raise TransactionFailed(f"deploying {name} created no contract")
        return to_checksum_address(address), receipt

    def estimate_deploy(self, name: str, sender: LocalAccount, *args: object) -> int:
        """Gas the deployment of `name` would use now (nothing is sent)."""
        artifact = load_artifact(name)
        factory = self.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
        with self.errors(name, sender):
            return int(factory.constructor(*args).estimate_gas({"from": sender.address}))

    def call(self, name: str, fn: ContractFunction) -> Any:
        with self.errors(name):
            return fn.call()

    def transact(
        self, name: str, fn: ContractFunction, sender: LocalAccount, *, value: int = 0
    ) -> TxReceipt:
        """Estimate, sign, send and wait for the receipt; a call that would revert is not sent."""
        with self.errors(name, sender):
            tx = fn.build_transaction(self._tx_params(sender, value))
        return self._send(name, tx, sender)

    def transfer(self, sender: LocalAccount, to: str, value: int) -> TxReceipt:
        """Send `value` wei of the native currency and wait for the receipt."""
        tx = self._tx_params(sender, value)
        tx["to"] = to_checksum_address(to)
        with self.errors("transfer", sender):
            tx["gas"] = self.w3.eth.estimate_gas(tx)
            tx["maxPriorityFeePerGas"] = self.w3.eth.max_priority_fee
        tx["maxFeePerGas"] = Wei(self.max_fee_per_gas())
        return self._send("transfer", tx, sender)

    def balance(self, address: str) -> int:
        """The account's balance in the chain's native currency, in wei."""
        with self.errors("eth_getBalance"):
            return int(self.w3.eth.get_balance(to_checksum_address(address)))

    def code_size(self, address: str) -> int:
        """Bytes of code at `address` (0: no contract there)."""
        with self.errors("eth_getCode"):
            return len(self.w3.eth.get_code(to_checksum_address(address)))

    def block_number(self) -> int:
        with self.errors("eth_blockNumber"):
            return int(self.w3.eth.block_number)

    def max_fee_per_gas(self) -> int:
        """What a transaction sent now offers per gas at most (web3's EIP-1559 default:
        twice the latest base fee plus the suggested tip)."""
        with self.errors("eth_getBlockByNumber"):
            base = int(self.w3.eth.get_block("latest").get("baseFeePerGas", 0))
            tip = int(self.w3.eth.max_priority_fee)
        return 2 * base + tip

    def wait_for_depth(self, block_number: int, confirmations: int, timeout: float) -> None:
        """Wait until `block_number` has `confirmations` blocks on it (itself counted)."""
        deadline = time.monotonic() + timeout
        while self.block_number() < block_number + confirmations - 1:
            if time.monotonic() >= deadline:
                raise RpcUnavailable(
                    f"block {block_number} did not reach {confirmations} confirmations "
                    f"in {timeout:.0f}s (is the chain producing blocks?)"
                )
            time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))

    def _tx_params(self, sender: LocalAccount, value: int) -> TxParams:
        return {
            "from": sender.address,
            "value": Wei(value),
            "nonce": self.w3.eth.get_transaction_count(sender.address, "pending"),
            "chainId": self.chain_id,
        }

    def _send(self, name: str, tx: TxParams, sender: LocalAccount) -> TxReceipt:
        signed = sender.sign_transaction(cast(dict[str, Any], tx))
        with self.errors(name, sender):
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        try:
            with self.errors(name, sender):
                receipt = self.w3.eth.wait_for_transaction_receipt(
                    tx_hash, timeout=self.receipt_timeout, poll_latency=0.05
                )
        except TimeExhausted as exc:
            raise RpcUnavailable(f"{name}: no receipt for 0x{tx_hash.hex()} in time") from exc
        if receipt["status"] != 1:
            raise TransactionFailed(f"{name}: transaction 0x{tx_hash.hex()} reverted")
        return receipt

    @contextmanager
    def errors(self, name: str, sender: LocalAccount | None = None) -> Iterator[None]:
        """Foreign exceptions of web3 and its transport, in the chain's words."""
        try:
            yield
        except (ContractCustomError, ContractLogicError) as exc:
            raise self._translate(name, exc) from exc
        except Web3RPCError as exc:
            message = _rpc_message(exc)
            if sender is not None and "insufficient funds" in message.lower():
                raise InsufficientFunds(sender.address, message) from exc
            raise TransactionFailed(f"{name}: {message}") from exc
        except (requests.RequestException, OSError) as exc:
            raise RpcUnavailable(f"{self.rpc_url} stopped answering: {exc}") from exc

    def _translate(self, name: str, exc: Exception) -> Exception:
        data = _revert_data(exc)
        if data is None or len(data) < 4:
            return TransactionFailed(f"{name}: {exc}")
        return decode_revert(name, data)


def _rpc_message(exc: Web3RPCError) -> str:
    response = getattr(exc, "rpc_response", None)
    if isinstance(response, dict):
        error = response.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(exc)


def _transport_reason(exc: Exception) -> str:
    """The root cause of a connection failure, without requests' nested reprs."""
    inner: BaseException = exc
    while (inner.__cause__ or inner.__context__) is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    if isinstance(inner, socket.gaierror):
        return "host name not found"
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, requests.Timeout) or isinstance(inner, TimeoutError):
        return "timed out"
    return str(inner) or type(inner).__name__
