"""Our EIP-712 encoder agrees with eth-account's independent one, and signatures recover."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import _hash_eip191_message, encode_typed_data
from eth_utils import keccak

from node.chain.typed_data import (
    Eip712Domain,
    JobRequest,
    KeyAttestation,
    Offer,
    Result,
    ResultBatch,
    TypedMessage,
    job_market_domain,
    merkle_root,
    verifier_domain,
)

MARKET = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
PROVIDER = Account.from_key(keccak(b"provider")).address

SAMPLES: list[TypedMessage] = [
    Offer(PROVIDER, 2, keccak(b"m"), 10**17, 3600, 2**40, keccak(b"job"), 2**200 + 5),
    JobRequest(keccak(b"s"), keccak(b"i"), 0b100, bytes(32), 6, 10**18, 1_800_000_000, 9),
    Result(keccak(b"job"), PROVIDER, keccak(b"i"), keccak(b"o")),
    ResultBatch(PROVIDER, keccak(b"root"), 100),
    KeyAttestation(PROVIDER, PROVIDER, 3, keccak(b"m"), 6, keccak(b"e"), 1_900_000_000),
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


def test_domains_are_distinct_per_contract() -> None:
    result = SAMPLES[2]
    assert result.digest(job_market_domain(1, MARKET)) != result.digest(verifier_domain(1, MARKET))
    assert result.digest(job_market_domain(1, MARKET)) != result.digest(
        job_market_domain(2, MARKET)
    )


def test_signature_recovers_the_signer() -> None:
    enclave = Account.create()
    domain = job_market_domain(31337, MARKET)
    result = SAMPLES[2]
    signature = result.sign(domain, enclave.key)
    assert len(signature) == 65
    assert Account._recover_hash(result.digest(domain), signature=signature) == enclave.address


def test_merkle_root_shapes() -> None:
    a, b, c = (keccak(x) for x in (b"a", b"b", b"c"))
    assert merkle_root([a]) == a
    assert merkle_root([a, b]) == keccak(a + b)
    # The odd last node is carried up unchanged, not hashed with itself.
    assert merkle_root([a, b, c]) == keccak(keccak(a + b) + c)
    assert merkle_root([a, b, c]) != merkle_root([b, a, c])
    with pytest.raises(ValueError):
        merkle_root([])
