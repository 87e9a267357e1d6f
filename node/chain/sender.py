"""The transaction sender: nonces, EIP-1559 fees, fee bumps, receipts, idempotent resumption.

For each SendTransaction effect: if the store already holds signed bytes for it, resend
those (never sign a second transaction for one effect, except a same-nonce fee bump);
otherwise estimate (a revert here becomes TxReverted and nothing is sent), sign, record the
raw bytes durably, then broadcast. The outcome comes back as TxConfirmed or TxReverted once
the receipt is `confirmations` deep.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import trio
from eth_abi.abi import encode
from eth_account.signers.local import LocalAccount
from eth_typing import HexStr
from eth_utils.address import to_checksum_address

from node.chain.artifacts import abi_selector, abi_type, load_artifact
from node.chain.client import decode_revert
from node.chain.errors import ChainError, RpcRequestError
from node.chain.rpc import JsonRpc
from node.metrics import Metrics
from node.state.changes import StateChange, TxConfirmed, TxReverted
from node.state.effects import SendTransaction
from node.state.values import Address, BlockNumber, TxHash
from node.store.records import TxAttempt, TxRecord, TxStatus
from node.store.store import Store

log = logging.getLogger(__name__)

GWEI = 10**9
# Broadcast answers that mean "the node has it or had it": keep waiting for a receipt.
_HARMLESS_BROADCAST = ("already known", "known transaction", "nonce too low", "underpriced")


@dataclass(frozen=True)
class FeePolicy:
    max_fee_cap: int  # wei per gas: never offer more
    priority_fee: int  # wei per gas
    bump_after: float  # seconds without a receipt before a same-nonce replacement
    bump_percent: int  # at least 10: nodes refuse smaller replacements


@dataclass(frozen=True)
class _Function:
    selector: bytes
    inputs: tuple[dict[str, Any], ...]


# The artifact of each contract a SendTransaction may target (node.state.effects.Contract).
_ARTIFACT_OF = {
    "market": "JobMarket",
    "verifier": "AttestationVerifier",
    "registry": "ProviderRegistry",
}


@cache
def _functions(artifact: str) -> dict[str, _Function]:
    found = {}
    for item in load_artifact(artifact).abi:
        if item["type"] == "function":
            found[item["name"]] = _Function(abi_selector(item), tuple(item["inputs"]))
    return found


def _from_json(param: dict[str, Any], value: Any) -> Any:
    kind = param["type"]
    if kind.endswith("[]"):
        element = {**param, "type": kind[:-2]}
        return [_from_json(element, v) for v in value]
    if kind == "tuple":
        return tuple(_from_json(c, v) for c, v in zip(param["components"], value, strict=True))
    if kind.startswith("bytes"):
        return bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
    if kind == "address":
        return to_checksum_address(value)
    if kind.startswith(("uint", "int")):
        return int(value)
    return value


def encode_market_call(function: str, args_json: str) -> bytes:
    """Calldata for JobMarket.`function` from the effect's JSON arguments."""
    return encode_call("market", function, args_json)


def encode_call(contract: str, function: str, args_json: str) -> bytes:
    """Calldata for `function` of one of our contracts from the effect's JSON arguments."""
    spec = _functions(_ARTIFACT_OF[contract])[function]
    values = json.loads(args_json)
    converted = [_from_json(p, v) for p, v in zip(spec.inputs, values, strict=True)]
    return spec.selector + encode([abi_type(p) for p in spec.inputs], converted)


def revert_reason(error: RpcRequestError, contract: str = "market") -> str | None:
    """The decoded reason when `error` is an execution revert, else None."""
    if error.data is not None and len(error.data) >= 4:
        revert = decode_revert(_ARTIFACT_OF[contract], error.data)
        shown = ", ".join(
            "0x" + a.hex() if isinstance(a, bytes) else str(a) for a in revert.args_decoded
        )
        return f"{revert.error}({shown})"
    if "revert" in error.message.lower():
        return error.message
    return None


class TxSender:
    def __init__(
        self,
        rpc: JsonRpc,
        store: Store,
        account: LocalAccount,
        *,
        market: Address,
        chain_id: int,
        targets: Mapping[str, Address] | None = None,
        confirmations: int,
        fees: FeePolicy,
        poll_interval: float,
        metrics: Metrics,
    ) -> None:
        self._rpc = rpc
        self._store = store
        self._account = account
        self._address = Address(account.address)
        self._market = market
        # Where each contract of a SendTransaction lives; the market alone unless told more.
        self._targets: dict[str, Address] = {"market": market, **(targets or {})}
        self._chain_id = chain_id
        self._depth = confirmations
        self._fees = fees
        self._poll_interval = poll_interval
        self._metrics = metrics
        self._nonce_lock = trio.Lock()
        self._next_nonce: int | None = None
        self.attempt_recorded = trio.Event()  # set at each signed attempt; replaced after

    def learn_targets(self, targets: Mapping[str, Address]) -> None:
        """Addresses found after start (the market names its verifier and registry)."""
        self._targets.update(targets)

    async def execute(self, effect: SendTransaction) -> StateChange:
        record = self._store.transaction_for(effect.effect_id)
        if record is not None and record.status is TxStatus.CONFIRMED:
            assert record.mined_hash is not None and record.block_number is not None
            return TxConfirmed(effect.effect_id, record.mined_hash, record.block_number)
        if record is not None and record.status in (TxStatus.REVERTED, TxStatus.FAILED):
            return TxReverted(effect.effect_id, record.mined_hash, record.reason)
        if record is None:
            contract = effect.contract.value
            if contract not in self._targets:
                raise ChainError(f"{effect.effect_id}: no address known for the {contract}")
            data = encode_call(contract, effect.function, effect.args)
            call = self._call_object(data, effect.value, self._targets[contract])
            try:
                gas = int(await self._rpc.call("eth_estimateGas", [call]), 16)
            except RpcRequestError as exc:
                reason = revert_reason(exc, contract)
                if reason is None:
                    raise
                self._metrics.tx_reverted.inc()
                log.info("%s would revert, not sent: %s", effect.effect_id, reason)
                return TxReverted(effect.effect_id, None, reason)
            max_fee, tip = await self._market_fees()
            async with self._nonce_lock:
                nonce = await self._allocate_nonce()
                attempt = self._sign(
                    nonce, data, effect.value, gas + gas // 4, max_fee, tip,
                    to=self._targets[contract],
                )  # fmt: skip
                self._store.record_attempt(effect.effect_id, self._address, nonce, attempt)
                self._next_nonce = nonce + 1
            self._announce_attempt()
            record = self._store.transaction_for(effect.effect_id)
            assert record is not None
        else:
            log.info("resuming %s: resending its signed transaction", effect.effect_id)
        return await self._see_through(record, effect)

    async def resend_dropped(self, fork: BlockNumber) -> int:
        """After a reorganisation down to block `fork`: resend our transactions that were
        mined above it and are no longer on the chain. The same signed bytes go out (same
        nonce, same hash: nothing is signed anew, nothing can be mined twice), in nonce
        order, so the new chain carries what the lost blocks did and the events they
        emitted come back as the duplicates they are. Returns how many were resent."""
        resent = 0
        for record in self._store.transactions_mined_above(self._address, fork):
            receipt = await self._receipt(list(record.attempts))
            if receipt is not None:
                continue
            mined = [a for a in record.attempts if a.tx_hash == record.mined_hash]
            attempt = mined[0] if mined else record.attempts[-1]
            log.warning(
                "%s (nonce %d) was mined in block %s, which a reorganisation dropped: resending",
                record.effect_id,
                record.nonce,
                record.block_number,
            )
            await self._broadcast(attempt)
            resent += 1
        return resent

    def _call_object(self, data: bytes, value: int, to: Address) -> dict[str, str]:
        return {
            "from": self._address,
            "to": to,
            "data": "0x" + data.hex(),
            "value": hex(value),
        }

    async def _see_through(self, record: TxRecord, effect: SendTransaction) -> StateChange:
        attempts = list(record.attempts)
        await self._broadcast(attempts[-1])
        self._metrics.tx_sent.inc()
        last_send = trio.current_time()
        while True:
            receipt = await self._receipt(attempts)
            if receipt is not None:
                block = int(receipt["blockNumber"], 16)
                head = int(await self._rpc.call("eth_blockNumber", []), 16)
                if block <= head - self._depth:
                    return await self._conclude(record, effect, receipt, attempts)
            elif trio.current_time() - last_send >= self._fees.bump_after:
                if await self._nonce_used_elsewhere(record.nonce, attempts):
                    reason = f"nonce {record.nonce} was used by another transaction"
                    self._store.finish_transaction(
                        effect.effect_id,
                        TxStatus.FAILED,
                        mined_hash=None,
                        block_number=None,
                        reason=reason,
                    )
                    return TxReverted(effect.effect_id, None, reason)
                bumped = await self._bump(record, effect, attempts[-1])
                if bumped is not None:
                    attempts.append(bumped)
                await self._broadcast(attempts[-1])
                last_send = trio.current_time()
            await trio.sleep(self._poll_interval)

    async def _conclude(
        self,
        record: TxRecord,
        effect: SendTransaction,
        receipt: dict[str, Any],
        attempts: list[TxAttempt],
    ) -> StateChange:
        tx_hash = TxHash(receipt["transactionHash"].lower())
        block = BlockNumber(int(receipt["blockNumber"], 16))
        if int(receipt["status"], 16) == 1:
            self._store.finish_transaction(
                effect.effect_id, TxStatus.CONFIRMED, mined_hash=tx_hash, block_number=block
            )
            self._metrics.tx_confirmed.inc()
            return TxConfirmed(effect.effect_id, tx_hash, block)
        reason = await self._replay_revert(effect, block)
        self._store.finish_transaction(
            effect.effect_id,
            TxStatus.REVERTED,
            mined_hash=tx_hash,
            block_number=block,
            reason=reason,
        )
        self._metrics.tx_reverted.inc()
        log.warning("%s reverted in block %d: %s", effect.effect_id, block, reason)
        return TxReverted(effect.effect_id, tx_hash, reason)

    async def _replay_revert(self, effect: SendTransaction, block: int) -> str:
        """Re-run the call on the state its block left, which includes whatever ran before it
        in that block (the usual cause: another transaction got there first)."""
        contract = effect.contract.value
        data = encode_call(contract, effect.function, effect.args)
        call = self._call_object(data, effect.value, self._targets[contract])
        try:
            await self._rpc.call("eth_call", [call, hex(block)])
        except RpcRequestError as exc:
            return revert_reason(exc, contract) or exc.message
        return "reverted on-chain (status 0); the call succeeds in isolation, likely out of gas or ordering"

    async def _receipt(self, attempts: list[TxAttempt]) -> dict[str, Any] | None:
        for attempt in reversed(attempts):
            receipt = await self._rpc.call("eth_getTransactionReceipt", [attempt.tx_hash])
            if receipt is not None and receipt.get("blockNumber") is not None:
                return dict(receipt)
        return None

    async def _broadcast(self, attempt: TxAttempt) -> None:
        try:
            await self._rpc.call("eth_sendRawTransaction", ["0x" + attempt.raw.hex()])
        except RpcRequestError as exc:
            if not any(text in exc.message.lower() for text in _HARMLESS_BROADCAST):
                raise
            log.info("broadcast of %s: %s", attempt.tx_hash, exc.message)

    async def _nonce_used_elsewhere(self, nonce: int, attempts: list[TxAttempt]) -> bool:
        mined = int(await self._rpc.call("eth_getTransactionCount", [self._address, "latest"]), 16)
        return mined > nonce and await self._receipt(attempts) is None

    async def _bump(
        self, record: TxRecord, effect: SendTransaction, last: TxAttempt
    ) -> TxAttempt | None:
        market_max, market_tip = await self._market_fees()
        factor = (100 + self._fees.bump_percent) / 100
        tip = max(math.ceil(last.priority_fee * factor), market_tip)
        max_fee = max(math.ceil(last.max_fee * factor), market_max, tip)
        if max_fee > self._fees.max_fee_cap:
            log.warning(
                "%s is stuck but a bump would pass the fee cap (%d gwei); waiting",
                effect.effect_id,
                self._fees.max_fee_cap // GWEI,
            )
            return None
        contract = effect.contract.value
        data = encode_call(contract, effect.function, effect.args)
        attempt = self._sign(
            record.nonce, data, effect.value, last.gas, max_fee, tip, to=self._targets[contract]
        )
        self._store.record_attempt(effect.effect_id, self._address, record.nonce, attempt)
        self._metrics.tx_bumped.inc()
        log.info(
            "bumped %s (nonce %d) to max fee %d wei, tip %d wei",
            effect.effect_id,
            record.nonce,
            max_fee,
            tip,
        )
        self._announce_attempt()
        return attempt

    def _announce_attempt(self) -> None:
        self.attempt_recorded.set()
        self.attempt_recorded = trio.Event()

    async def _market_fees(self) -> tuple[int, int]:
        block = await self._rpc.call("eth_getBlockByNumber", ["latest", False])
        base = int(block.get("baseFeePerGas") or "0x0", 16)
        tip = self._fees.priority_fee
        return min(self._fees.max_fee_cap, 2 * base + tip), tip

    async def _allocate_nonce(self) -> int:
        if self._next_nonce is None:
            pending = int(
                await self._rpc.call("eth_getTransactionCount", [self._address, "pending"]), 16
            )
            stored = self._store.highest_nonce(self._address)
            self._next_nonce = max(pending, -1 if stored is None else stored + 1)
        return self._next_nonce

    def _sign(
        self,
        nonce: int,
        data: bytes,
        value: int,
        gas: int,
        max_fee: int,
        tip: int,
        *,
        to: Address,
    ) -> TxAttempt:
        signed = self._account.sign_transaction(
            {
                "type": 2,
                "chainId": self._chain_id,
                "nonce": nonce,
                "to": HexStr(to),
                "value": value,
                "data": data,
                "gas": gas,
                "maxFeePerGas": max_fee,
                "maxPriorityFeePerGas": min(tip, max_fee),
            }
        )
        return TxAttempt(
            tx_hash=TxHash("0x" + bytes(signed.hash).hex()),
            raw=bytes(signed.raw_transaction),
            max_fee=max_fee,
            priority_fee=min(tip, max_fee),
            gas=gas,
            created_at=time.time(),
        )
