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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
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
    UnsupportedEvidence,
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
_PEM_BEGIN = b"-----BEGIN CERTIFICATE-----"
_PEM_END = b"-----END CERTIFICATE-----"
# OBJECT IDENTIFIER 1.2.840.113741.1.13.1.4 (SGX extension: FMSPC), then OCTET STRING (6).
_FMSPC_OID_DER = bytes.fromhex("060a2a864886f84d010d0104")


class DcapQvlRefusal(Enum):
    """What a dcap-qvl 0.7 error says about the quote. Only POLICY and MISSING_INPUT fall to
    our own engine, whose answer then stands; every other class is final."""

    POLICY = "a judgement about a genuine quote"
    MISSING_INPUT = "an input dcap-qvl needs and was not given, or cannot read"
    SIGNATURE = "a signature does not verify"
    CERTIFICATE = "a certificate chain or identity is not Intel's"
    COLLATERAL = "collateral malformed, mismatched or outside its validity"
    MALFORMED = "the quote does not decode"
    UNSUPPORTED = "a quote format dcap-qvl does not handle"


# Every error dcap-qvl 0.7.0's verify can raise, by a marker of its text: read from its public
# source (src/verify.rs, utils.rs, intel.rs, quote.rs) and from the strings of the shipped
# extension, which holds messages newer than that source (the TD profiling / migration /
# SERVTD_EXT refusals, the certificate time-window texts). Its message is anyhow's debug form, the outer context first and every
# cause after it, so one refusal can carry several markers: the fatal classes are looked for
# first, and a message with no known marker is fatal too (CERTIFICATE), never a fall-through.
DCAP_QVL_ERRORS: tuple[tuple[str, DcapQvlRefusal], ...] = (
    # Signatures and the QE binding.
    ("signature is invalid", DcapQvlRefusal.SIGNATURE),
    ("qe report hash mismatch", DcapQvlRefusal.SIGNATURE),
    ("invalid qe auth data length", DcapQvlRefusal.SIGNATURE),
    ("invalidsignatureforpublickey", DcapQvlRefusal.SIGNATURE),
    ("invalid key length", DcapQvlRefusal.SIGNATURE),
    # Chains and the identities of Intel's QE and TDX module (whose keys sign the quote and
    # the TD report: a QE or module that is not Intel's production one proves nothing).
    ("failed to verify certificate chain", DcapQvlRefusal.CERTIFICATE),
    ("certificate chain is too short", DcapQvlRefusal.CERTIFICATE),
    ("failed to parse pck certificate", DcapQvlRefusal.CERTIFICATE),
    ("failed to load root ca", DcapQvlRefusal.CERTIFICATE),
    ("certificate expired", DcapQvlRefusal.CERTIFICATE),
    ("qe mrsigner mismatch", DcapQvlRefusal.CERTIFICATE),
    ("qe isvprodid mismatch", DcapQvlRefusal.CERTIFICATE),
    ("qe miscselect mismatch", DcapQvlRefusal.CERTIFICATE),
    ("qe attributes mismatch", DcapQvlRefusal.CERTIFICATE),
    ("qe report validation failed", DcapQvlRefusal.CERTIFICATE),
    ("tdx module mrsigner mismatch", DcapQvlRefusal.CERTIFICATE),
    ("seamattributes", DcapQvlRefusal.CERTIFICATE),
    ("intel extension", DcapQvlRefusal.CERTIFICATE),
    ("cpusvn length mismatch", DcapQvlRefusal.CERTIFICATE),
    ("pcesvn length mismatch", DcapQvlRefusal.CERTIFICATE),
    ("failed to find pcesvn", DcapQvlRefusal.CERTIFICATE),
    ("failed to find fmspc", DcapQvlRefusal.CERTIFICATE),
    ("fmspc length mismatch", DcapQvlRefusal.CERTIFICATE),
    ("svn length mismatch", DcapQvlRefusal.CERTIFICATE),
    ("certificate not valid yet", DcapQvlRefusal.CERTIFICATE),
    ("certificate is not valid after", DcapQvlRefusal.CERTIFICATE),
    ("failed to parse certificate for time window", DcapQvlRefusal.CERTIFICATE),
    # Collateral documents.
    ("tcbinfo expired", DcapQvlRefusal.COLLATERAL),
    ("qe identity expired", DcapQvlRefusal.COLLATERAL),
    ("issue date is in the future", DcapQvlRefusal.COLLATERAL),
    ("collateral expired", DcapQvlRefusal.COLLATERAL),
    ("certificate revocation list expired", DcapQvlRefusal.COLLATERAL),
    ("failed to decode tcbinfo", DcapQvlRefusal.COLLATERAL),
    ("failed to decode qeidentity", DcapQvlRefusal.COLLATERAL),
    ("failed to parse tcb info", DcapQvlRefusal.COLLATERAL),
    ("failed to parse qe identity", DcapQvlRefusal.COLLATERAL),
    ("failed to decode tcb fmspc", DcapQvlRefusal.COLLATERAL),
    ("fmspc mismatch", DcapQvlRefusal.COLLATERAL),
    ("non-tdx tcb info", DcapQvlRefusal.COLLATERAL),
    ("non-sgx tcb info", DcapQvlRefusal.COLLATERAL),
    ("unsupported qe identity id/version", DcapQvlRefusal.COLLATERAL),
    ("missing tdxmodule", DcapQvlRefusal.COLLATERAL),
    ("component count mismatch", DcapQvlRefusal.COLLATERAL),
    ("no tcb levels found in qe identity", DcapQvlRefusal.COLLATERAL),
    ("failed to parse rfc3339", DcapQvlRefusal.COLLATERAL),
    ("crl is not valid after", DcapQvlRefusal.COLLATERAL),
    ("invalid tcb level tcb", DcapQvlRefusal.COLLATERAL),
    ("invalid tdx module tcb", DcapQvlRefusal.COLLATERAL),
    ("failed to parse qe tcb date", DcapQvlRefusal.COLLATERAL),
    ("failed to parse platform tcb date", DcapQvlRefusal.COLLATERAL),
    # The quote itself (a version it does not take is reported under "failed to decode").
    ("unsupported quote version", DcapQvlRefusal.UNSUPPORTED),
    ("unsupported body type", DcapQvlRefusal.UNSUPPORTED),
    ("unsupported dcap quote version", DcapQvlRefusal.UNSUPPORTED),
    ("unknown qe vendor id", DcapQvlRefusal.UNSUPPORTED),
    ("quote must have version", DcapQvlRefusal.UNSUPPORTED),
    ("unsupported dcap attestation key type", DcapQvlRefusal.UNSUPPORTED),
    ("unsupported tee type", DcapQvlRefusal.UNSUPPORTED),
    ("failed to decode quote", DcapQvlRefusal.MALFORMED),
    ("failed to parse quote", DcapQvlRefusal.MALFORMED),
    ("invalid body size", DcapQvlRefusal.MALFORMED),
    ("failed to decode qe report", DcapQvlRefusal.MALFORMED),
    ("failed to get signed quote scope", DcapQvlRefusal.MALFORMED),
    ("failed to get td10 report", DcapQvlRefusal.MALFORMED),
    ("failed to extract pck certificates", DcapQvlRefusal.MALFORMED),
    ("failed to decode", DcapQvlRefusal.MALFORMED),
    # Judgements about a genuine quote: reached only after every signature and chain passed
    # (TD attributes are dcap-qvl's last check), reported as facts by our engine instead.
    ("debug mode is enabled", DcapQvlRefusal.POLICY),
    ("reserved bits in td attributes", DcapQvlRefusal.POLICY),
    ("sept_ve_disable is not enabled", DcapQvlRefusal.POLICY),
    ("td profiling is enabled", DcapQvlRefusal.POLICY),
    ("td migration is enabled", DcapQvlRefusal.POLICY),
    ("servtd_ext is enabled", DcapQvlRefusal.POLICY),
    ("invalid mr service td", DcapQvlRefusal.POLICY),
    ("no matching tcb level", DcapQvlRefusal.POLICY),
    ("tcb status is invalid", DcapQvlRefusal.POLICY),
    ("below minimum required", DcapQvlRefusal.POLICY),
    ("no tdx module identity with id", DcapQvlRefusal.POLICY),
    # Inputs: a CRL dcap-qvl requires or cannot parse (our engine parses and checks it, and
    # refuses a damaged one itself), a certification data type it does not take.
    ("crl could not be parsed", DcapQvlRefusal.MISSING_INPUT),
    ("failed to parse pck crl", DcapQvlRefusal.MISSING_INPUT),
    ("failed to parse root ca crl", DcapQvlRefusal.MISSING_INPUT),
    ("invalid certificate revocation list", DcapQvlRefusal.MISSING_INPUT),
    ("unsupported cert type", DcapQvlRefusal.MISSING_INPUT),
    ("failed to parse crl", DcapQvlRefusal.MISSING_INPUT),
    ("crls required", DcapQvlRefusal.MISSING_INPUT),
    ("unsupported dcap pck cert format", DcapQvlRefusal.MISSING_INPUT),
    ("unsupported certification data type", DcapQvlRefusal.MISSING_INPUT),
    ("certification data type", DcapQvlRefusal.MISSING_INPUT),
)
_FATAL_FIRST = sorted(
    DCAP_QVL_ERRORS,
    key=lambda entry: entry[1] in (DcapQvlRefusal.POLICY, DcapQvlRefusal.MISSING_INPUT),
)


def classify_dcap_qvl_error(message: str) -> DcapQvlRefusal:
    lowered = message.lower()
    for marker, refusal in _FATAL_FIRST:
        if marker in lowered:
            return refusal
    return DcapQvlRefusal.CERTIFICATE


Engine = Literal["dcap-qvl", "capacloud"]


@dataclass(frozen=True)
class IntelVerification:
    quote: IntelQuote
    tcb: TcbEvaluation
    fmspc: bytes
    pck_crl_checked: bool
    valid_until: datetime
    engine: Engine
    crypto_only: bool = False
    """No collateral: TCB status, advisories and revocation are unknown."""


CollateralTimes = Mapping[str, datetime]
"""Per collateral file (testdata names: tcb_info.json, qe_identity.json, pck_crl.der,
root_ca_crl.der), the instant to check it at, for collateral with no common validity
instant; files not named use the verification time. The TCB signing certificate is checked
at the instants of the documents it signs, the PCK chain at the verification time."""


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
    times: CollateralTimes | None = None,
    trusted_root: x509.Certificate | None = None,
) -> IntelVerification:
    """Genuine, signed by Intel's chain, collateral valid at `at`: or a ProofError with why.

    `parsed` is `parse_intel_quote(quote_bytes)` where the caller already has it. `times`
    gives collateral files their own instants (see `CollateralTimes`). `trusted_root`
    replaces the pinned Intel root, for test hierarchies only."""
    at = require_utc(at)
    times = times or {}
    quote = parsed or parse_intel_quote(quote_bytes)

    def independently() -> IntelVerification:
        return verify_quote_independently(
            quote_bytes, collateral, at, trusted_root=trusted_root, times=times
        )

    if collateral.pck_crl is None or quote.body.debug or any(t != at for t in times.values()):
        # dcap-qvl refuses these (or has one clock only); go straight to the engine that answers.
        return independently()
    root = trusted_root or _PINNED_INTEL_ROOT
    try:
        report = _call_dcap_qvl(
            quote_bytes[: quote.size], collateral, at, root.public_bytes(serialization.Encoding.DER)
        )
    except _DcapQvlRefused as refusal:
        independent = independently()
        if not refusal.is_policy:
            raise _translate_dcap_qvl_message(refusal.message) from refusal
        return independent
    status, advisory_ids = report
    checked = _check_collateral_documents(
        quote, collateral, at, check_signatures=False, times=times
    )
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
        self.refusal = classify_dcap_qvl_error(message)
        self.is_policy = self.refusal in (DcapQvlRefusal.POLICY, DcapQvlRefusal.MISSING_INPUT)


def _call_dcap_qvl(
    quote_bytes: bytes, collateral: IntelCollateral, at: datetime, root_der: bytes
) -> tuple[str, list[str]]:
    import dcap_qvl  # imported here so parsing-only users never load the native module

    try:
        report = dcap_qvl.verify_with_root_ca(
            quote_bytes, collateral.dcap_qvl_collateral, root_der, int(at.timestamp())
        )
    except (ValueError, RuntimeError, TypeError) as exc:
        # The whole text: the outer context is the first line, the cause that decides after it.
        raise _DcapQvlRefused(
            " / ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        ) from exc
    return str(report.status), [str(a) for a in report.advisory_ids]


_REFUSAL_ERRORS: dict[DcapQvlRefusal, type[ProofError]] = {
    DcapQvlRefusal.SIGNATURE: SignatureInvalid,
    DcapQvlRefusal.CERTIFICATE: CertificateInvalid,
    DcapQvlRefusal.COLLATERAL: CollateralError,
    DcapQvlRefusal.MALFORMED: MalformedEvidence,
    DcapQvlRefusal.UNSUPPORTED: UnsupportedEvidence,
}


def _translate_dcap_qvl_message(message: str) -> ProofError:
    error = _REFUSAL_ERRORS.get(classify_dcap_qvl_error(message), CertificateInvalid)
    return error(f"dcap-qvl: {message}")


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
    times: CollateralTimes,
) -> _CheckedCollateral:
    tcb_doc, qe_doc = collateral.tcb_document, collateral.qe_document
    tcb_info, qe_identity = collateral.tcb_info, collateral.qe_identity
    expiries = [tcb_info.next_update, qe_identity.next_update]
    tcb_at = require_utc(times.get("tcb_info.json", at))
    qe_at = require_utc(times.get("qe_identity.json", at))
    for name, issued, next_update, when in (
        ("TCB info", tcb_info.issue_date, tcb_info.next_update, tcb_at),
        ("QE identity", qe_identity.issue_date, qe_identity.next_update, qe_at),
    ):
        if when < issued:
            raise CollateralError(f"{name} not yet issued at {when.isoformat()} (issued {issued})")
        if when > next_update:
            raise CollateralError(
                f"{name} expired at {when.isoformat()} (nextUpdate {next_update})"
            )
    root_crl_at = require_utc(times.get("root_ca_crl.der", at))
    pck_crl_at = require_utc(times.get("pck_crl.der", at))
    wanted_tcb_id, wanted_qe_id = ("TDX", "TD_QE") if quote.is_tdx else ("SGX", "QE")
    if tcb_info.info_id != wanted_tcb_id:
        raise CollateralError(f"TCB info is for {tcb_info.info_id}, the quote is {wanted_tcb_id}")
    if qe_identity.identity_id != wanted_qe_id:
        raise CollateralError(f"QE identity is {qe_identity.identity_id}, expected {wanted_qe_id}")
    pck_crl_checked = False
    if not check_signatures:
        # dcap-qvl 0.7 accepts a CRL before its thisUpdate (found on SGX-1 one second before
        # its PCK CRL was issued); check every CRL's window ourselves.
        for crl, what, when in (
            (collateral.root_ca_crl_parsed, "Intel root CA CRL", root_crl_at),
            (collateral.pck_crl_parsed, "PCK CRL", pck_crl_at),
        ):
            if crl is not None:
                expiries.append(_check_crl_window(crl, when, what))
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
        # At the instants of the documents it signs (the same one without collateral_times).
        for when in sorted({tcb_at, qe_at}):
            check_valid_at(signing, when, "TCB signing certificate")
        signing_key = ec_public_key(signing, "TCB signing certificate")
        verify_ecdsa_raw(
            signing_key, tcb_doc.signature, tcb_doc.signed_bytes, hashes.SHA256(), "TCB info"
        )
        verify_ecdsa_raw(
            signing_key, qe_doc.signature, qe_doc.signed_bytes, hashes.SHA256(), "QE identity"
        )
        expiries.append(signing.not_valid_after_utc)

        root_crl = collateral.root_ca_crl_parsed
        check_crl(root_crl, trusted, root_crl_at, "Intel root CA CRL")
        check_not_revoked(root_crl, pck_ca, "PCK CA")
        check_not_revoked(root_crl, signing, "TCB signing certificate")
        if root_crl.next_update_utc is not None:
            expiries.append(root_crl.next_update_utc)

        pck_crl = collateral.pck_crl_parsed
        if pck_crl is not None:
            check_crl(pck_crl, pck_ca, pck_crl_at, "PCK CRL")
            check_not_revoked(pck_crl, pck_leaf, "PCK leaf certificate")
            if pck_crl.next_update_utc is not None:
                expiries.append(pck_crl.next_update_utc)
            pck_crl_checked = True
    return _CheckedCollateral(tcb_info, qe_identity, pck_crl_checked, min(expiries))


def _check_quote_signatures(
    quote: IntelQuote, at: datetime, trusted: x509.Certificate
) -> tuple[x509.Certificate, x509.Certificate]:
    """What needs no collateral: the quote signature (attestation key), the QE report
    signature (PCK key), the QE report data binding the attestation key, the PCK chain to the
    trusted root at `at`. Returns the PCK leaf and CA."""
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
    return leaf, ca


def verify_quote_without_collateral(
    quote_bytes: bytes, at: datetime, *, trusted_root: x509.Certificate | None = None
) -> IntelVerification:
    """Crypto-only: an RA-TLS certificate's or a bare quote, with no PCS collateral.

    Everything that needs no collateral is checked (`_check_quote_signatures`); the TCB status
    and advisories are unknown (None), revocation unchecked. The policy judges that."""
    at = require_utc(at)
    quote = parse_intel_quote(quote_bytes)
    leaf, ca = _check_quote_signatures(quote, at, trusted_root or _PINNED_INTEL_ROOT)
    fmspc = platform_tcb_of_pck(leaf).fmspc
    return IntelVerification(
        quote=quote,
        tcb=TcbEvaluation(
            status=None,
            advisory_ids=None,
            platform_status=None,
            tdx_module_status=None,
            qe_status=None,
            tcb_date=None,
        ),
        fmspc=fmspc,
        pck_crl_checked=False,
        valid_until=min(leaf.not_valid_after_utc, ca.not_valid_after_utc),
        engine="capacloud",
        crypto_only=True,
    )


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
    times: CollateralTimes | None = None,
) -> IntelVerification:
    """Our own DCAP verification; reports debug, TCB status and revocation, refuses nothing.

    `trusted_root` replaces the pinned Intel root only for test hierarchies (a CRL revoking a
    PCK can only be signed by a CA the test holds)."""
    at = require_utc(at)
    trusted = trusted_root or _PINNED_INTEL_ROOT
    quote = parse_intel_quote(quote_bytes)
    leaf, ca = _check_quote_signatures(quote, at, trusted)
    checked = _check_collateral_documents(
        quote,
        collateral,
        at,
        check_signatures=True,
        pck_ca=ca,
        pck_leaf=leaf,
        trusted=trusted,
        times=times or {},
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
        quote.certification.qe_report,
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
