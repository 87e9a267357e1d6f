"""Arm CCA tokens: Arm's FVP example token verifies (and is reported as not hardware), each
signature, the binding and the claims are checked, and the policy judges the rest."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from proofs.cca import (
    CcaTrustAnchors,
    load_reference_values_json,
    parse_trust_anchor_store,
    verify_cca_token,
)
from proofs.collateral_directory import CollateralDirectory
from proofs.errors import (
    BindingMismatch,
    CertificateInvalid,
    CollateralError,
    MalformedEvidence,
    ProofError,
    SignatureInvalid,
)
from proofs.evidence import verify_evidence
from proofs.policy import Policy, evaluate

CCA = Path(__file__).resolve().parents[2] / "data" / "attestation-cca"
TOKEN = (CCA / "cca-example-token.cbor").read_bytes()
AT = datetime(2025, 1, 1, tzinfo=UTC)


def _anchors() -> CcaTrustAnchors:
    return parse_trust_anchor_store((CCA / "tastore.json").read_bytes())


def _parts(token: bytes) -> tuple[list[Any], list[Any]]:
    collection = cbor2.loads(token).value
    return (
        list(cbor2.loads(collection[44234]).value),
        list(cbor2.loads(collection[44241]).value),
    )


def _token(platform: list[Any], realm: list[Any]) -> bytes:
    return cbor2.dumps(
        cbor2.CBORTag(
            399,
            {
                44234: cbor2.dumps(cbor2.CBORTag(18, platform)),
                44241: cbor2.dumps(cbor2.CBORTag(18, realm)),
            },
        )
    )


def _sign(message: list[Any], key: ec.EllipticCurvePrivateKey) -> list[Any]:
    to_be_signed = cbor2.dumps(["Signature1", message[0], b"", message[2]])
    r, s = decode_dss_signature(key.sign(to_be_signed, ec.ECDSA(hashes.SHA384())))
    return [message[0], message[1], message[2], r.to_bytes(48, "big") + s.to_bytes(48, "big")]


def _with_claims(message: list[Any], **changes: Any) -> list[Any]:
    claims = dict(cbor2.loads(message[2]))
    for key, value in changes.items():
        claims[int(key.removeprefix("k"))] = value
    return [message[0], message[1], cbor2.dumps(claims), message[3]]


def test_arm_example_token_verifies_and_is_reported_as_not_hardware() -> None:
    verified = verify_evidence(TOKEN, CollateralDirectory(CCA), AT)
    claims = verified.claims
    assert claims.kind.label == "cca" and claims.insecure
    assert claims.not_hardware is not None and "simulator" in claims.not_hardware
    facts = claims.cca
    assert facts is not None
    assert facts.lifecycle_name == "secured" and len(facts.software_components) == 13
    assert facts.software_components[0].component_type == "RSE_BL1_2"
    assert claims.measurement.hex().startswith("ae87fbf7")
    assert len(claims.report_data) == 64
    verdict = evaluate(Policy(), claims, AT)
    assert not verdict.accepted
    assert any("INSECURE" in r and "not hardware" in r for r in verdict.reasons)
    assert "CCA measurements were not compared with reference values" in verdict.reasons


def test_reference_values_are_compared_by_the_policy() -> None:
    claims = verify_evidence(TOKEN, CollateralDirectory(CCA), AT).claims
    values = load_reference_values_json((CCA / "rvstore.json").read_bytes())
    told = Policy(allow_sim=True, cca_reference_values=values)
    assert evaluate(told, claims, AT).accepted
    document = json.loads((CCA / "rvstore.json").read_text())
    document["platform"][0]["sw-components"][8]["measurement-value"] = "00" * 32
    document["realm"][0]["initial-measurement"] = "11" * 64
    changed = Policy.from_mapping({"allow_sim": True, "cca_reference_values": document})
    reasons = evaluate(changed, claims, AT).reasons
    assert "CCA platform software differs from the reference: RMM" in reasons
    assert any(r.startswith("CCA realm measurements") for r in reasons)


def test_a_flipped_realm_signature_is_rejected() -> None:
    platform, realm = _parts(TOKEN)
    realm[3] = bytes([realm[3][0] ^ 1]) + realm[3][1:]
    with pytest.raises(SignatureInvalid, match="realm token"):
        verify_cca_token(_token(platform, realm), _anchors())


def test_a_flipped_platform_signature_is_rejected() -> None:
    platform, realm = _parts(TOKEN)
    platform[3] = platform[3][:-1] + bytes([platform[3][-1] ^ 1])
    with pytest.raises(SignatureInvalid, match="platform token"):
        verify_cca_token(_token(platform, realm), _anchors())


def test_a_changed_platform_claim_breaks_the_platform_signature() -> None:
    platform, realm = _parts(TOKEN)
    with pytest.raises(SignatureInvalid, match="platform token"):
        verify_cca_token(_token(_with_claims(platform, k2395=0x4000), realm), _anchors())


def test_a_changed_realm_claim_breaks_the_realm_signature() -> None:
    platform, realm = _parts(TOKEN)
    with pytest.raises(SignatureInvalid, match="realm token"):
        verify_cca_token(_token(platform, _with_claims(realm, k44238=bytes(64))), _anchors())


def test_a_realm_signed_by_another_key_is_not_bound_to_the_platform() -> None:
    # The realm token re-signed by a key of our own, which it carries: its signature holds,
    # but the platform's challenge names the original key.
    platform, realm = _parts(TOKEN)
    key = ec.generate_private_key(ec.SECP384R1())
    point = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    forged = _sign(_with_claims(realm, k44237=point), key)
    with pytest.raises(BindingMismatch, match="does not vouch for this realm"):
        verify_cca_token(_token(platform, forged), _anchors())


def test_a_platform_outside_the_trust_anchor_store_is_refused() -> None:
    store = json.loads((CCA / "tastore.json").read_text())
    store[0]["instance-id"] = "01" + "00" * 32
    anchors = parse_trust_anchor_store(json.dumps(store).encode())
    with pytest.raises(CertificateInvalid, match="no trust anchor"):
        verify_cca_token(TOKEN, anchors)
    # The right ids with another key: the platform signature does not verify.
    store = json.loads((CCA / "tastore.json").read_text())
    numbers = ec.generate_private_key(ec.SECP384R1()).public_key().public_numbers()
    store[0]["pkey"]["x"] = base64.urlsafe_b64encode(numbers.x.to_bytes(48, "big")).decode()
    store[0]["pkey"]["y"] = base64.urlsafe_b64encode(numbers.y.to_bytes(48, "big")).decode()
    with pytest.raises(SignatureInvalid, match="platform token"):
        verify_cca_token(TOKEN, parse_trust_anchor_store(json.dumps(store).encode()))


def _own_platform(lifecycle: int) -> tuple[bytes, CcaTrustAnchors]:
    """SYNTHETIC: the example's realm token under a platform token signed by a test CPAK."""
    platform, realm = _parts(TOKEN)
    cpak = ec.generate_private_key(ec.SECP384R1())
    numbers = cpak.public_key().public_numbers()
    store = json.loads((CCA / "tastore.json").read_text())
    store[0]["pkey"]["x"] = base64.urlsafe_b64encode(numbers.x.to_bytes(48, "big")).decode()
    store[0]["pkey"]["y"] = base64.urlsafe_b64encode(numbers.y.to_bytes(48, "big")).decode()
    signed = _sign(_with_claims(platform, k2395=lifecycle), cpak)
    return _token(signed, realm), parse_trust_anchor_store(json.dumps(store).encode())


def test_a_token_from_a_key_that_is_not_the_simulators_is_not_flagged() -> None:
    token, anchors = _own_platform(0x3000)
    verified = verify_cca_token(token, anchors)
    assert not verified.simulator
    assert (
        hashlib.sha256(verified.realm_public_key).digest() == cbor2.loads(_parts(token)[0][2])[10]
    )


@pytest.mark.parametrize(
    ("lifecycle", "name", "debug"),
    [
        (0x3000, "secured", False),
        (0x4001, "non-psa-rot-debug", True),
        (0x6000, "decommissioned", False),
    ],
)
def test_the_lifecycle_is_decoded_and_judged_by_the_policy(
    lifecycle: int, name: str, debug: bool, tmp_path: Path
) -> None:
    token, anchors = _own_platform(lifecycle)
    verified = verify_cca_token(token, anchors)
    assert verified.facts.lifecycle_name == name
    (tmp_path / "tastore.json").write_bytes(
        json.dumps(json.loads((CCA / "tastore.json").read_text())).encode()
    )
    claims = verify_evidence(token, _Anchors(anchors), AT).claims
    assert claims.debug is debug and not claims.insecure
    values = load_reference_values_json((CCA / "rvstore.json").read_bytes())
    reasons = evaluate(Policy(cca_reference_values=values), claims, AT).reasons
    secured = name == "secured"
    assert (f"CCA platform lifecycle {name} is not secured" in reasons) is not secured
    assert secured == (reasons == ())
    allowed = evaluate(Policy(cca_reference_values=values, allow_debug=True), claims, AT).reasons
    assert (allowed == ()) is (secured or debug)


class _Anchors:
    def __init__(self, anchors: CcaTrustAnchors) -> None:
        self.anchors = anchors

    def cca_trust_anchors(self, at: datetime) -> CcaTrustAnchors:
        return self.anchors


def test_a_token_without_a_trust_anchor_store_is_refused_with_a_reason(tmp_path: Path) -> None:
    with pytest.raises(CollateralError, match="no CCA trust anchor store"):
        verify_evidence(TOKEN, CollateralDirectory(tmp_path), AT)


@settings(max_examples=60, deadline=None)
@given(position=st.integers(0, len(TOKEN) - 1), value=st.integers(0, 255))
def test_any_damaged_byte_is_a_proof_error_or_harmless(position: int, value: int) -> None:
    damaged = TOKEN[:position] + bytes([value]) + TOKEN[position + 1 :]
    try:
        verify_cca_token(damaged, _anchors())
    except ProofError:
        return
    assert damaged == TOKEN  # only the unchanged token verifies


def test_truncated_and_foreign_cbor_is_malformed() -> None:
    for data in (TOKEN[:3], TOKEN[:100], cbor2.dumps(cbor2.CBORTag(399, [1, 2])), b"\xd9\x01\x8f"):
        with pytest.raises(MalformedEvidence):
            verify_cca_token(data, _anchors())


@pytest.mark.fuzz
@settings(max_examples=200, deadline=None)
@given(tail=st.binary(max_size=300))
def test_any_bytes_after_the_tag_are_a_proof_error(tail: bytes) -> None:
    with pytest.raises(ProofError):
        verify_cca_token(b"\xd9\x01\x8f" + tail, _anchors())
