"""NVIDIA GPU evidence: a real H100 report from NVIDIA's nvtrust (data/nvidia/SOURCES.json)
verifies to the pinned root and every mutation of it is rejected; SYNTHETIC reports signed by a
test CA built here (never NVIDIA's) exercise SPDM 1.2, OCSP, reference manifests and the
binding of the GPU nonce to the CPU report data."""

from __future__ import annotations

import contextlib
import hashlib
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID
from fuzz_inputs import Edit, damage, damage_pem_chain, edits
from hypothesis import given
from hypothesis import strategies as st

from proofs.binding import KeyBinding, check_gpu_bound_to_cpu, gpu_nonce_for
from proofs.claims import Claims, EvidenceHash, TeeKind
from proofs.collateral_source import HttpResponse
from proofs.errors import (
    BindingMismatch,
    CertificateInvalid,
    CollateralError,
    MalformedEvidence,
    ProofError,
    SignatureInvalid,
    UnsupportedEvidence,
)
from proofs.evidence import nvidia_claims, verify_evidence
from proofs.intel_quote import parse_intel_quote
from proofs.nvidia_collateral import (
    GoldenMeasurement,
    HttpOcspResponder,
    ReferenceManifest,
    check_ocsp_response,
    compare_with_manifests,
    ocsp_request_for,
)
from proofs.nvidia_spdm import parse_attestation_report
from proofs.nvidia_verify import (
    certified_fwids,
    create_nvidia_evidence,
    parse_nvidia_evidence,
    verify_nvidia_evidence,
)
from proofs.policy import Policy, evaluate
from proofs.sev_snp import parse_snp_report

DATA = Path(__file__).resolve().parent / "data" / "nvidia"
REAL_REPORT = bytes.fromhex((DATA / "hopperAttestationReport.txt").read_text())
REAL_CHAIN = (DATA / "hopperCertChain.txt").read_bytes()
OTHER_GPU_CHAIN = (DATA / "gpuAkCertChain.txt").read_bytes()
REAL_AT = datetime(2024, 1, 1, tzinfo=UTC)
# Offsets in the real report: request nonce, first measurement value, signature.
NONCE_OFFSET = 4
FIRST_MEASUREMENT_OFFSET = 37 + 8 + 7
SIGNATURE_OFFSET = len(REAL_REPORT) - 96


def _real(report: bytes = REAL_REPORT, chain: bytes = REAL_CHAIN) -> bytes:
    return create_nvidia_evidence(report, chain)


def _flip(data: bytes, offset: int, value: int = 0x01) -> bytes:
    mutated = bytearray(data)
    mutated[offset] ^= value
    return bytes(mutated)


# --- the real H100 vector ---------------------------------------------------------------


def test_real_h100_report_verifies_to_pinned_root() -> None:
    verified = verify_evidence(_real(), None, REAL_AT)  # type: ignore[arg-type]
    claims = verified.claims
    assert claims.kind == TeeKind.NVIDIA_CC and claims.version == 11
    assert claims.report_data.hex() == (
        "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"
    )
    assert claims.signer_ids == ("53C22BA15E5D68088282DA074ED9FB37AA585771",)
    record = parse_attestation_report(REAL_REPORT).response.measurement_record
    assert claims.measurement == hashlib.sha384(record).digest()
    assert not claims.revocation_checked and claims.reference_mismatches is None
    verdict = evaluate(Policy(), claims, REAL_AT)
    assert not verdict.accepted
    assert any("OCSP" in r for r in verdict.reasons)
    assert any("manifests" in r for r in verdict.reasons)


def test_real_h100_report_fields() -> None:
    report = parse_attestation_report(REAL_REPORT)
    assert report.spdm_version == 0x11
    assert len(report.response.blocks) == 64
    assert all(len(b.value) == 48 for b in report.response.blocks)
    assert report.driver_version == "550.90.07"
    assert report.vbios_version == "96.00.9f.00.01"
    assert report.driver_rim_id == "NV_GPU_DRIVER_GH100_550.90.07"
    assert report.vbios_rim_id == "NV_GPU_VBIOS_1010_0200_882_96009F0001"
    assert report.nvdec0_disabled
    leaf = x509.load_pem_x509_certificates(REAL_CHAIN)[0]
    assert report.fwid is not None and report.fwid in certified_fwids(leaf)


def test_real_chain_may_omit_the_root() -> None:
    without_root = b"".join(
        c.public_bytes(Encoding.PEM) for c in x509.load_pem_x509_certificates(REAL_CHAIN)[:-1]
    )
    verify_nvidia_evidence(_real(chain=without_root), REAL_AT)


@pytest.mark.parametrize(
    "offset", [0, 1, NONCE_OFFSET, 37, 37 + 4, FIRST_MEASUREMENT_OFFSET, SIGNATURE_OFFSET - 1]
)
def test_flipped_signed_byte_is_rejected(offset: int) -> None:
    with pytest.raises(ProofError):
        verify_nvidia_evidence(_real(_flip(REAL_REPORT, offset)), REAL_AT)


@pytest.mark.parametrize("offset", [NONCE_OFFSET, FIRST_MEASUREMENT_OFFSET, SIGNATURE_OFFSET - 1])
def test_flipped_content_byte_fails_the_signature(offset: int) -> None:
    with pytest.raises(SignatureInvalid):
        verify_nvidia_evidence(_real(_flip(REAL_REPORT, offset)), REAL_AT)


@pytest.mark.parametrize("offset", [SIGNATURE_OFFSET, SIGNATURE_OFFSET + 60, len(REAL_REPORT) - 1])
def test_flipped_signature_byte_is_rejected(offset: int) -> None:
    with pytest.raises(SignatureInvalid):
        verify_nvidia_evidence(_real(_flip(REAL_REPORT, offset)), REAL_AT)


def test_foreign_gpu_chain_is_rejected() -> None:
    # A genuine chain of another H100: the chain verifies, the report signature does not.
    with pytest.raises(SignatureInvalid):
        verify_nvidia_evidence(_real(chain=OTHER_GPU_CHAIN), REAL_AT)


def test_swapped_certificates_are_rejected() -> None:
    real = x509.load_pem_x509_certificates(REAL_CHAIN)
    other = x509.load_pem_x509_certificates(OTHER_GPU_CHAIN)
    pem = Encoding.PEM
    # Our leaf under the other GPU's BROM certificate: its issuer signature fails.
    mixed = b"".join(c.public_bytes(pem) for c in [real[0], other[1], *real[2:]])
    with pytest.raises(CertificateInvalid):
        verify_nvidia_evidence(_real(chain=mixed), REAL_AT)
    missing = b"".join(c.public_bytes(pem) for c in [real[0], *real[2:]])
    with pytest.raises(CertificateInvalid):
        verify_nvidia_evidence(_real(chain=missing), REAL_AT)


def test_chain_under_a_foreign_root_is_rejected() -> None:
    authority = _TestAuthority.create()
    with pytest.raises(CertificateInvalid):
        verify_nvidia_evidence(_real(chain=authority.chain_pem), REAL_AT)


def test_outside_validity_window_is_rejected() -> None:
    # The Provisioner ICA is the youngest certificate of the chain (notBefore 2022-03-01).
    with pytest.raises(CertificateInvalid):
        verify_nvidia_evidence(_real(), datetime(2022, 2, 28, tzinfo=UTC))


def test_truncated_oversized_and_wrong_kind_are_rejected() -> None:
    for size in (0, 10, 36, 37, 38, 100, len(REAL_REPORT) // 2, len(REAL_REPORT) - 1):
        with pytest.raises(MalformedEvidence):
            verify_nvidia_evidence(_real(REAL_REPORT[:size]), REAL_AT)
    with pytest.raises(MalformedEvidence):
        verify_nvidia_evidence(_real(REAL_REPORT + b"\x00"), REAL_AT)
    for parse in (parse_intel_quote, parse_snp_report):
        with pytest.raises(ProofError):
            parse(REAL_REPORT)
    with pytest.raises(MalformedEvidence):
        parse_nvidia_evidence(REAL_REPORT)


def test_unsupported_spdm_version_is_refused() -> None:
    newer = bytearray(REAL_REPORT)
    newer[0] = newer[37] = 0x13
    with pytest.raises(UnsupportedEvidence):
        parse_attestation_report(bytes(newer))


@pytest.mark.fuzz
@given(
    position=st.floats(min_value=0, max_value=0.9999),
    value=st.integers(min_value=1, max_value=255),
)
def test_random_mutation_is_rejected(position: float, value: int) -> None:
    offset = int(position * len(REAL_REPORT))
    with pytest.raises(ProofError):
        verify_nvidia_evidence(_real(_flip(REAL_REPORT, offset, value)), REAL_AT)


@pytest.mark.fuzz
@given(st.binary(max_size=600) | st.builds(lambda n: REAL_REPORT[:n], st.integers(0, 4200)))
def test_parsers_raise_only_proof_errors(data: bytes) -> None:
    with contextlib.suppress(ProofError):
        parse_attestation_report(data)
    with contextlib.suppress(ProofError):
        verify_nvidia_evidence(create_nvidia_evidence(data, REAL_CHAIN), REAL_AT)
    with contextlib.suppress(ProofError):
        parse_nvidia_evidence(data)


@pytest.mark.fuzz
@given(changes=edits())
def test_damaged_report_raises_only_proof_errors(changes: list[Edit]) -> None:
    """Inserted and deleted bytes shift every SPDM length field after them."""
    with contextlib.suppress(ProofError):
        verify_nvidia_evidence(_real(damage(REAL_REPORT, changes)), REAL_AT)


@pytest.mark.fuzz
@given(
    chain=st.sampled_from([REAL_CHAIN, OTHER_GPU_CHAIN]), index=st.integers(0, 4), changes=edits()
)
def test_damaged_gpu_certificate_raises_only_proof_errors(
    chain: bytes, index: int, changes: list[Edit]
) -> None:
    with contextlib.suppress(ProofError):
        verify_nvidia_evidence(_real(chain=damage_pem_chain(chain, index, changes)), REAL_AT)


# --- SYNTHETIC evidence, signed by a test CA -----------------------------------------------

AT = datetime(2025, 3, 1, tzinfo=UTC)
BINDING = KeyBinding(
    chain_id=31337,
    verifier="0x" + "aa" * 20,
    provider="0x" + "bb" * 20,
    enclave_key="0x" + "cc" * 20,
    hpke_public_key=b"\x04" * 32,
    nonce=b"\x07" * 32,
    expires_at=int((AT + timedelta(hours=1)).timestamp()),
)
MEASUREMENTS = [hashlib.sha384(bytes([i])).digest() for i in range(1, 9)]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CapaCloud TEST (synthetic)"),
        ]
    )


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    serial: int,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA384())
    )


@dataclass
class _TestAuthority:
    """SYNTHETIC root -> intermediate -> attestation key; nothing here is NVIDIA's."""

    root_key: ec.EllipticCurvePrivateKey
    intermediate_key: ec.EllipticCurvePrivateKey
    leaf_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate: x509.Certificate
    leaf: x509.Certificate

    @classmethod
    def create(cls) -> _TestAuthority:
        keys = [ec.generate_private_key(ec.SECP384R1()) for _ in range(3)]
        root = _certificate("TEST GPU root", keys[0], "TEST GPU root", keys[0], ca=True, serial=1)
        middle = _certificate("TEST GPU ICA", keys[1], "TEST GPU root", keys[0], ca=True, serial=2)
        leaf = _certificate("TEST GPU AK", keys[2], "TEST GPU ICA", keys[1], ca=False, serial=3)
        return cls(keys[0], keys[1], keys[2], root, middle, leaf)

    @property
    def chain_pem(self) -> bytes:
        pem = Encoding.PEM
        return b"".join(c.public_bytes(pem) for c in (self.leaf, self.intermediate, self.root))

    def issuer_of(self, cert: x509.Certificate) -> tuple[x509.Certificate, Any]:
        if cert.serial_number == self.leaf.serial_number:
            return self.intermediate, self.intermediate_key
        return self.root, self.root_key


def _tlv(field_id: int, data: bytes) -> bytes:
    return struct.pack("<HH", field_id, len(data)) + data


def _synthetic_report(
    authority: _TestAuthority,
    nonce: bytes,
    *,
    version: int = 0x11,
    measurements: list[bytes] = MEASUREMENTS,
    sign_as_version: int | None = None,
) -> bytes:
    """Built from DSP0274's tables directly, not with the code under test."""
    request = bytes([version, 0xE0, 0x01, 0xFF]) + nonce + b"\x00"
    blocks = b""
    for index, value in enumerate(measurements, start=1):
        dmtf = b"\x01" + struct.pack("<H", len(value)) + value
        blocks += bytes([index, 0x01]) + struct.pack("<H", len(dmtf)) + dmtf
    opaque = (
        _tlv(3, b"570.86.15\x00")
        + _tlv(6, bytes.fromhex("0060009601000000"))
        + _tlv(15, b"886\x00")
        + _tlv(17, b"1010\x00")
        + _tlv(18, b"0210\x00")
    )
    unsigned = (
        bytes([version, 0x60, 0x00, 0x00, len(measurements)])
        + len(blocks).to_bytes(3, "little")
        + blocks
        + b"\x5a" * 32
        + struct.pack("<H", len(opaque))
        + opaque
    )
    transcript = request + unsigned
    signing_version = sign_as_version or version
    if signing_version == 0x11:
        message = transcript
    else:
        context = b"responder-measurements signing"
        prefix = b"dmtf-spdm-v1.2.*" * 4 + bytes(36 - len(context)) + context
        message = prefix + hashlib.sha384(transcript).digest()
    r, s = decode_dss_signature(authority.leaf_key.sign(message, ec.ECDSA(hashes.SHA384())))
    return transcript + r.to_bytes(48, "big") + s.to_bytes(48, "big")


@pytest.fixture(scope="module")
def authority() -> _TestAuthority:
    return _TestAuthority.create()


def _synthetic_claims(authority: _TestAuthority, evidence: bytes, ocsp: Any, rim: Any) -> Claims:
    result = verify_nvidia_evidence(evidence, AT, ocsp=ocsp, rim=rim, trusted_root=authority.root)
    return nvidia_claims(result, EvidenceHash(hashlib.sha256(evidence).digest()))


def _synthetic(authority: _TestAuthority, **kwargs: Any) -> bytes:
    nonce = gpu_nonce_for(BINDING.report_data())
    return create_nvidia_evidence(
        _synthetic_report(authority, nonce, **kwargs), authority.chain_pem
    )


@dataclass
class _Responder:
    """SYNTHETIC OCSP responder: signs with the test CA (or `signing_key` to forge)."""

    authority: _TestAuthority
    revoked_serials: set[int] = field(default_factory=set)
    this_update: datetime = AT - timedelta(days=1)
    next_update: datetime = AT + timedelta(days=6)
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None
    signer_encoding: ocsp.OCSPResponderEncoding = ocsp.OCSPResponderEncoding.NAME
    answer_for: x509.Certificate | None = None
    requests: list[bytes] = field(default_factory=list)

    def ocsp_response(self, request_der: bytes) -> bytes:
        self.requests.append(request_der)
        request = ocsp.load_der_ocsp_request(request_der)
        cert = next(
            c
            for c in (self.authority.leaf, self.authority.intermediate)
            if c.serial_number == request.serial_number
        )
        issuer, issuer_key = self.authority.issuer_of(cert)
        revoked = cert.serial_number in self.revoked_serials
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=self.answer_for or cert,
            issuer=issuer,
            algorithm=hashes.SHA384(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=self.this_update,
            next_update=self.next_update,
            revocation_time=AT - timedelta(days=30) if revoked else None,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
        )
        signer_cert, signer_key = self.signer or (issuer, issuer_key)
        builder = builder.responder_id(self.signer_encoding, signer_cert)
        if self.signer is not None:
            builder = builder.certificates([signer_cert])
        return builder.sign(signer_key, hashes.SHA384()).public_bytes(Encoding.DER)


@dataclass
class _Manifests:
    """SYNTHETIC stand-in for a RIM source that has already checked the RIM signatures."""

    driver: tuple[GoldenMeasurement, ...]
    vbios: tuple[GoldenMeasurement, ...]
    asked: list[str] = field(default_factory=list)

    def reference_manifest(self, rim_id: str, at: datetime) -> ReferenceManifest:
        self.asked.append(rim_id)
        golden = self.driver if "DRIVER" in rim_id else self.vbios
        return ReferenceManifest(rim_id, golden)


def _matching_manifests(measurements: list[bytes] = MEASUREMENTS) -> _Manifests:
    golden = [GoldenMeasurement(i, (b"\x00" * 48, m)) for i, m in enumerate(measurements)]
    return _Manifests(driver=tuple(golden[:4]), vbios=tuple(golden[4:]))


def test_synthetic_evidence_bound_to_cpu_is_accepted(authority: _TestAuthority) -> None:
    manifests = _matching_manifests()
    claims = _synthetic_claims(authority, _synthetic(authority), _Responder(authority), manifests)
    assert claims.revocation_checked and claims.reference_mismatches == ()
    assert manifests.asked == [
        "NV_GPU_DRIVER_GH100_570.86.15",
        "NV_GPU_VBIOS_1010_0210_886_9600600001",
    ]
    verdict = evaluate(Policy(), claims, AT, binding=BINDING)
    assert verdict.accepted, verdict.reasons
    check_gpu_bound_to_cpu(claims.report_data, BINDING.report_data())


def test_gpu_nonce_for_other_cpu_evidence_is_rejected(authority: _TestAuthority) -> None:
    claims = _synthetic_claims(
        authority, _synthetic(authority), _Responder(authority), _matching_manifests()
    )
    other = KeyBinding(**{**BINDING.__dict__, "provider": "0x" + "dd" * 20})
    verdict = evaluate(Policy(), claims, AT, binding=other)
    assert not verdict.accepted
    assert any("report data" in r for r in verdict.reasons)
    with pytest.raises(BindingMismatch):
        check_gpu_bound_to_cpu(claims.report_data, other.report_data())
    # The CPU report data itself is not a valid GPU nonce: the tag separates the two.
    with pytest.raises(BindingMismatch):
        check_gpu_bound_to_cpu(BINDING.report_data()[:32], BINDING.report_data())


def test_spdm_1_2_signs_the_prefixed_transcript_hash(authority: _TestAuthority) -> None:
    verify_nvidia_evidence(_synthetic(authority, version=0x12), AT, trusted_root=authority.root)
    with pytest.raises(SignatureInvalid):
        verify_nvidia_evidence(
            _synthetic(authority, version=0x12, sign_as_version=0x11),
            AT,
            trusted_root=authority.root,
        )


def test_synthetic_evidence_needs_its_test_root(authority: _TestAuthority) -> None:
    with pytest.raises(CertificateInvalid):
        verify_nvidia_evidence(_synthetic(authority), AT)


def test_revoked_gpu_certificate_is_rejected(authority: _TestAuthority) -> None:
    for serial in (authority.leaf.serial_number, authority.intermediate.serial_number):
        with pytest.raises(CertificateInvalid, match="revoked"):
            verify_nvidia_evidence(
                _synthetic(authority),
                AT,
                ocsp=_Responder(authority, revoked_serials={serial}),
                trusted_root=authority.root,
            )


def test_bad_ocsp_responses_are_rejected(authority: _TestAuthority) -> None:
    evidence = _synthetic(authority)
    cases: list[tuple[_Responder, type[ProofError]]] = [
        (_Responder(authority, next_update=AT - timedelta(seconds=1)), CollateralError),
        (_Responder(authority, this_update=AT + timedelta(hours=1)), CollateralError),
        (_Responder(authority, answer_for=authority.root), CollateralError),
        (_Responder(authority, signer=_forged_intermediate(authority)), SignatureInvalid),
        (
            _Responder(
                authority,
                signer=_forged_intermediate(authority),
                signer_encoding=ocsp.OCSPResponderEncoding.HASH,
            ),
            CertificateInvalid,
        ),
        (_Responder(authority, signer=_delegate(authority, ocsp_usage=False)), CertificateInvalid),
    ]
    for responder, error in cases:
        with pytest.raises(error):
            verify_nvidia_evidence(evidence, AT, ocsp=responder, trusted_root=authority.root)

    class _Garbage:
        def ocsp_response(self, request_der: bytes) -> bytes:
            return b"\x30\x03\x0a\x01\x01"  # a bare "malformedRequest" status

    with pytest.raises(CollateralError):
        verify_nvidia_evidence(evidence, AT, ocsp=_Garbage(), trusted_root=authority.root)


def _forged_intermediate(
    authority: _TestAuthority,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Same name as the test ICA, another key: what a forger of OCSP answers would hold."""
    key = ec.generate_private_key(ec.SECP384R1())
    return _certificate("TEST GPU ICA", key, "TEST GPU ICA", key, ca=True, serial=9), key


def _delegate(
    authority: _TestAuthority, *, ocsp_usage: bool
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """An OCSP responder certificate issued by the test root (the leaf's issuer is the ICA, so
    only the ICA's own status can be answered by a root delegate)."""
    key = ec.generate_private_key(ec.SECP384R1())
    usages = [
        x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING
        if ocsp_usage
        else x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("TEST GPU OCSP"))
        .issuer_name(authority.root.subject)
        .public_key(key.public_key())
        .serial_number(10)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2030, 1, 1, tzinfo=UTC))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(authority.root_key, hashes.SHA384())
    )
    return cert, key


@pytest.fixture(scope="module")
def ocsp_answers(authority: _TestAuthority) -> list[bytes]:
    """A response signed by the CA itself, and one by a delegate that carries its certificate."""
    direct = _Responder(authority).ocsp_response(
        ocsp_request_for(authority.leaf, authority.intermediate)
    )
    delegated = _Responder(authority, signer=_delegate(authority, ocsp_usage=True)).ocsp_response(
        ocsp_request_for(authority.intermediate, authority.root)
    )
    return [direct, delegated]


@pytest.mark.fuzz
@given(delegated=st.booleans(), changes=edits())
def test_damaged_ocsp_response_raises_only_proof_errors(
    authority: _TestAuthority, ocsp_answers: list[bytes], delegated: bool, changes: list[Edit]
) -> None:
    cert, issuer = (
        (authority.intermediate, authority.root)
        if delegated
        else (authority.leaf, authority.intermediate)
    )
    response = damage(ocsp_answers[delegated], changes)
    with contextlib.suppress(ProofError):
        check_ocsp_response(response, cert, issuer, AT, "GPU certificate")


def test_delegated_ocsp_signer_is_accepted_with_ocsp_usage(authority: _TestAuthority) -> None:
    for usage, accepted in ((True, True), (False, False)):
        responder = _Responder(authority, signer=_delegate(authority, ocsp_usage=usage))
        response = responder.ocsp_response(ocsp_request_for(authority.intermediate, authority.root))
        if accepted:
            check_ocsp_response(response, authority.intermediate, authority.root, AT, "ICA")
        else:
            with pytest.raises(CertificateInvalid, match="OCSP signing"):
                check_ocsp_response(response, authority.intermediate, authority.root, AT, "ICA")


def test_ocsp_asks_for_every_certificate_below_the_root(authority: _TestAuthority) -> None:
    responder = _Responder(authority)
    result = verify_nvidia_evidence(
        _synthetic(authority), AT, ocsp=responder, trusted_root=authority.root
    )
    asked = [ocsp.load_der_ocsp_request(r).serial_number for r in responder.requests]
    assert asked == [authority.leaf.serial_number, authority.intermediate.serial_number]
    assert result.valid_until == responder.next_update


def test_reference_mismatch_is_reported_and_refused(authority: _TestAuthority) -> None:
    changed = list(MEASUREMENTS)
    changed[5] = b"\xee" * 48
    claims = _synthetic_claims(
        authority,
        _synthetic(authority, measurements=changed),
        _Responder(authority),
        _matching_manifests(),
    )
    assert claims.reference_mismatches == (6,)
    verdict = evaluate(Policy(), claims, AT, binding=BINDING)
    assert verdict.reasons == ("GPU measurement blocks 6 differ from NVIDIA's manifests",)


def test_manifest_comparison_rules() -> None:
    runtime = {i + 1: m for i, m in enumerate(MEASUREMENTS)}
    inactive = ReferenceManifest("a", (GoldenMeasurement(0, (b"x",), active=False),))
    assert compare_with_manifests(runtime, (inactive,)).mismatched_blocks == ()
    missing = ReferenceManifest("b", (GoldenMeasurement(40, (b"x",)),))
    assert compare_with_manifests(runtime, (missing,)).mismatched_blocks == (41,)
    assert (
        compare_with_manifests(runtime, (missing,), skip_blocks=frozenset({41})).mismatched_blocks
        == ()
    )
    with pytest.raises(CollateralError):
        compare_with_manifests(runtime, (missing, missing))


def test_http_ocsp_responder_posts_and_refuses_errors() -> None:
    seen: list[tuple[str, bytes, dict[str, str]]] = []

    def post(url: str, body: bytes, headers: Any) -> HttpResponse:
        seen.append((url, body, dict(headers)))
        return HttpResponse(503, {}, b"")

    with pytest.raises(CollateralError):
        HttpOcspResponder(post).ocsp_response(b"\x30\x00")
    assert seen == [
        (
            "https://ocsp.ndis.nvidia.com/",
            b"\x30\x00",
            {"Content-Type": "application/ocsp-request"},
        )
    ]
