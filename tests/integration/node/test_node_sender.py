"""The transaction sender on anvil: resend after a crash, reverts with reasons, fee bumps,
resend after a reorg."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import trio
from eth_account.signers.local import LocalAccount
from node_harness import Actors, head, keep_mining, mine, nonce_of, rpc

from node.chain.anvil import AnvilNode
from node.chain.errors import RpcUnavailable
from node.chain.market import Market
from node.chain.rpc import FailoverRpc, JsonRpc
from node.chain.sender import GWEI, FeePolicy, TxSender
from node.metrics import Metrics
from node.state.changes import TxConfirmed, TxReverted
from node.state.effects import SendTransaction
from node.state.values import Address, BlockNumber, EffectId
from node.store.records import TxStatus
from node.store.store import Store

DEPOSIT = 10**15


class BroadcastRefused:
    """A real RPC whose eth_sendRawTransaction never arrives: a crash right after signing."""

    def __init__(self, inner: JsonRpc) -> None:
        self._inner = inner

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        if method == "eth_sendRawTransaction":
            raise RpcUnavailable("connection reset (simulated)")
        return await self._inner.call(method, params)


def _sender(
    rpc_client: JsonRpc,
    store: Store,
    account: LocalAccount,
    market: Market,
    *,
    bump_after: float = 30.0,
    confirmations: int = 1,
) -> TxSender:
    return TxSender(
        rpc_client,
        store,
        account,
        market=Address(market.deployment.market),
        chain_id=31337,
        confirmations=confirmations,
        fees=FeePolicy(
            max_fee_cap=500 * GWEI,
            priority_fee=GWEI,
            bump_after=bump_after,
            bump_percent=20,
        ),
        poll_interval=0.05,
        metrics=Metrics(),
    )


def _deposit(tag: str, amount: int = DEPOSIT) -> SendTransaction:
    return SendTransaction(EffectId(f"deposit:{tag}"), "deposit", json.dumps([amount]), amount)


def test_signed_but_unsent_transaction_is_resent_with_the_same_bytes(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    store = Store.open(tmp_path / "node.sqlite")
    effect = _deposit("crash")
    nonce_before = nonce_of(anvil.rpc_url, actors.client.address)

    async def scenario() -> tuple[object, object]:
        real = FailoverRpc([anvil.rpc_url], retry_for=5)
        crashed = _sender(BroadcastRefused(real), store, actors.client, market)
        with pytest.raises(RpcUnavailable):
            await crashed.execute(effect)
        assert nonce_of(anvil.rpc_url, actors.client.address) == nonce_before  # nothing left
        restarted = _sender(real, store, actors.client, market)  # a new process, same store
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_mining, anvil.rpc_url)
            with trio.fail_after(20):
                first = await restarted.execute(effect)
                again = await restarted.execute(effect)
            nursery.cancel_scope.cancel()
        await real.aclose()
        return first, again

    first, again = trio.run(scenario)
    record = store.transaction_for(effect.effect_id)
    assert record is not None and len(record.attempts) == 1
    assert isinstance(first, TxConfirmed) and first.tx_hash == record.attempts[0].tx_hash
    assert again == first  # asking again answers from the store, sends nothing
    assert nonce_of(anvil.rpc_url, actors.client.address) == nonce_before + 1
    assert market.balance_of(actors.client.address) == DEPOSIT


def test_a_call_that_would_revert_becomes_txreverted_with_its_reason_and_sends_nothing(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    store = Store.open(tmp_path / "node.sqlite")
    unknown_job = "0x" + "ab" * 32
    effect = SendTransaction(
        EffectId(f"submitResult:{unknown_job}"),
        "submitResult",
        json.dumps([unknown_job, "0x" + "cd" * 32, "0x" + "00" * 65]),
        0,
    )
    nonce_before = nonce_of(anvil.rpc_url, actors.provider.address)

    async def scenario() -> object:
        real = FailoverRpc([anvil.rpc_url], retry_for=5)
        try:
            with trio.fail_after(20):
                return await _sender(real, store, actors.provider, market).execute(effect)
        finally:
            await real.aclose()

    outcome = trio.run(scenario)
    assert isinstance(outcome, TxReverted)
    assert outcome.tx_hash is None
    assert outcome.reason.startswith(f"WrongState({unknown_job}")
    assert store.transaction_for(effect.effect_id) is None
    assert nonce_of(anvil.rpc_url, actors.provider.address) == nonce_before


def test_a_transaction_reverted_on_chain_reports_the_decoded_reason(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    """Two withdrawals of the whole balance in one block: both estimate fine, the second reverts."""
    store = Store.open(tmp_path / "node.sqlite")
    market.client.transact(
        "JobMarket",
        market.market.functions.deposit(DEPOSIT),
        actors.client,
        value=DEPOSIT,
    )
    first = SendTransaction(
        EffectId("withdraw:a"), "withdraw", json.dumps([DEPOSIT, actors.client.address]), 0
    )
    second = SendTransaction(
        EffectId("withdraw:b"), "withdraw", json.dumps([DEPOSIT, actors.client.address]), 0
    )
    outcomes: dict[str, object] = {}

    async def scenario() -> None:
        real = FailoverRpc([anvil.rpc_url], retry_for=5)
        sender = _sender(real, store, actors.client, market)
        rpc(anvil.rpc_url, "evm_setAutomine", [False])
        try:

            async def run(effect: SendTransaction) -> None:
                outcomes[effect.effect_id] = await sender.execute(effect)

            async with trio.open_nursery() as miners:
                # The senders' nursery closes when both executions returned.
                with trio.fail_after(40):
                    async with trio.open_nursery() as senders:
                        senders.start_soon(run, first)
                        senders.start_soon(run, second)
                        while len(store.query("transactions")) < 2:
                            await sender.attempt_recorded.wait()
                        miners.start_soon(keep_mining, anvil.rpc_url)
                miners.cancel_scope.cancel()
        finally:
            rpc(anvil.rpc_url, "evm_setAutomine", [True])
            await real.aclose()

    trio.run(scenario)
    results = sorted(outcomes.values(), key=lambda o: type(o).__name__)
    assert isinstance(results[0], TxConfirmed)
    assert isinstance(results[1], TxReverted)
    assert results[1].tx_hash is not None  # it was mined, and reverted there
    assert results[1].reason == f"InsufficientBalance({DEPOSIT}, 0)"
    reverted = store.transaction_for(results[1].effect_id)
    assert reverted is not None and reverted.status is TxStatus.REVERTED


def test_a_stuck_transaction_is_bumped_with_the_same_nonce_and_higher_fees(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    store = Store.open(tmp_path / "node.sqlite")
    effect = _deposit("stuck")
    nonce_before = nonce_of(anvil.rpc_url, actors.client.address)
    result: list[object] = []

    async def scenario() -> None:
        real = FailoverRpc([anvil.rpc_url], retry_for=5)
        sender = _sender(real, store, actors.client, market, bump_after=0.3)
        rpc(anvil.rpc_url, "evm_setAutomine", [False])  # nothing gets mined: the tx is stuck
        try:

            async def run() -> None:
                result.append(await sender.execute(effect))

            # The nursery closes when the execution returned.
            with trio.fail_after(40):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run)
                    while True:
                        record = store.transaction_for(effect.effect_id)
                        # Attempts are recorded before they are broadcast: a third one means
                        # the second (bumped) one has reached anvil's pool.
                        if record is not None and len(record.attempts) >= 3:
                            break
                        await sender.attempt_recorded.wait()
                    mine(anvil.rpc_url, 3)
        finally:
            rpc(anvil.rpc_url, "evm_setAutomine", [True])
            await real.aclose()

    trio.run(scenario)
    record = store.transaction_for(effect.effect_id)
    assert record is not None
    first, bumped = record.attempts[0], record.attempts[1]
    assert bumped.max_fee >= first.max_fee * 1.2 and bumped.priority_fee >= first.priority_fee * 1.2
    assert isinstance(result[0], TxConfirmed)
    assert result[0].tx_hash in {a.tx_hash for a in record.attempts[1:]}  # a bumped one was mined
    assert nonce_of(anvil.rpc_url, actors.client.address) == nonce_before + 1
    assert market.balance_of(actors.client.address) >= DEPOSIT


def test_a_transaction_a_reorg_dropped_is_resent_as_signed_and_mined_once(
    tmp_path: Path, anvil: AnvilNode, market: Market, actors: Actors
) -> None:
    store = Store.open(tmp_path / "node.sqlite")
    effect = _deposit("reorged")
    nonce_before = nonce_of(anvil.rpc_url, actors.client.address)
    balance_before = market.balance_of(actors.client.address)
    fork = BlockNumber(head(anvil.rpc_url))
    snapshot = rpc(anvil.rpc_url, "evm_snapshot", [])

    async def scenario() -> tuple[object, int, int]:
        real = FailoverRpc([anvil.rpc_url], retry_for=5)
        sender = _sender(real, store, actors.client, market)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_mining, anvil.rpc_url)
            with trio.fail_after(20):
                confirmed = await sender.execute(effect)
            nursery.cancel_scope.cancel()
        # The blocks since the fork are gone, the deposit with them; nothing of it is pending.
        assert rpc(anvil.rpc_url, "evm_revert", [snapshot]) is True
        assert market.balance_of(actors.client.address) == balance_before
        resent = await sender.resend_dropped(fork)
        mine(anvil.rpc_url, 1)
        again = await sender.resend_dropped(fork)  # on the chain again: nothing to resend
        await real.aclose()
        return confirmed, resent, again

    confirmed, resent, again = trio.run(scenario)
    assert isinstance(confirmed, TxConfirmed)
    assert (resent, again) == (1, 0)
    record = store.transaction_for(effect.effect_id)
    assert record is not None and len(record.attempts) == 1  # nothing signed anew
    receipt = rpc(anvil.rpc_url, "eth_getTransactionReceipt", [confirmed.tx_hash])
    assert isinstance(receipt, dict) and int(receipt["status"], 16) == 1
    assert nonce_of(anvil.rpc_url, actors.client.address) == nonce_before + 1
    assert market.balance_of(actors.client.address) == balance_before + DEPOSIT
