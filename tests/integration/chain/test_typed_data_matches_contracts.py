"""The EIP-712 digests, job ids and batch roots computed in Python equal the contracts'."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.chain.market import Market
from node.chain.typed_data import (
    InputReceipt,
    JobRequest,
    KeyAttestation,
    Offer,
    Result,
    ResultBatch,
    batch_root,
    digest_of,
    key_attestation_abi,
    task_hash,
)

words = st.binary(min_size=32, max_size=32)
addresses = st.binary(min_size=20, max_size=20).map(lambda b: Account.from_key(keccak(b)).address)
uint64s = st.integers(min_value=0, max_value=2**64 - 1)
uint256s = st.integers(min_value=0, max_value=2**256 - 1)
uint8s = st.integers(min_value=0, max_value=255)

offers = st.builds(
    Offer, addresses, addresses, uint8s, words, uint256s, uint64s, uint64s, uint64s, words, uint256s
)
requests = st.builds(JobRequest, words, words, uint8s, words, uint8s, uint256s, uint64s, uint256s)
attestations = st.builds(
    KeyAttestation, addresses, addresses, uint8s, words, uint8s, words, uint64s
)

few = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def test_domain_separators_match(market: Market) -> None:
    assert market.market.functions.domainSeparator().call() == market.market_domain.separator()
    assert market.verifier.functions.domainSeparator().call() == market.verifier_domain.separator()


@few
@given(offer=offers)
def test_offer_digest_matches(market: Market, offer: Offer) -> None:
    on_chain = market.market.functions.offerDigest(offer.as_abi_tuple()).call()
    assert on_chain == offer.digest(market.market_domain)


@few
@given(request=requests, client=addresses)
def test_job_request_hash_request_binding_and_job_id_match(
    market: Market, request: JobRequest, client: str
) -> None:
    fns = market.market.functions
    assert fns.hashJobRequest(request.as_abi_tuple()).call() == request.hash_struct()
    assert fns.requestHashFor(client, request.as_abi_tuple()).call() == request.request_hash(client)
    assert fns.jobIdFor(client, request.nonce).call() == request.job_id(client)


@few
@given(spec_hash=words, input_hash=words)
def test_task_hash_matches(market: Market, spec_hash: bytes, input_hash: bytes) -> None:
    on_chain = market.market.functions.hashTask(spec_hash, input_hash).call()
    assert on_chain == task_hash(spec_hash, input_hash)


@few
@given(job_id=words, provider=addresses, spec_hash=words, input_hash=words, output_hash=words)
def test_result_digest_matches(
    market: Market,
    job_id: bytes,
    provider: str,
    spec_hash: bytes,
    input_hash: bytes,
    output_hash: bytes,
) -> None:
    result = Result(job_id, provider, spec_hash, input_hash, output_hash)
    on_chain = market.market.functions.resultDigest(
        job_id, provider, result.task_hash, output_hash
    ).call()
    assert on_chain == digest_of(market.market_domain, result)


@few
@given(job_id=words, spec_hash=words, input_hash=words)
def test_input_receipt_digest_matches(
    market: Market, job_id: bytes, spec_hash: bytes, input_hash: bytes
) -> None:
    receipt = InputReceipt(job_id, spec_hash, input_hash)
    on_chain = market.market.functions.inputReceiptDigest(
        job_id, task_hash(spec_hash, input_hash)
    ).call()
    assert on_chain == digest_of(market.market_domain, receipt)


@few
@given(att=attestations)
def test_key_attestation_digest_matches(market: Market, att: KeyAttestation) -> None:
    on_chain = market.verifier.functions.keyAttestationDigest(key_attestation_abi(att)).call()
    assert on_chain == digest_of(market.verifier_domain, att)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 100])
def test_batch_root_and_digest_match(market: Market, n: int) -> None:
    leaves = [keccak(b"leaf %d" % i) for i in range(n)]
    root = batch_root(leaves)
    assert market.market.functions.merkleRoot(leaves).call() == root
    provider = Account.from_key(keccak(b"p")).address
    on_chain = market.market.functions.resultBatchDigest(provider, root, n).call()
    assert on_chain == digest_of(market.market_domain, ResultBatch(provider, root, n))


def test_out_of_range_narrow_field_is_refused_not_hashed(market: Market) -> None:
    """A uint8 word with high bits set must revert, not hash to a second id for one offer."""
    gov = market.deployment.governance
    offer = Offer(gov, gov, 2, keccak(b"m"), 1, 2, 3, 4, bytes(32), 5)
    fn = market.market.functions.hashOffer(offer.as_abi_tuple())
    calldata = bytes.fromhex(fn._encode_transaction_data()[2:])
    dirty = bytearray(calldata)
    dirty[4 + 2 * 32 + 30] = 1  # teeKind word becomes 0x102
    w3 = market.client.w3
    assert w3.eth.call({"to": market.deployment.market, "data": bytes(calldata)})
    with pytest.raises(Exception):  # noqa: B017 - any revert; there is no reason string
        w3.eth.call({"to": market.deployment.market, "data": bytes(dirty)})
