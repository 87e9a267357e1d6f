"""Every dcap-qvl 0.7 refusal is classified: a cryptographic or chain failure stays fatal, a
judgement about a genuine quote (debug, TD attributes, TCB level) falls to our engine, which
reports the facts for the policy. One test per class, on real quotes where one exists; the
TD-attribute refusals need a quote whose TCB matches and whose attributes differ, which no
public capture gives, so those are SYNTHETIC (TDX-4 re-signed under a test root, every Intel
collateral signature still real; see test_proofs_intel_mutations)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from test_proofs_intel_mutations import _pck_chain, _pem, _TestHierarchy

from proofs.claims import EvidenceHash
from proofs.collateral_directory import CollateralDirectory
from proofs.evidence import _intel_claims, verify_evidence
from proofs.intel_collateral import IntelCollateral
from proofs.intel_quote import parse_intel_quote
from proofs.intel_verify import (
    DCAP_QVL_ERRORS,
    DcapQvlRefusal,
    _call_dcap_qvl,
    _DcapQvlRefused,
    classify_dcap_qvl_error,
    verify_intel_quote,
)
from proofs.pinned_roots import INTEL_SGX_ROOT_CA_PEM
from proofs.policy import Policy, evaluate

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TESTDATA = Path(__file__).resolve().parents[2] / "data" / "attestation"
ROOT_DER = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM).public_bytes(Encoding.DER)


def _at(name: str) -> datetime:
    case = json.loads((TESTDATA / name / "case.json").read_text())
    return datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))


def _collateral(name: str) -> IntelCollateral:
    return CollateralDirectory(TESTDATA / name).intel_collateral(None, _at(name))  # type: ignore[arg-type]


def _refusal(quote: bytes, collateral: IntelCollateral, at: datetime) -> DcapQvlRefused:
    with pytest.raises(_DcapQvlRefused) as refused:
        _call_dcap_qvl(quote, collateral, at, ROOT_DER)
    return refused.value


DcapQvlRefused = _DcapQvlRefused


def _quote(name: str) -> bytes:
    return (TESTDATA / name / "quote.bin").read_bytes()


def test_a_debug_quote_is_refused_as_policy_and_verified_by_our_engine() -> None:
    refusal = _refusal(_quote("tdx-1"), _collateral("tdx-1"), _at("tdx-1"))
    assert "Debug mode" in refusal.message and refusal.refusal is DcapQvlRefusal.POLICY


def test_an_unmatched_tcb_level_is_policy() -> None:
    refusal = _refusal(_quote("tdx-2"), _collateral("tdx-2"), _at("tdx-2"))
    assert refusal.refusal is DcapQvlRefusal.POLICY, refusal.message
    claims = verify_evidence(_quote("tdx-2"), CollateralDirectory(TESTDATA / "tdx-2"), _at("tdx-2"))
    assert claims.claims.tcb_status_name == "TCBNotSupported"
    # A real quote without SEPT_VE_DISABLE: reported by name, judged by the policy.
    assert "SEPT_VE_DISABLE" not in claims.claims.attributes
    assert (
        "tdx attributes SEPT_VE_DISABLE are not set"
        in evaluate(Policy(), claims.claims, _at("tdx-2")).reasons
    )


def test_a_broken_quote_signature_is_fatal() -> None:
    quote = bytearray(_quote("tdx-4"))
    quote[48 + 136] ^= 1  # MRTD
    refusal = _refusal(bytes(quote), _collateral("tdx-4"), _at("tdx-4"))
    assert refusal.refusal is DcapQvlRefusal.SIGNATURE, refusal.message


def test_expired_collateral_is_fatal() -> None:
    refusal = _refusal(_quote("tdx-4"), _collateral("tdx-4"), _at("tdx-4") + timedelta(days=60))
    assert refusal.refusal is DcapQvlRefusal.COLLATERAL, refusal.message


def test_collateral_of_another_platform_is_fatal() -> None:
    refusal = _refusal(_quote("tdx-4"), _collateral("tdx-1"), _at("tdx-4") - timedelta(days=740))
    assert refusal.refusal in (DcapQvlRefusal.COLLATERAL, DcapQvlRefusal.CERTIFICATE)


def test_a_pck_chain_of_another_platform_is_fatal() -> None:
    from test_proofs_intel_mutations import _with_pck_chain

    swapped = _with_pck_chain(_quote("tdx-4"), _pem(*_pck_chain(_quote("sgx-1"))))
    refusal = _refusal(swapped, _collateral("tdx-4"), _at("tdx-4"))
    assert refusal.refusal in (DcapQvlRefusal.SIGNATURE, DcapQvlRefusal.CERTIFICATE)
    assert not refusal.is_policy


def test_an_undecodable_quote_is_fatal() -> None:
    refusal = _refusal(_quote("tdx-4")[:600], _collateral("tdx-4"), _at("tdx-4"))
    assert refusal.refusal is DcapQvlRefusal.MALFORMED, refusal.message


def test_an_unknown_quote_version_is_fatal() -> None:
    quote = b"\x07\x00" + _quote("tdx-4")[2:]
    refusal = _refusal(quote, _collateral("tdx-4"), _at("tdx-4"))
    assert refusal.refusal is DcapQvlRefusal.UNSUPPORTED, refusal.message
    assert not refusal.is_policy


def test_a_missing_pck_crl_is_an_input_not_a_verdict() -> None:
    collateral = dataclasses.replace(_collateral("tdx-4"), pck_crl=b"not a crl")
    refusal = _refusal(_quote("tdx-4"), collateral, _at("tdx-4"))
    assert refusal.refusal is DcapQvlRefusal.MISSING_INPUT, refusal.message


@pytest.mark.parametrize(("marker", "refusal"), DCAP_QVL_ERRORS)
def test_every_listed_error_text_is_classified_as_listed(
    marker: str, refusal: DcapQvlRefusal
) -> None:
    # anyhow's debug form: the context on the first line, the cause after it.
    assert classify_dcap_qvl_error(f"Verification failed: {marker.upper()} / x") is refusal


def test_a_fatal_cause_under_a_policy_looking_context_stays_fatal() -> None:
    message = (
        "Verification failed: TDX module identity check / Caused by: / "
        "TDX module MRSIGNER mismatch: expected 00, got 01"
    )
    assert classify_dcap_qvl_error(message) is DcapQvlRefusal.CERTIFICATE
    assert (
        classify_dcap_qvl_error("TDX module identity check / No TDX module identity with id TDX_03")
        is DcapQvlRefusal.POLICY
    )


def test_an_unknown_error_text_is_fatal() -> None:
    assert classify_dcap_qvl_error("something new in dcap-qvl 0.8") is DcapQvlRefusal.CERTIFICATE


# --- SYNTHETIC: TD attributes dcap-qvl refuses, on TDX-4 re-signed under a test root ----------


def _resigned_tdx4(hierarchy: _TestHierarchy, td_attributes_change: int) -> bytes:
    """TDX-4 with TD attributes XOR `td_attributes_change`, re-signed by a new attestation key
    certified by a new PCK key (same SGX extensions) under the test root."""
    data = _quote("tdx-4")
    quote = parse_intel_quote(data)
    body = bytearray(quote.signed_bytes)
    offset = 48 + 120
    attributes = int.from_bytes(body[offset : offset + 8], "little") ^ td_attributes_change
    body[offset : offset + 8] = attributes.to_bytes(8, "little")
    attestation = ec.generate_private_key(ec.SECP256R1())
    numbers = attestation.public_key().public_numbers()
    ak = numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")
    r, s = decode_dss_signature(attestation.sign(bytes(body), ec.ECDSA(hashes.SHA256())))
    signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")

    certification = quote.certification
    qe_report = bytearray(certification.qe_report.raw)
    binding = hashlib.sha256(ak + certification.qe_auth_data).digest()
    qe_report[320:384] = binding + bytes(32)
    pck_key = ec.generate_private_key(ec.SECP256R1())
    real_leaf = _pck_chain(data)[0]
    builder = (
        x509.CertificateBuilder()
        .subject_name(real_leaf.subject)
        .issuer_name(hierarchy.pck_ca.subject)
        .public_key(pck_key.public_key())
        .serial_number(7)
        .not_valid_before(real_leaf.not_valid_before_utc)
        .not_valid_after(real_leaf.not_valid_after_utc)
    )
    for extension in real_leaf.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    leaf = builder.sign(hierarchy.pck_ca_key, hashes.SHA256())
    r, s = decode_dss_signature(pck_key.sign(bytes(qe_report), ec.ECDSA(hashes.SHA256())))
    qe_signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    chain = _pem(leaf, hierarchy.pck_ca, hierarchy.root)
    inner = (
        bytes(qe_report)
        + qe_signature
        + struct.pack("<H", len(certification.qe_auth_data))
        + certification.qe_auth_data
        + struct.pack("<HI", 5, len(chain))
        + chain
    )
    inner = struct.pack("<HI", 6, len(inner)) + inner
    signature_data = signature + ak + inner
    return bytes(body) + struct.pack("<I", len(signature_data)) + signature_data


def _crl(issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Shaped as Intel's (v2, CRL number, authority key id), which webpki insists on."""
    at = _at("tdx-4")
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(at - timedelta(days=1))
        .next_update(at + timedelta(days=29))
        .add_extension(x509.CRLNumber(1), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )


def _test_collateral(hierarchy: _TestHierarchy) -> IntelCollateral:
    return dataclasses.replace(
        _collateral("tdx-4"),
        tcb_signing_chain_pem=_pem(hierarchy.tcb_signing, hierarchy.root),
        root_ca_crl=_crl(hierarchy.root, hierarchy.root_key),
        pck_crl=_crl(hierarchy.pck_ca, hierarchy.pck_ca_key),
        pck_crl_issuer_chain_pem=_pem(hierarchy.pck_ca, hierarchy.root),
    )


@pytest.fixture(scope="module")
def hierarchy() -> _TestHierarchy:
    return _TestHierarchy.reissue("tdx-4")


def test_synthetic_control_passes_dcap_qvl(hierarchy: _TestHierarchy) -> None:
    result = verify_intel_quote(
        _resigned_tdx4(hierarchy, 0),
        _test_collateral(hierarchy),
        _at("tdx-4"),
        trusted_root=hierarchy.root,
    )
    assert result.engine == "dcap-qvl" and result.tcb.status == "OutOfDate"


@pytest.mark.parametrize(
    ("change", "message", "named"),
    [
        (1 << 28, "SEPT_VE_DISABLE", "tdx attributes SEPT_VE_DISABLE are not set"),
        (1 << 5, "TD profiling", "reserved attribute bits are set: RESERVED_5"),
        (1 << 29, "TD migration", None),
        (1 << 2, "Reserved bits", "reserved attribute bits are set: RESERVED_2"),
    ],
)
def test_td_attribute_refusals_become_facts_for_the_policy(
    hierarchy: _TestHierarchy, change: int, message: str, named: str | None
) -> None:
    quote = _resigned_tdx4(hierarchy, change)
    collateral = _test_collateral(hierarchy)
    root_der = hierarchy.root.public_bytes(Encoding.DER)
    with pytest.raises(_DcapQvlRefused, match=message) as refused:
        _call_dcap_qvl(quote, collateral, _at("tdx-4"), root_der)
    assert refused.value.refusal is DcapQvlRefusal.POLICY
    result = verify_intel_quote(quote, collateral, _at("tdx-4"), trusted_root=hierarchy.root)
    assert result.engine == "capacloud" and result.tcb.status == "OutOfDate"
    claims = _intel_claims(result, EvidenceHash(bytes(32)))
    reasons = evaluate(Policy(), claims, _at("tdx-4")).reasons
    if named is not None:
        assert named in reasons
    # MIGRATABLE is named, neither required nor forbidden by default: reported, not refused.
    assert ("MIGRATABLE" in claims.attributes) == (change == 1 << 29)
