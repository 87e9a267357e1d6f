"""Receipt decisions the EIP-712 reference tests leave open: batch hashing, refusals, v forms."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from proofs.errors import SignatureInvalid
from proofs.receipts import (
    InclusionStep,
    KeyAttestation,
    Result,
    ResultBatch,
    batch_root,
    inclusion_proof,
    job_market_domain,
    measurement_word,
    recover_signer,
    results_batch_root,
    typed_data_digest,
    verify_signed_by,
)

CONTRACT = "0x" + "12" * 20
PROVIDER = "0x" + "34" * 20
KEY = bytes.fromhex("22" * 32)
SIGNER = Account.from_key(KEY).address
LEAVES = [keccak(bytes([i])) for i in range(3)]


def _reference(
    name: str, primary: str, fields: list[dict[str, str]], message: dict[str, object]
) -> bytes:
    domain_types = [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ]
    signable = encode_typed_data(
        full_message={
            "types": {"EIP712Domain": domain_types, primary: fields},
            "primaryType": primary,
            "domain": {
                "name": name,
                "version": "1",
                "chainId": 31337,
                "verifyingContract": CONTRACT,
            },
            "message": message,
        }
    )
    return keccak(b"\x19" + signable.version + signable.header + signable.body)


def test_result_batch_digest_matches_eip712_reference() -> None:
    batch = ResultBatch(PROVIDER, b"\x05" * 32, 7)
    reference = _reference(
        "CapaCloud JobMarket",
        "ResultBatch",
        [
            {"name": "provider", "type": "address"},
            {"name": "root", "type": "bytes32"},
            {"name": "count", "type": "uint256"},
        ],
        {"provider": PROVIDER, "root": b"\x05" * 32, "count": 7},
    )
    assert typed_data_digest(job_market_domain(31337, CONTRACT), batch.hash_struct()) == reference


def test_a_long_measurement_is_attested_as_its_keccak() -> None:
    mrtd = b"\x09" * 48
    assert measurement_word(mrtd) == keccak(mrtd)
    assert measurement_word(b"\x09" * 32) == b"\x09" * 32

    def attestation(measurement: bytes) -> KeyAttestation:
        return KeyAttestation(PROVIDER, "0x" + "56" * 20, 2, measurement, 6, b"\x0a" * 32, 1234)

    # The 32-byte form is checked against the EIP-712 reference in test_proofs_receipts.
    assert attestation(mrtd).hash_struct() == attestation(keccak(mrtd)).hash_struct()
    assert attestation(mrtd).hash_struct() != attestation(mrtd[:32]).hash_struct()


SPEC = b"\x04" * 32


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (
            lambda: Result(b"\x01" * 31, PROVIDER, SPEC, b"\x02" * 32, b"\x03" * 32).hash_struct(),
            "jobId",
        ),
        (
            lambda: Result(
                b"\x01" * 32, PROVIDER, b"\x04" * 33, b"\x02" * 32, b"\x03" * 32
            ).hash_struct(),
            "specHash",
        ),
        (
            lambda: Result(b"\x01" * 32, PROVIDER, SPEC, b"\x02" * 33, b"\x03" * 32).hash_struct(),
            "inputHash",
        ),
        (
            lambda: Result(b"\x01" * 32, PROVIDER, SPEC, b"\x02" * 32, b"\x03" * 31).hash_struct(),
            "outputHash",
        ),
        (lambda: ResultBatch(PROVIDER, b"\x05" * 31, 1).hash_struct(), "root"),
        (
            lambda: KeyAttestation(
                PROVIDER, PROVIDER, 1, b"\x09" * 32, 6, b"\x0a" * 33, 1
            ).hash_struct(),
            "evidenceHash",
        ),
        (lambda: batch_root([b"\x01" * 31]), "leaf"),
    ],
)
def test_a_word_of_the_wrong_length_is_refused_by_name(
    build: Callable[[], object], field: str
) -> None:
    with pytest.raises(ValueError) as refused:
        build()
    assert str(refused.value).startswith(f"{field} must be 32 bytes, got 3")


def test_an_empty_batch_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        batch_root([])
    assert str(refused.value) == "a batch needs at least one result"


def test_the_batch_root_of_results_is_over_their_hash_structs() -> None:
    results = [
        Result(bytes([i]) * 32, PROVIDER, SPEC, b"\x02" * 32, b"\x03" * 32) for i in range(3)
    ]
    hashes = [r.hash_struct() for r in results]
    assert results_batch_root(results) == keccak(keccak(hashes[0] + hashes[1]) + hashes[2])


def _signature_with_v(v: int) -> tuple[bytes, bytes]:
    """A (digest, signature) whose last byte is ``v`` (27 or 28), found by trying digests."""
    for i in range(64):
        digest = keccak(bytes([i]))
        signature = bytes(Account.unsafe_sign_hash(digest, KEY).signature)
        if signature[64] == v:
            return digest, signature
    raise AssertionError(f"no signature with v={v} in 64 tries")


@pytest.mark.parametrize("v", [27, 28])
def test_a_signature_recovers_with_v_as_27_28_or_as_0_1(v: int) -> None:
    digest, signature = _signature_with_v(v)
    assert recover_signer(digest, signature) == SIGNER
    assert recover_signer(digest, signature[:64] + bytes([v - 27])) == SIGNER


@pytest.mark.parametrize("v", [2, 26, 29])
def test_a_signature_with_another_v_is_refused(v: int) -> None:
    digest, signature = _signature_with_v(27)
    with pytest.raises(SignatureInvalid) as refused:
        recover_signer(digest, signature[:64] + bytes([v]))
    assert str(refused.value).startswith("cannot recover a signer: ")


@pytest.mark.parametrize("length", [0, 64, 66])
def test_a_signature_that_is_not_65_bytes_is_refused(length: int) -> None:
    with pytest.raises(SignatureInvalid) as refused:
        recover_signer(keccak(b"x"), b"\x01" * length)
    assert str(refused.value) == f"signature must be 65 bytes, got {length}"


def test_a_signature_by_another_key_names_both_signers() -> None:
    digest, signature = _signature_with_v(27)
    other = "0x" + "ab" * 20
    with pytest.raises(SignatureInvalid) as refused:
        verify_signed_by(digest, signature, other)
    assert str(refused.value) == (
        f"signed by {SIGNER}, expected 0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"
    )
    verify_signed_by(digest, signature, SIGNER.lower())


def test_inclusion_proof_steps_name_each_sibling_and_its_side() -> None:
    a, b, c = LEAVES
    assert inclusion_proof(LEAVES, 0) == (
        InclusionStep(b, sibling_on_left=False),
        InclusionStep(c, sibling_on_left=False),
    )
    assert inclusion_proof(LEAVES, 1) == (
        InclusionStep(a, sibling_on_left=True),
        InclusionStep(c, sibling_on_left=False),
    )
    # The odd leaf is carried up the first level: one step only.
    assert inclusion_proof(LEAVES, 2) == (InclusionStep(keccak(a + b), sibling_on_left=True),)


@pytest.mark.parametrize("index", [-1, 3])
def test_an_inclusion_proof_for_a_leaf_outside_the_batch_is_refused(index: int) -> None:
    with pytest.raises(IndexError) as refused:
        inclusion_proof(LEAVES, index)
    assert str(refused.value) == f"leaf {index} out of 3"
