"""JobMarket end to end on anvil: matchJob -> submitResult -> withdraw, batches, timeouts."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils.crypto import keccak

from node.chain.client import ChainClient
from node.chain.devnet import SeededProvider, match_quoted, quote, seed_provider
from node.chain.errors import ContractRevert, RpcUnavailable, WrongChain
from node.chain.market import JobState, Market
from node.chain.typed_data import JobRequest, Result, ResultBatch, batch_root, sign_message

TDX = 2
MEASUREMENT = keccak(b"mrtd of the capa runner image")
STAKE = 5 * 10**18
PRICE = 10**17


def _seed(market: Market, actors, provider=None) -> SeededProvider:  # type: ignore[no-untyped-def]
    return seed_provider(
        market,
        actors.governance,
        actors.committee,
        provider or actors.provider,
        tee_kind=TDX,
        measurement=MEASUREMENT,
        stake=STAKE,
    )


def _request(market: Market, nonce: int = 1, *, max_price: int = PRICE) -> JobRequest:
    return JobRequest(
        spec_hash=keccak(b"spec"),
        input_hash=keccak(b"sealed input %d" % nonce),
        tee_kinds=1 << TDX,
        measurement=bytes(32),
        min_tcb_status=1,
        max_price=max_price,
        deadline=market.latest_timestamp() + 3600,
        nonce=nonce,
    )


def _match(market: Market, actors, seeded: SeededProvider, nonce: int) -> JobRequest:  # type: ignore[no-untyped-def]
    request = _request(market, nonce)
    match_quoted(market, actors.client, seeded, request, price=PRICE)
    return request


def test_match_submit_withdraw_pays_provider_minus_fee(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _match(market, actors, seeded, nonce=1)
    job_id = request.job_id(actors.client.address)

    job = market.job(job_id)
    assert job.state is JobState.ACCEPTED
    assert job.provider == actors.provider.address
    assert job.price == PRICE
    assert job.input_hash == request.input_hash

    output_hash = keccak(b"sealed output")
    result = Result(job_id, actors.provider.address, request.input_hash, output_hash)
    signature = sign_message(market.market_domain, result, seeded.enclave.key)
    # Anyone may relay the enclave's signature; the provider is paid all the same.
    receipt = market.submit_result(actors.relayer, job_id, output_hash, signature)

    settled = market.events(receipt, "JobMarket", "JobSettled")
    assert len(settled) == 1
    fee = PRICE * 250 // 10_000
    assert settled[0]["args"]["payout"] == PRICE - fee
    assert settled[0]["args"]["enclaveKey"] == seeded.enclave.address
    assert market.job(job_id).state is JobState.SETTLED
    assert market.balance_of(actors.provider.address) == PRICE - fee
    assert market.fees_accrued() == fee

    w3 = market.client.w3
    before = w3.eth.get_balance(actors.provider.address)
    receipt = market.withdraw(actors.provider, PRICE - fee)
    gas_cost = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert w3.eth.get_balance(actors.provider.address) == before + PRICE - fee - gas_cost
    assert market.balance_of(actors.provider.address) == 0


def test_second_settlement_of_the_same_job_is_refused(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _match(market, actors, seeded, nonce=2)
    job_id = request.job_id(actors.client.address)
    output_hash = keccak(b"out")
    result = Result(job_id, actors.provider.address, request.input_hash, output_hash)
    signature = sign_message(market.market_domain, result, seeded.enclave.key)
    market.submit_result(actors.provider, job_id, output_hash, signature)
    with pytest.raises(ContractRevert) as err:
        market.submit_result(actors.provider, job_id, output_hash, signature)
    assert err.value.error == "WrongState"
    assert err.value.args_decoded == (job_id, JobState.SETTLED)
    assert market.balance_of(actors.provider.address) == PRICE - PRICE * 250 // 10_000


def test_result_signed_by_unregistered_key_is_refused(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _match(market, actors, seeded, nonce=3)
    job_id = request.job_id(actors.client.address)
    output_hash = keccak(b"out")
    impostor = Account.create()
    result = Result(job_id, actors.provider.address, request.input_hash, output_hash)
    with pytest.raises(ContractRevert) as err:
        market.submit_result(
            actors.provider,
            job_id,
            output_hash,
            sign_message(market.market_domain, result, impostor.key),
        )
    assert err.value.error == "UnknownKey"
    assert err.value.args_decoded == (impostor.address,)
    assert market.job(job_id).state is JobState.ACCEPTED


def test_revoking_the_measurement_stops_payment_for_a_running_job(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _match(market, actors, seeded, nonce=4)
    job_id = request.job_id(actors.client.address)
    output_hash = keccak(b"out")
    result = Result(job_id, actors.provider.address, request.input_hash, output_hash)
    signature = sign_message(market.market_domain, result, seeded.enclave.key)

    market.revoke_measurement(actors.governance, TDX, MEASUREMENT)

    with pytest.raises(ContractRevert) as err:
        market.submit_result(actors.provider, job_id, output_hash, signature)
    assert err.value.error == "MeasurementRevoked"
    assert market.job(job_id).state is JobState.ACCEPTED
    assert market.balance_of(actors.provider.address) == 0


def test_replayed_offer_is_refused_with_its_nonce(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    first = _request(market, 10)
    standing, signature = quote(market, seeded, price=PRICE, request_hash=bytes(32), nonce=77)
    market.match_job(actors.client, first, standing, signature)
    with pytest.raises(ContractRevert) as err:
        market.match_job(actors.client, _request(market, 11), standing, signature)
    assert err.value.error == "NonceUsed"
    assert err.value.args_decoded == (actors.provider.address, 77)


def test_batch_of_results_settles_with_one_enclave_signature(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    requests = [_match(market, actors, seeded, nonce=n) for n in range(20, 25)]
    job_ids = [r.job_id(actors.client.address) for r in requests]
    outputs = [keccak(b"out %d" % n) for n in range(5)]
    leaves = [
        Result(j, actors.provider.address, r.input_hash, o).hash_struct()
        for j, r, o in zip(job_ids, requests, outputs, strict=True)
    ]
    batch = ResultBatch(actors.provider.address, batch_root(leaves), len(leaves))
    receipt = market.submit_results(
        actors.provider,
        job_ids,
        outputs,
        sign_message(market.market_domain, batch, seeded.enclave.key),
    )
    assert len(market.events(receipt, "JobMarket", "JobSettled")) == 5
    assert all(market.job(j).state is JobState.SETTLED for j in job_ids)
    assert market.balance_of(actors.provider.address) == 5 * (PRICE - PRICE * 250 // 10_000)


def test_timeout_refunds_client_and_slashes_provider(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _match(market, actors, seeded, nonce=30)
    job_id = request.job_id(actors.client.address)
    with pytest.raises(ContractRevert) as err:
        market.claim_timeout(actors.relayer, job_id)
    assert err.value.error == "DeadlineNotPassed"

    deadline = market.job(job_id).deadline
    market.client.w3.provider.make_request("evm_mine", [deadline + 1])  # type: ignore[arg-type]
    receipt = market.claim_timeout(actors.relayer, job_id)
    refunded = market.events(receipt, "JobMarket", "JobRefunded")[0]["args"]
    assert refunded["refund"] == PRICE
    assert refunded["slashed"] == PRICE  # SLASH_BPS = 10_000: one price's worth of stake
    assert market.job(job_id).state is JobState.REFUNDED
    assert market.balance_of(actors.client.address) == PRICE
    stake = market.registry.functions.providerOf(actors.provider.address).call()[0]
    assert stake == STAKE - PRICE


def test_client_rejects_endpoint_of_another_chain(anvil) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(WrongChain) as err:
        ChainClient(anvil.rpc_url, expected_chain_id=1)
    assert "chain id 31337, expected 1" in str(err.value)


def test_unreachable_rpc_is_reported_not_hung() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port we just released: the client must say so quickly.
    with pytest.raises(RpcUnavailable):
        ChainClient(f"http://127.0.0.1:{port}", timeout=2.0)
