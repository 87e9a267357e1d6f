"""Our EIP-712 encoding of the market's messages agrees with eth-account's encoder.

Result, ResultBatch and KeyAttestation are checked the same way in tests/unit/proofs.
"""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils.crypto import keccak

from node.chain.typed_data import (
    Eip712Domain,
    JobRequest,
    Offer,
    Result,
    TypedMessage,
    digest_of,
    job_id_for,
    job_market_domain,
    sign_message,
    verifier_domain,
)

MARKET = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
PROVIDER = Account.from_key(keccak(b"provider")).address

ENCLAVE = Account.from_key(keccak(b"enclave")).address

SAMPLES: list[TypedMessage] = [
    Offer(PROVIDER, ENCLAVE, 2, keccak(b"m"), 10**17, 60, 3600, 2**40, keccak(b"job"), 2**200 + 5),
    Offer(PROVIDER, ENCLAVE, 5, bytes(32), 0, 0, 0, 0, bytes(32), 0),
    JobRequest(keccak(b"s"), keccak(b"i"), 0b100, bytes(32), 6, 10**18, 1_800_000_000, 9),
]


def _eth_account_digest(domain: Eip712Domain, message: TypedMessage) -> bytes:
    types = {
        message.primary_type(): [{"name": n, "type": t} for n, t in message.field_types()],
    }
    signable = encode_typed_data(
        domain_data={
            "name": domain.name,
            "version": domain.version,
            "chainId": domain.chain_id,
            "verifyingContract": domain.verifying_contract,
        },
        message_types=types,
        message_data=message.eip712_message(),
    )
    return bytes(_hash_eip191_message(signable))


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_digest_equals_eth_account_encoder(message: TypedMessage) -> None:
    domain = job_market_domain(31337, MARKET)
    assert message.digest(domain) == _eth_account_digest(domain, message)


def test_job_id_is_client_and_nonce_and_request_hash_binds_every_field() -> None:
    request = SAMPLES[2]
    assert isinstance(request, JobRequest)
    client = Account.from_key(keccak(b"client")).address
    other = Account.from_key(keccak(b"other")).address
    assert request.job_id(client) == job_id_for(client, request.nonce)
    assert request.job_id(client) != request.job_id(other)
    assert request.request_hash(client) != request.request_hash(other)
    # Another input under the same nonce: the same job id, another request.
    other_input = dataclasses.replace(request, input_hash=keccak(b"other input"))
    assert other_input.job_id(client) == request.job_id(client)
    assert other_input.request_hash(client) != request.request_hash(client)
    bumped = dataclasses.replace(request, nonce=request.nonce + 1)
    assert bumped.job_id(client) != request.job_id(client)


def test_domains_are_distinct_per_contract_and_chain() -> None:
    result = Result(keccak(b"job"), PROVIDER, keccak(b"s"), keccak(b"i"), keccak(b"o"))
    on_market = digest_of(job_market_domain(1, MARKET), result)
    assert on_market != digest_of(verifier_domain(1, MARKET), result)
    assert on_market != digest_of(job_market_domain(2, MARKET), result)


def test_signature_recovers_the_signer() -> None:
    enclave = Account.create()
    domain = job_market_domain(31337, MARKET)
    result = Result(keccak(b"job"), PROVIDER, keccak(b"s"), keccak(b"i"), keccak(b"o"))
    signature = sign_message(domain, result, enclave.key)
    assert len(signature) == 65
    assert Account._recover_hash(digest_of(domain, result), signature=signature) == enclave.address
