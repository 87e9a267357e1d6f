"""JobMarket end to end on anvil: matchJob -> submitResult -> withdraw, batches, timeouts,
give-backs, and the stake each open job reserves."""

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


def _result(request: JobRequest, job_id: bytes, provider: str, output_hash: bytes) -> Result:
    return Result(job_id, provider, request.spec_hash, request.input_hash, output_hash)


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
    assert job.task_hash == request.task_hash
    # SLASH_BPS = 10_000: the job reserves one price of the provider's stake until it ends
    assert market.locked_stake_of(actors.provider.address) == PRICE

    output_hash = keccak(b"sealed output")
    result = _result(request, job_id, actors.provider.address, output_hash)
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
    assert market.locked_stake_of(actors.provider.address) == 0

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
    result = _result(request, job_id, actors.provider.address, output_hash)
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
    result = _result(request, job_id, actors.provider.address, output_hash)
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
    result = _result(request, job_id, actors.provider.address, output_hash)
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
        _result(r, j, actors.provider.address, o).hash_struct()
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


def _past_deadline(market: Market, job_id: bytes) -> None:
    deadline = market.job(job_id).deadline
    market.client.w3.provider.make_request("evm_mine", [deadline + 1])  # type: ignore[arg-type]


def test_proven_timeout_refunds_client_and_slashes_provider(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _match(market, actors, seeded, nonce=30)
    job_id = request.job_id(actors.client.address)
    # the input arrived: the provider acknowledges it with its account key
    receipt_sig = market.sign_input_receipt(
        actors.provider, job_id, request.spec_hash, request.input_hash
    )
    with pytest.raises(ContractRevert) as err:
        market.claim_timeout(actors.relayer, job_id, receipt_sig)
    assert err.value.error == "DeadlineNotPassed"

    _past_deadline(market, job_id)
    receipt = market.claim_timeout(actors.relayer, job_id, receipt_sig)
    refunded = market.events(receipt, "JobMarket", "JobRefunded")[0]["args"]
    assert refunded["refund"] == PRICE
    assert refunded["slashed"] == PRICE  # SLASH_BPS = 10_000: one price's worth of stake
    assert market.job(job_id).state is JobState.REFUNDED
    assert market.balance_of(actors.client.address) == PRICE
    assert market.stake_of(actors.provider.address) == STAKE - PRICE
    assert market.locked_stake_of(actors.provider.address) == 0
    # half of the slash (the devnet's SLASH_CLIENT_BPS) is the client's, in the registry
    assert market.compensation_of(actors.client.address) == PRICE // 2
    w3 = market.client.w3
    before = w3.eth.get_balance(actors.client.address)
    paid = market.withdraw_compensation(actors.client)
    gas_cost = paid["gasUsed"] * paid["effectiveGasPrice"]
    assert w3.eth.get_balance(actors.client.address) == before + PRICE // 2 - gas_cost
    assert market.compensation_of(actors.client.address) == 0


def test_timeout_without_input_receipt_only_refunds(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _match(market, actors, seeded, nonce=31)
    job_id = request.job_id(actors.client.address)
    _past_deadline(market, job_id)
    # only the client may close it without a receipt while the dispute window is open
    with pytest.raises(ContractRevert) as err:
        market.claim_timeout(actors.relayer, job_id)
    assert err.value.error == "DisputeWindowOpen"
    receipt = market.claim_timeout(actors.client, job_id)
    refunded = market.events(receipt, "JobMarket", "JobRefunded")[0]["args"]
    assert (refunded["refund"], refunded["slashed"]) == (PRICE, 0)
    assert market.stake_of(actors.provider.address) == STAKE


def test_provider_gives_a_job_back_before_its_deadline(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _match(market, actors, seeded, nonce=32)
    job_id = request.job_id(actors.client.address)
    receipt = market.release_job(actors.provider, job_id)
    released = market.events(receipt, "JobMarket", "JobReleased")[0]["args"]
    assert released["refund"] == PRICE and released["provider"] == actors.provider.address
    assert market.job(job_id).state is JobState.RELEASED
    assert market.balance_of(actors.client.address) == PRICE
    assert market.locked_stake_of(actors.provider.address) == 0
    assert market.stake_of(actors.provider.address) == STAKE


def test_stake_bounds_the_jobs_a_provider_holds(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    held = [_match(market, actors, seeded, nonce=40 + n) for n in range(STAKE // PRICE)]
    assert market.locked_stake_of(actors.provider.address) == STAKE
    with pytest.raises(ContractRevert) as err:
        _match(market, actors, seeded, nonce=99)
    assert err.value.error == "StakeTooLow"
    assert err.value.args_decoded == (STAKE + PRICE, STAKE)
    # reserved stake cannot unbond either
    fn = market.registry.functions.requestUnbond(1)
    with pytest.raises(ContractRevert) as err:
        market.client.transact("ProviderRegistry", fn, actors.provider)
    assert err.value.error == "InsufficientStake"
    assert len(held) == STAKE // PRICE


def test_a_short_deadline_is_refused_at_match(market: Market, actors) -> None:  # type: ignore[no-untyped-def]
    seeded = _seed(market, actors)
    request = _request(market, 50)
    offer, signature = quote(
        market,
        seeded,
        price=PRICE,
        request_hash=request.request_hash(actors.client.address),
        nonce=50,
        min_duration=2 * 3600,  # the provider needs two hours; the request leaves one
    )
    with pytest.raises(ContractRevert) as err:
        market.match_job(actors.client, request, offer, signature)
    assert err.value.error == "DeadlineTooSoon"


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
