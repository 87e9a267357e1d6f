"""Receipts hash exactly as eth-account's EIP-712 encoder (and so as JobMarket) does."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs.errors import SignatureInvalid
from proofs.receipts import (
    InputReceipt,
    KeyAttestation,
    Result,
    attestation_verifier_domain,
    batch_root,
    inclusion_proof,
    input_receipt_digest,
    job_market_domain,
    recover_signer,
    result_digest,
    root_from_inclusion_proof,
    sign_digest,
    task_hash,
    typed_data_digest,
    verify_signed_by,
    workload_spec_hash,
)

MARKET = "0x" + "12" * 20
PROVIDER = "0x" + "34" * 20
DOMAIN_TYPES = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]


TASK_FIELDS = [
    {"name": "specHash", "type": "bytes32"},
    {"name": "inputHash", "type": "bytes32"},
]


def _reference_digest(
    name: str,
    primary: str,
    fields: list[dict[str, str]],
    message: dict[str, object],
    nested: dict[str, list[dict[str, str]]] | None = None,
) -> bytes:
    signable = encode_typed_data(
        full_message={
            "types": {"EIP712Domain": DOMAIN_TYPES, primary: fields, **(nested or {})},
            "primaryType": primary,
            "domain": {"name": name, "version": "1", "chainId": 31337, "verifyingContract": MARKET},
            "message": message,
        }
    )
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def test_result_digest_matches_eip712_reference() -> None:
    result = Result(b"\x01" * 32, PROVIDER, b"\x04" * 32, b"\x02" * 32, b"\x03" * 32)
    reference = _reference_digest(
        "CapaCloud JobMarket",
        "Result",
        [
            {"name": "jobId", "type": "bytes32"},
            {"name": "provider", "type": "address"},
            {"name": "task", "type": "Task"},
            {"name": "outputHash", "type": "bytes32"},
        ],
        {
            "jobId": b"\x01" * 32,
            "provider": PROVIDER,
            "task": {"specHash": b"\x04" * 32, "inputHash": b"\x02" * 32},
            "outputHash": b"\x03" * 32,
        },
        {"Task": TASK_FIELDS},
    )
    assert result_digest(job_market_domain(31337, MARKET), result) == reference


def test_input_receipt_digest_matches_eip712_reference() -> None:
    receipt = InputReceipt(b"\x01" * 32, b"\x04" * 32, b"\x02" * 32)
    reference = _reference_digest(
        "CapaCloud JobMarket",
        "InputReceipt",
        [{"name": "jobId", "type": "bytes32"}, {"name": "task", "type": "Task"}],
        {"jobId": b"\x01" * 32, "task": {"specHash": b"\x04" * 32, "inputHash": b"\x02" * 32}},
        {"Task": TASK_FIELDS},
    )
    assert input_receipt_digest(job_market_domain(31337, MARKET), receipt) == reference


def test_result_and_receipt_bind_spec_and_input() -> None:
    domain = job_market_domain(31337, MARKET)
    result = Result(b"\x01" * 32, PROVIDER, b"\x04" * 32, b"\x02" * 32, b"\x03" * 32)
    other_spec = Result(b"\x01" * 32, PROVIDER, b"\x05" * 32, b"\x02" * 32, b"\x03" * 32)
    assert result_digest(domain, result) != result_digest(domain, other_spec)
    assert result.task_hash == task_hash(b"\x04" * 32, b"\x02" * 32)
    # swapping spec and input is another task
    assert task_hash(b"\x04" * 32, b"\x02" * 32) != task_hash(b"\x02" * 32, b"\x04" * 32)
    receipt = InputReceipt(b"\x01" * 32, b"\x04" * 32, b"\x02" * 32)
    assert input_receipt_digest(domain, receipt) != result_digest(domain, result)


def test_workload_spec_hash_names_measurement_and_arguments() -> None:
    m = b"\x07" * 32
    base = workload_spec_hash(m, ())
    assert base != workload_spec_hash(b"\x08" * 32, ())
    assert base != workload_spec_hash(m, ("--fast",))
    # arguments are a list, not a concatenation
    assert workload_spec_hash(m, ("ab", "c")) != workload_spec_hash(m, ("a", "bc"))
    # a 48-byte measurement goes in as its keccak, as on-chain
    assert workload_spec_hash(b"\x07" * 48, ()) == workload_spec_hash(keccak(b"\x07" * 48), ())


def test_key_attestation_digest_matches_eip712_reference() -> None:
    attestation = KeyAttestation(PROVIDER, "0x" + "56" * 20, 2, b"\x09" * 32, 6, b"\x0a" * 32, 1234)
    reference = _reference_digest(
        "CapaCloud AttestationVerifier",
        "KeyAttestation",
        [
            {"name": "provider", "type": "address"},
            {"name": "enclaveKey", "type": "address"},
            {"name": "teeKind", "type": "uint8"},
            {"name": "measurement", "type": "bytes32"},
            {"name": "tcbStatus", "type": "uint8"},
            {"name": "evidenceHash", "type": "bytes32"},
            {"name": "expiresAt", "type": "uint64"},
        ],
        {
            "provider": PROVIDER,
            "enclaveKey": "0x" + "56" * 20,
            "teeKind": 2,
            "measurement": b"\x09" * 32,
            "tcbStatus": 6,
            "evidenceHash": b"\x0a" * 32,
            "expiresAt": 1234,
        },
    )
    digest = typed_data_digest(
        attestation_verifier_domain(31337, MARKET), attestation.hash_struct()
    )
    assert digest == reference


def test_sign_and_recover() -> None:
    key = bytes.fromhex("22" * 32)
    digest = keccak(b"receipt")
    signature = sign_digest(key, digest)
    assert recover_signer(digest, signature) == Account.from_key(key).address
    verify_signed_by(digest, signature, Account.from_key(key).address)
    with pytest.raises(SignatureInvalid):
        verify_signed_by(keccak(b"other"), signature, Account.from_key(key).address)
    with pytest.raises(SignatureInvalid):
        recover_signer(digest, signature[:64])


def test_batch_root_shape() -> None:
    a, b, c = (keccak(bytes([i])) for i in range(3))
    assert batch_root([a]) == a
    assert batch_root([a, b]) == keccak(a + b)
    assert batch_root([a, b, c]) == keccak(keccak(a + b) + c)


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=17), st.data())
def test_inclusion_proofs(count: int, data: st.DataObject) -> None:
    leaves = [keccak(i.to_bytes(2, "big")) for i in range(count)]
    index = data.draw(st.integers(min_value=0, max_value=count - 1))
    assert root_from_inclusion_proof(leaves[index], inclusion_proof(leaves, index)) == batch_root(
        leaves
    )
