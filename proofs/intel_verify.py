"""Cryptographic verification of Intel SGX / TDX quotes against PCS collateral at a given time.

Two engines, one answer:

* `dcap-qvl` (pinned 0.7.0), called with our pinned Intel root and the explicit time, is used
  when it can answer. Its `verify()` also makes policy decisions we keep apart from
  verification: it refuses debug enclaves/TDs, enforces TD attribute bits, raises on an
  unmatched TCB level instead of reporting "TCBNotSupported", and fails without a PCK CRL
  (or on a CRL it cannot parse). A genuine, correctly signed quote must still verify then:
  the verdict on debug mode, TCB status and revocation belongs to the policy.
* So every quote is also checkable by `verify_quote_independently`, our implementation with
  `cryptography` of the same checks (quote and QE report signatures, QE report data binding,
  PCK chain to the pinned root, CRLs, TCB info / QE identity signatures and validity, QVL's
  TCB evaluation). It runs whenever dcap-qvl refuses; if dcap-qvl refused for a reason that is
  not one of the policy blurs above while ours accepts, we fail closed with dcap-qvl's reason.
  Unit tests hold the two engines equal on every case dcap-qvl accepts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from proofs.certificates import (
    check_crl,
    check_issued_by,
    check_not_revoked,
    check_valid_at,
    ec_public_key,
    load_pem_chain,
    p256_public_key_from_raw,
    require_utc,
    same_certificate,
    verify_ecdsa_raw,
)
from proofs.errors import (
    CertificateInvalid,
    CollateralError,
    MalformedEvidence,
    ProofError,
    SignatureInvalid,
)
from proofs.intel_collateral import (
    IntelCollateral,
    QeIdentity,
    TcbInfo,
)
from proofs.intel_quote import IntelQuote, parse_intel_quote
from proofs.intel_tcb import PlatformTcb, TcbEvaluation, evaluate_tcb
from proofs.pinned_roots import INTEL_SGX_ROOT_CA_PEM

_SGX_EXTENSION = "1.2.840.113741.1.13.1"
_PINNED_INTEL_ROOT = x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM)
_PINNED_INTEL_ROOT_DER = _PINNED_INTEL_ROOT.public_bytes(serialization.Encoding.DER)
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"
# OBJECT IDENTIFIER 1.2.840.113741.1.13.1.4 (SGX extension: FMSPC), then OCTET STRING (6).
_FMSPC_OID_DER = bytes.fromhex("060a2a864886f84d010d0104")

# dcap-qvl refusals that are policy (or a missing input), not a verdict on authenticity.
_DCAP_QVL_POLICY_REFUSALS = (
    "debug mode",
    "no matching tcb level",
    "pck crl",
    "td attributes",
    "tdattributes",
    "attributes",
)

Engine = Literal["dcap-qvl", "capacloud"]


@dataclass(frozen=True)
class IntelVerification:
    quote: IntelQuote
    tcb: TcbEvaluation
    fmspc: bytes
    pck_crl_checked: bool
    valid_until: datetime
    engine: Engine


@dataclass(frozen=True)
class _CheckedCollateral:
    tcb_info: TcbInfo
    qe_identity: QeIdentity
    pck_crl_checked: bool
    valid_until: datetime


def verify_intel_quote(
    quote_bytes: bytes,
    collateral: IntelCollateral,
    at: datetime,
    *,
    parsed: IntelQuote | None = None,
) -> IntelVerification:
    """Genuine, signed by Intel's chain, collateral valid at `at`: or a ProofError with why.

    `parsed` is `parse_intel_quote(quote_bytes)` where the caller already has it."""
    at = require_utc(at)
    quote = parsed or parse_intel_quote(quote_bytes)
    if collateral.pck_crl is None or quote.body.debug:
        # dcap-qvl is known to refuse these; skip straight to the engine that answers.
        return verify_quote_independently(quote_bytes, collateral, at)
    try:
        report = _call_dcap_qvl(quote_bytes[: quote.size], collateral, at)
    except _DcapQvlRefused as refusal:
        independent = verify_quote_independently(quote_bytes, collateral, at)
        if not refusal.is_policy:
            raise _translate_dcap_qvl_message(refusal.message) from refusal
        return independent
    status, advisory_ids = report
    checked = _check_collateral_documents(quote, collateral, at, check_signatures=False)
    tcb = TcbEvaluation(
        status=status,
        advisory_ids=None if checked.tcb_info.version == 2 else tuple(advisory_ids),
        platform_status=status,
        tdx_module_status=None,
        qe_status="",
        tcb_date=None,
    )
    return IntelVerification(
        quote=quote,
        tcb=tcb,
        fmspc=checked.tcb_info.fmspc,
        pck_crl_checked=True,
        valid_until=checked.valid_until,
        engine="dcap-qvl",
    )


class _DcapQvlRefused(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.is_policy = any(marker in message.lower() for marker in _DCAP_QVL_POLICY_REFUSALS)


def _call_dcap_qvl(
    quote_bytes: bytes, collateral: IntelCollateral, at: datetime
) -> tuple[str, list[str]]:
    import dcap_qvl  # imported here so parsing-only users never load the native module

    try:
        report = dcap_qvl.verify_with_root_ca(
            quote_bytes, collateral.dcap_qvl_collateral, _PINNED_INTEL_ROOT_DER, int(at.timestamp())
        )
    except (ValueError, RuntimeError, TypeError) as exc:
        raise _DcapQvlRefused(str(exc).splitlines()[0]) from exc
    return str(report.status), [str(a) for a in report.advisory_ids]


def _translate_dcap_qvl_message(message: str) -> ProofError:
    lowered = message.lower()
    reason = f"dcap-qvl: {message}"
    if "signature" in lowered:
        return SignatureInvalid(reason)
    if "decode" in lowered or "parse" in lowered:
        return MalformedEvidence(reason)
    if "expired" in lowered or "future" in lowered or "tcb" in lowered or "identity" in lowered:
        return CollateralError(reason)
    return CertificateInvalid(reason)


def platform_tcb_of_pck(leaf: x509.Certificate) -> PlatformTcb:
    import dcap_qvl

    pem = leaf.public_bytes(serialization.Encoding.PEM)
    try:
        extension = dcap_qvl.parse_pck_extension_from_pem(pem)
        components = []
        for index in range(1, 17):
            value = extension.get_value(f"{_SGX_EXTENSION}.2.{index}")
            if value is None:
                raise CertificateInvalid(f"PCK certificate lacks TCB component {index}")
            components.append(int.from_bytes(bytes(value), "big"))
        return PlatformTcb(
            cpu_svn_components=tuple(components),
            pce_svn=int(extension.pce_svn),
            fmspc=bytes(extension.fmspc),
            pce_id=bytes(extension.pce_id),
        )
    except (ValueError, RuntimeError, TypeError) as exc:
        raise CertificateInvalid(f"PCK certificate SGX extension: {exc}") from exc


def pck_fmspc_and_ca(pck_chain_pem: bytes) -> tuple[bytes, str]:
    """FMSPC and "platform" / "processor" (the PCK CA that issued the leaf), read from the
    leaf's DER without verifying anything. Only a key to look collateral up: verification
    compares the verified PCK's FMSPC with the TCB info's (both engines). A byte scan, because
    loading the chain here costs more than dcap-qvl's whole verification."""
    begin = pck_chain_pem.find(_PEM_BEGIN)
    end = pck_chain_pem.find(_PEM_END, begin)
    if begin < 0 or end < 0:
        raise MalformedEvidence("PCK chain: no PEM certificate")
    try:
        body = b"".join(pck_chain_pem[begin + len(_PEM_BEGIN) : end].split())
        der = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedEvidence(f"PCK chain: leaf is not base64 ({exc})") from exc
    value_at = der.find(_FMSPC_OID_DER) + len(_FMSPC_OID_DER)
    if value_at < len(_FMSPC_OID_DER) or der[value_at : value_at + 2] != b"\x04\x06":
        raise CertificateInvalid("PCK certificate carries no FMSPC")
    fmspc = der[value_at + 2 : value_at + 8]
    return fmspc, "processor" if b"Intel SGX PCK Processor CA" in der else "platform"


def _check_pinned_root(root: x509.Certificate, trusted: x509.Certificate, what: str) -> None:
    if not same_certificate(root, trusted):
        raise CertificateInvalid(f"{what} does not end at the pinned Intel SGX Root CA")


def _check_pck_chain(
    quote: IntelQuote, at: datetime, trusted: x509.Certificate
) -> tuple[x509.Certificate, x509.Certificate]:
    chain = load_pem_chain(quote.certification.pck_chain_pem, "PCK chain")
    # The root may be left out, as dcap-qvl (webpki) allows: the CA must then be issued by it.
    if len(chain) == 3:
        _check_pinned_root(chain[2], trusted, "PCK chain")
    elif len(chain) != 2:
        raise CertificateInvalid(f"PCK chain has {len(chain)} certificates, expected 3")
    leaf, ca = chain[0], chain[1]
    check_issued_by(leaf, ca, "PCK leaf")
    check_issued_by(ca, trusted, "PCK CA")
    for cert, what in ((leaf, "PCK leaf"), (ca, "PCK CA"), (trusted, "Intel root")):
        check_valid_at(cert, at, what)
    return leaf, ca


def _check_collateral_documents(
    quote: IntelQuote,
    collateral: IntelCollateral,
    at: datetime,
    *,
    check_signatures: bool,
    pck_ca: x509.Certificate | None = None,
    pck_leaf: x509.Certificate | None = None,
    trusted: x509.Certificate = _PINNED_INTEL_ROOT,
) -> _CheckedCollateral:
    tcb_doc, qe_doc = collateral.tcb_document, collateral.qe_document
    tcb_info, qe_identity = collateral.tcb_info, collateral.qe_identity
    expiries = [tcb_info.next_update, qe_identity.next_update]
    for name, issued, next_update in (
        ("TCB info", tcb_info.issue_date, tcb_info.next_update),
        ("QE identity", qe_identity.issue_date, qe_identity.next_update),
    ):
        if at < issued:
            raise CollateralError(f"{name} not yet issued at {at.isoformat()} (issued {issued})")
        if at > next_update:
            raise CollateralError(f"{name} expired at {at.isoformat()} (nextUpdate {next_update})")
    wanted_tcb_id, wanted_qe_id = ("TDX", "TD_QE") if quote.is_tdx else ("SGX", "QE")
    if tcb_info.info_id != wanted_tcb_id:
        raise CollateralError(f"TCB info is for {tcb_info.info_id}, the quote is {wanted_tcb_id}")
    if qe_identity.identity_id != wanted_qe_id:
        raise CollateralError(f"QE identity is {qe_identity.identity_id}, expected {wanted_qe_id}")
    pck_crl_checked = False
    if not check_signatures:
        # dcap-qvl 0.7 accepts a CRL before its thisUpdate (found on SGX-1 one second before
        # its PCK CRL was issued); check every CRL's window ourselves.
        for crl, what in (
            (collateral.root_ca_crl_parsed, "Intel root CA CRL"),
            (collateral.pck_crl_parsed, "PCK CRL"),
        ):
            if crl is not None:
                expiries.append(_check_crl_window(crl, at, what))
    if check_signatures:
        if pck_ca is None or pck_leaf is None:
            raise ValueError("PCK chain needed to check collateral signatures")
        signing_chain = load_pem_chain(
            collateral.tcb_signing_chain_pem, "TCB signing chain", CollateralError
        )
        signing = signing_chain[0]
        if len(signing_chain) > 1:
            _check_pinned_root(signing_chain[-1], trusted, "TCB signing chain")
        check_issued_by(signing, trusted, "TCB signing certificate")
        check_valid_at(signing, at, "TCB signing certificate")
        signing_key = ec_public_key(signing, "TCB signing certificate")
        verify_ecdsa_raw(
            signing_key, tcb_doc.signature, tcb_doc.signed_bytes, hashes.SHA256(), "TCB info"
        )
        verify_ecdsa_raw(
            signing_key, qe_doc.signature, qe_doc.signed_bytes, hashes.SHA256(), "QE identity"
        )
        expiries.append(signing.not_valid_after_utc)

        root_crl = collateral.root_ca_crl_parsed
        check_crl(root_crl, trusted, at, "Intel root CA CRL")
        check_not_revoked(root_crl, pck_ca, "PCK CA")
        check_not_revoked(root_crl, signing, "TCB signing certificate")
        if root_crl.next_update_utc is not None:
            expiries.append(root_crl.next_update_utc)

        pck_crl = collateral.pck_crl_parsed
        if pck_crl is not None:
            check_crl(pck_crl, pck_ca, at, "PCK CRL")
            check_not_revoked(pck_crl, pck_leaf, "PCK leaf certificate")
            if pck_crl.next_update_utc is not None:
                expiries.append(pck_crl.next_update_utc)
            pck_crl_checked = True
    return _CheckedCollateral(tcb_info, qe_identity, pck_crl_checked, min(expiries))


def _check_crl_window(crl: x509.CertificateRevocationList, at: datetime, what: str) -> datetime:
    if at < crl.last_update_utc:
        raise CollateralError(f"{what} not yet valid at {at.isoformat()}")
    next_update = crl.next_update_utc
    if next_update is None:
        raise CollateralError(f"{what} has no nextUpdate")
    if at > next_update:
        raise CollateralError(f"{what} expired at {at.isoformat()} (nextUpdate {next_update})")
    return next_update


def verify_quote_independently(
    quote_bytes: bytes,
    collateral: IntelCollateral,
    at: datetime,
    *,
    trusted_root: x509.Certificate | None = None,
) -> IntelVerification:
    """Our own DCAP verification; reports debug, TCB status and revocation, refuses nothing.

    `trusted_root` replaces the pinned Intel root only for test hierarchies (a CRL revoking a
    PCK can only be signed by a CA the test holds)."""
    at = require_utc(at)
    trusted = trusted_root or _PINNED_INTEL_ROOT
    quote = parse_intel_quote(quote_bytes)

    attestation_key = p256_public_key_from_raw(quote.attestation_key, "attestation key")
    verify_ecdsa_raw(attestation_key, quote.signature, quote.signed_bytes, hashes.SHA256(), "quote")

    leaf, ca = _check_pck_chain(quote, at, trusted)
    certification = quote.certification
    verify_ecdsa_raw(
        ec_public_key(leaf, "PCK leaf"),
        certification.qe_report_signature,
        certification.qe_report.raw,
        hashes.SHA256(),
        "QE report",
    )
    expected_binding = hashlib.sha256(quote.attestation_key + certification.qe_auth_data).digest()
    if certification.qe_report.report_data != expected_binding + bytes(32):
        raise SignatureInvalid("QE report data does not bind the attestation key")

    checked = _check_collateral_documents(
        quote, collateral, at, check_signatures=True, pck_ca=ca, pck_leaf=leaf, trusted=trusted
    )
    platform = platform_tcb_of_pck(leaf)
    if platform.fmspc != checked.tcb_info.fmspc:
        raise CollateralError(
            f"TCB info is for FMSPC {checked.tcb_info.fmspc.hex()}, "
            f"the PCK certificate says {platform.fmspc.hex()}"
        )
    if platform.pce_id != checked.tcb_info.pce_id:
        raise CollateralError("TCB info PCE ID does not match the PCK certificate")
    tcb = evaluate_tcb(
        platform,
        checked.tcb_info,
        certification.qe_report,
        checked.qe_identity,
        quote.td_report if quote.is_tdx else None,
    )
    return IntelVerification(
        quote=quote,
        tcb=tcb,
        fmspc=platform.fmspc,
        pck_crl_checked=checked.pck_crl_checked,
        valid_until=min(checked.valid_until, leaf.not_valid_after_utc, ca.not_valid_after_utc),
        engine="capacloud",
    )
