"""Verify NVIDIA H100/H200 GPU evidence: the device certificate chain to NVIDIA's pinned Device
Identity root, and the attestation key's signature over the SPDM GET_MEASUREMENTS transcript.

The evidence travels as one JSON document whose `arch`, `evidence` and `certificate` keys are
those of one GPU entry of NVIDIA's attestation SDK (`collect_gpu_evidence`), plus a format tag:

    {"format": "capacloud-nvidia-gpu-evidence", "version": 1, "arch": "HOPPER",
     "evidence": "<base64 request || response>", "certificate": "<base64 PEM chain, leaf first>"}

Signature (DSP0274): SPDM 1.1 signs the transcript itself (ECDSA P-384 over SHA-384 of
request || unsigned response), which is what Hopper firmware emits. SPDM 1.2 signs
combined_spdm_prefix || zero pad || "responder-measurements signing" || SHA-384(transcript);
no real 1.2 GPU report was available to check whether NVIDIA also folds the VCA messages into
that transcript, so a 1.2 report that does fails closed here.

Online parts are optional inputs: OCSP for every certificate below the root, and reference
manifests (RIMs) for the measurements. Without them the claims say so
(`revocation_checked=False`, `reference_mismatches=None`) and the policy decides.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from proofs.bounded_json import nested_too_deep
from proofs.certificates import (
    check_issued_by,
    check_valid_at,
    ec_public_key,
    load_pem_chain,
    require_utc,
    same_certificate,
    verify_ecdsa_raw,
)
from proofs.errors import BindingMismatch, CertificateInvalid, MalformedEvidence
from proofs.nvidia_collateral import (
    OcspResponder,
    OcspStatus,
    ReferenceComparison,
    RimSource,
    check_ocsp_response,
    compare_with_manifests,
    ocsp_request_for,
)
from proofs.nvidia_spdm import (
    ALL_MEASUREMENTS,
    SPDM_VERSION_1_1,
    NvidiaAttestationReport,
    parse_attestation_report,
)
from proofs.pinned_roots import NVIDIA_DEVICE_IDENTITY_ROOT_PEM

NVIDIA_EVIDENCE_FORMAT = "capacloud-nvidia-gpu-evidence"
NVIDIA_EVIDENCE_VERSION = 1
SUPPORTED_ARCHITECTURES = ("HOPPER",)
MAX_CHAIN_LENGTH = 8
MEASUREMENTS_SIGNING_CONTEXT = b"responder-measurements signing"
_PINNED_NVIDIA_ROOT = x509.load_pem_x509_certificate(NVIDIA_DEVICE_IDENTITY_ROOT_PEM)
# DER of the sha384 OBJECT IDENTIFIER; in a DICE FWID it precedes the 48-byte digest.
_SHA384_OID_DER = bytes.fromhex("0609608648016503040202")


@dataclass(frozen=True)
class NvidiaEvidence:
    arch: str
    report_bytes: bytes
    chain_pem: bytes


@dataclass(frozen=True)
class NvidiaVerification:
    evidence: NvidiaEvidence
    report: NvidiaAttestationReport
    device_id: str
    """The attestation certificate's serialNumber attribute: unique per GPU."""
    measurement_digest: bytes
    ocsp: tuple[OcspStatus, ...] | None
    reference: ReferenceComparison | None
    valid_until: datetime


def looks_like_nvidia_evidence(data: bytes) -> bool:
    # The tag cannot occur inside the base64 fields ('-' is not a base64 character).
    return data.lstrip()[:1] == b"{" and NVIDIA_EVIDENCE_FORMAT.encode() in data


def create_nvidia_evidence(report: bytes, chain_pem: bytes, arch: str = "HOPPER") -> bytes:
    document = {
        "format": NVIDIA_EVIDENCE_FORMAT,
        "version": NVIDIA_EVIDENCE_VERSION,
        "arch": arch,
        "evidence": base64.b64encode(report).decode(),
        "certificate": base64.b64encode(chain_pem).decode(),
    }
    return json.dumps(document).encode()


def _base64_field(document: dict[str, object], key: str) -> bytes:
    value = document.get(key)
    if not isinstance(value, str):
        raise MalformedEvidence(f"GPU evidence: {key} missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedEvidence(f"GPU evidence: {key} is not base64") from exc


def parse_nvidia_evidence(data: bytes) -> NvidiaEvidence:
    try:
        text = bytes(data).decode("utf-8")
        if nested_too_deep(text):
            raise ValueError("nested too deep")
        document = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MalformedEvidence(f"GPU evidence is not JSON: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != NVIDIA_EVIDENCE_FORMAT:
        raise MalformedEvidence("not NVIDIA GPU evidence")
    if document.get("version") != NVIDIA_EVIDENCE_VERSION:
        raise MalformedEvidence(f"GPU evidence version {document.get('version')!r}")
    arch = document.get("arch")
    if not isinstance(arch, str) or arch.upper() not in SUPPORTED_ARCHITECTURES:
        raise MalformedEvidence(f"GPU architecture {arch!r} (supported: Hopper)")
    return NvidiaEvidence(
        arch=arch.upper(),
        report_bytes=_base64_field(document, "evidence"),
        chain_pem=_base64_field(document, "certificate"),
    )


def _check_device_chain(
    chain: list[x509.Certificate], root: x509.Certificate, at: datetime
) -> list[x509.Certificate]:
    """Leaf first, each issued by the next, ending at (or directly under) the pinned root.
    Returns the chain with the root appended exactly once."""
    if len(chain) > MAX_CHAIN_LENGTH:
        raise CertificateInvalid(f"GPU certificate chain of {len(chain)} certificates")
    if same_certificate(chain[-1], root):
        chain = chain[:-1]
    if not chain:
        raise CertificateInvalid("GPU certificate chain holds only the root")
    full = [*chain, root]
    for position, (cert, issuer) in enumerate(itertools.pairwise(full)):
        what = (
            "GPU attestation certificate" if position == 0 else f"GPU chain certificate {position}"
        )
        check_issued_by(cert, issuer, what)
        try:
            is_ca = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise CertificateInvalid(f"{what}: its issuer is not a CA certificate")
    check_issued_by(root, root, "NVIDIA device root (self-signed)")
    for position, cert in enumerate(full):
        check_valid_at(
            cert, at, "GPU attestation certificate" if position == 0 else cert_name(cert)
        )
    return full


def cert_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()


def _signed_message(report: NvidiaAttestationReport) -> bytes:
    if report.spdm_version == SPDM_VERSION_1_1:
        return report.transcript
    version = f"{report.spdm_version >> 4}.{report.spdm_version & 0xF}"
    prefix = f"dmtf-spdm-v{version}.*".encode() * 4
    context = bytes(36 - len(MEASUREMENTS_SIGNING_CONTEXT)) + MEASUREMENTS_SIGNING_CONTEXT
    return prefix + context + hashlib.sha384(report.transcript).digest()


def certified_fwids(cert: x509.Certificate) -> list[bytes]:
    """SHA-384 digests that follow the sha384 OID in the DICE extensions of the certificate."""
    found = []
    for extension in cert.extensions:
        value = extension.value
        if not isinstance(value, x509.UnrecognizedExtension):
            continue
        raw = value.value
        start = raw.find(_SHA384_OID_DER)
        while start >= 0:
            digest_at = start + len(_SHA384_OID_DER)
            if raw[digest_at : digest_at + 2] == b"\x04\x30":
                found.append(raw[digest_at + 2 : digest_at + 50])
            start = raw.find(_SHA384_OID_DER, digest_at)
    return found


def _device_id(leaf: x509.Certificate) -> str:
    serials = leaf.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    return str(serials[0].value) if serials else format(leaf.serial_number, "x")


def verify_nvidia_evidence(
    data: bytes,
    at: datetime,
    *,
    ocsp: OcspResponder | None = None,
    rim: RimSource | None = None,
    trusted_root: x509.Certificate | None = None,
) -> NvidiaVerification:
    """Genuine GPU evidence at `at`, or a ProofError with the reason.

    `trusted_root` replaces the pinned NVIDIA root only for test hierarchies."""
    at = require_utc(at)
    evidence = parse_nvidia_evidence(data)
    report = parse_attestation_report(evidence.report_bytes)
    if not report.request.signature_requested:
        raise MalformedEvidence("GET_MEASUREMENTS did not ask for a signature")
    if report.request.param2 != ALL_MEASUREMENTS:
        raise MalformedEvidence("GET_MEASUREMENTS did not ask for all measurement blocks")
    if report.response.slot_id != report.request.slot_id:
        raise MalformedEvidence("MEASUREMENTS answered from another certificate slot")

    chain = load_pem_chain(evidence.chain_pem, "GPU certificate chain")
    full_chain = _check_device_chain(chain, trusted_root or _PINNED_NVIDIA_ROOT, at)
    leaf = full_chain[0]
    key = ec_public_key(leaf, "GPU attestation certificate")
    if not isinstance(key.curve, ec.SECP384R1):
        raise CertificateInvalid("GPU attestation key is not on P-384")
    verify_ecdsa_raw(
        key, report.response.signature, _signed_message(report), hashes.SHA384(), "GPU report"
    )

    reported_fwid = report.fwid
    certified = certified_fwids(leaf)
    if reported_fwid is not None and certified and reported_fwid not in certified:
        raise BindingMismatch("GPU report FWID differs from the one its certificate certifies")

    expiries = [cert.not_valid_after_utc for cert in full_chain]
    statuses: tuple[OcspStatus, ...] | None = None
    if ocsp is not None:
        checked = []
        for cert, issuer in itertools.pairwise(full_chain):
            response = ocsp.ocsp_response(ocsp_request_for(cert, issuer))
            checked.append(check_ocsp_response(response, cert, issuer, at, cert_name(cert)))
        statuses = tuple(checked)
        expiries.extend(s.next_update for s in statuses if s.next_update is not None)

    reference = None
    if rim is not None:
        manifests = (
            rim.reference_manifest(report.driver_rim_id, at),
            rim.reference_manifest(report.vbios_rim_id, at),
        )
        reference = compare_with_manifests(
            {block.index: block.value for block in report.response.blocks},
            manifests,
            # nvtrust ignores measurement 35 (RIM index 35, block 36) when NVDEC0 is disabled.
            skip_blocks=frozenset({36}) if report.nvdec0_disabled else frozenset(),
        )

    return NvidiaVerification(
        evidence=evidence,
        report=report,
        device_id=_device_id(leaf),
        measurement_digest=hashlib.sha384(report.response.measurement_record).digest(),
        ocsp=statuses,
        reference=reference,
        valid_until=min(expiries),
    )
