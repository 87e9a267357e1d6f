"""Verify a SEV-SNP report: ARK -> ASK/ASVK -> VCEK/VLEK (RSA-PSS SHA-384), the report's
ECDSA P-384 signature, REPORTED_TCB equal to the VEK's TCB extensions and, for a VCEK, CHIP_ID
equal to its hwID; every certificate valid at the verification time. Roots are the pinned ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from proofs.certificates import (
    check_crl,
    check_issued_by,
    check_not_revoked,
    check_valid_at,
    ec_public_key,
    load_crl,
    load_der_certificate,
    load_pem_chain,
    require_utc,
    same_certificate,
    verify_ecdsa_integers,
)
from proofs.errors import BindingMismatch, CertificateInvalid, CollateralError
from proofs.pinned_roots import AMD_ROOT_CHAINS, AmdProduct, AmdRootChain
from proofs.sev_snp import SnpReport, SnpSigner, SnpTcb, parse_snp_report

_AMD_OID = "1.3.6.1.4.1.3704.1"
_OID_PRODUCT_NAME = f"{_AMD_OID}.2"
_OID_HWID = f"{_AMD_OID}.4"
_TCB_OIDS = {
    "bootloader": f"{_AMD_OID}.3.1",
    "tee": f"{_AMD_OID}.3.2",
    "snp": f"{_AMD_OID}.3.3",
    "microcode": f"{_AMD_OID}.3.8",
    "fmc": f"{_AMD_OID}.3.9",
}


@dataclass(frozen=True)
class AmdCollateral:
    """The VEK certificate (DER), optionally the ASK/ASVK + ARK chain it came with, and the
    product's KDS CRL (signed by the ARK; it lists revoked ASKs/ASVKs and VEKs).

    The chain is only compared with the pinned one; trust never comes from it. Without a
    CRL the claims say revocation was not checked."""

    vek_der: bytes
    ask_ark_pem: bytes | None = None
    crl_der: bytes | None = None


@dataclass(frozen=True)
class SnpVerification:
    report: SnpReport
    product: AmdProduct
    signer: SnpSigner
    reported_tcb: SnpTcb
    valid_until: datetime
    revocation_checked: bool = False


def _extension_bytes(cert: x509.Certificate, oid: str) -> bytes | None:
    for extension in cert.extensions:
        if extension.oid.dotted_string == oid:
            value = extension.value
            if isinstance(value, x509.UnrecognizedExtension):
                return value.value
    return None


def _der_small_value(raw: bytes, what: str) -> bytes:
    """Content of a short-form DER TLV (INTEGER, IA5String): all AMD's extensions are tiny."""
    if len(raw) < 2 or raw[1] & 0x80 or len(raw) != 2 + raw[1]:
        raise CertificateInvalid(f"VEK extension {what} is not a short DER value")
    return raw[2:]


def _vek_tcb_value(cert: x509.Certificate, name: str) -> int | None:
    raw = _extension_bytes(cert, _TCB_OIDS[name])
    if raw is None:
        return None
    if raw[:1] != b"\x02":
        raise CertificateInvalid(f"VEK extension {name} is not an INTEGER")
    return int.from_bytes(_der_small_value(raw, name), "big")


def _product_of(report: SnpReport, vek: x509.Certificate) -> AmdProduct:
    from_report = report.product
    if from_report is not None:
        return from_report
    name = _extension_bytes(vek, _OID_PRODUCT_NAME)
    label = _der_small_value(name, "productName").decode("ascii", "replace") if name else ""
    if not label:
        # Older VLEKs lack productName; the issuer CN ("SEV-Milan", "SEV-VLEK-Genoa") names it.
        issuer_names = vek.issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        label = str(issuer_names[0].value).rsplit("-", 1)[-1] if issuer_names else ""
    for product in AmdProduct:
        if label.split("-")[0].lower() == product.value.lower():
            return product
    raise CertificateInvalid(f"cannot tell the AMD product of this report ({label or 'unnamed'})")


def verify_snp_report(
    report_bytes: bytes,
    collateral: AmdCollateral,
    at: datetime,
    *,
    roots: Mapping[AmdProduct, AmdRootChain] = AMD_ROOT_CHAINS,
) -> SnpVerification:
    """`roots` replaces the pinned AMD chains for test hierarchies only (a CRL revoking an
    ASK can only be signed by an ARK the test holds)."""
    at = require_utc(at)
    report = parse_snp_report(report_bytes)
    vek = load_der_certificate(collateral.vek_der, "VEK certificate")
    product = _product_of(report, vek)
    signer = report.signer

    pinned = roots[product]
    pinned_pem = pinned.asvk_ark_pem if signer == SnpSigner.VLEK else pinned.ask_ark_pem
    intermediate, ark = load_pem_chain(pinned_pem, "pinned AMD chain")
    intermediate_name = "ASVK" if signer == SnpSigner.VLEK else "ASK"
    if collateral.ask_ark_pem is not None:
        supplied = load_pem_chain(collateral.ask_ark_pem, "supplied AMD chain", CollateralError)
        if len(supplied) != 2 or not all(
            same_certificate(a, b) for a, b in zip(supplied, (intermediate, ark), strict=True)
        ):
            raise CertificateInvalid(
                f"supplied {intermediate_name}/ARK chain is not the pinned {product.value} chain"
            )

    check_issued_by(ark, ark, "ARK (self-signed)")
    check_issued_by(intermediate, ark, intermediate_name)
    check_issued_by(vek, intermediate, signer.value.upper())
    for cert, what in (
        (ark, "ARK"),
        (intermediate, intermediate_name),
        (vek, signer.value.upper()),
    ):
        check_valid_at(cert, at, what)

    verify_ecdsa_integers(
        ec_public_key(vek, signer.value.upper()),
        report.signature_r,
        report.signature_s,
        report.signed_bytes,
        hashes.SHA384(),
        "SEV-SNP report",
    )

    reported = SnpTcb.decode(report.reported_tcb_raw, product)
    for name in ("bootloader", "tee", "snp", "microcode", "fmc"):
        certified = _vek_tcb_value(vek, name)
        in_report = getattr(reported, name)
        if name == "fmc" and in_report is None:
            continue
        if certified is None:
            raise CertificateInvalid(f"VEK certificate lacks the {name} TCB extension")
        if certified != in_report:
            raise BindingMismatch(
                f"REPORTED_TCB {name} SVN {in_report} differs from the VEK's {certified}"
            )

    if signer == SnpSigner.VCEK and not report.chip_id_masked:
        hwid = _extension_bytes(vek, _OID_HWID)
        if hwid is None:
            raise CertificateInvalid("VCEK certificate lacks hwID")
        if len(hwid) == 66 and hwid[:2] == b"\x04\x40":
            hwid = hwid[2:]
        if hwid != report.chip_id:
            raise BindingMismatch("CHIP_ID differs from the VCEK's hwID")

    expiries = [vek.not_valid_after_utc, intermediate.not_valid_after_utc]
    if collateral.crl_der is not None:
        crl = load_crl(collateral.crl_der, f"AMD {product.value} CRL")
        check_crl(crl, ark, at, f"AMD {product.value} CRL")
        check_not_revoked(crl, intermediate, intermediate_name)
        check_not_revoked(crl, vek, signer.value.upper())
        if crl.next_update_utc is not None:
            expiries.append(crl.next_update_utc)
    return SnpVerification(
        report=report,
        product=product,
        signer=signer,
        reported_tcb=reported,
        valid_until=min(expiries),
        revocation_checked=collateral.crl_der is not None,
    )
