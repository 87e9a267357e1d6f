"""Intel mutation classes that need certificates or CRLs we can sign: a PCK chain swapped for
another case's, a chain under a foreign root, forged CRLs, and a CRL listing the PCK.

Nobody outside Intel can sign a CRL that revokes a real PCK. So the revocation tests re-issue
each case's real public keys (PCK leaf, PCK CA name, TCB signing key) under a SYNTHETIC test
root and pass that root to `verify_quote_independently(trusted_root=...)`. Every Intel
signature in the case stays real and is still checked (quote, QE report, QE report data,
TCB info, QE identity); only certificates and CRLs are ours. A control run without the
revocation gives the case's expected TCB status, so the harness is faithful.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import struct
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from fuzz_inputs import Edit, damage_pem_chain, edits
from hypothesis import given
from hypothesis import strategies as st

from proofs.collateral_directory import CollateralDirectory
from proofs.errors import CertificateInvalid, ProofError, SignatureInvalid
from proofs.evidence import verify_evidence
from proofs.intel_collateral import IntelCollateral
from proofs.intel_quote import IntelQuote, parse_intel_quote
from proofs.intel_verify import verify_intel_quote, verify_quote_independently

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TESTDATA = Path(__file__).resolve().parents[2] / "data" / "attestation"
INTEL_CASES = sorted(p.parent.name for p in TESTDATA.glob("*/quote.bin"))


def _case(name: str) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((TESTDATA / name / "case.json").read_text())
    return case


def _at(name: str) -> datetime:
    return datetime.fromisoformat(_case(name)["verify_at"].replace("Z", "+00:00"))


def _quote_bytes(name: str) -> bytes:
    return (TESTDATA / name / "quote.bin").read_bytes()


def _collateral(name: str) -> IntelCollateral:
    return CollateralDirectory(TESTDATA / name).intel_collateral(None, _at(name))  # type: ignore[arg-type]


def _pck_chain(quote: bytes) -> list[x509.Certificate]:
    pem = parse_intel_quote(quote).certification.pck_chain_pem.rstrip(b"\x00")
    return x509.load_pem_x509_certificates(pem + b"\n")


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


def _with_pck_chain(quote_bytes: bytes, chain_pem: bytes) -> bytes:
    """The quote with another certification chain; the quote signature does not cover it."""
    quote: IntelQuote = parse_intel_quote(quote_bytes)
    certification = quote.certification
    inner = (
        certification.qe_report.raw
        + certification.qe_report_signature
        + struct.pack("<H", len(certification.qe_auth_data))
        + certification.qe_auth_data
        + struct.pack("<HI", 5, len(chain_pem))
        + chain_pem
    )
    if quote.header.version != 3:
        inner = struct.pack("<HI", 6, len(inner)) + inner
    signature_data = quote.signature + quote.attestation_key + inner
    return quote.signed_bytes + struct.pack("<I", len(signature_data)) + signature_data


@pytest.mark.parametrize("name", INTEL_CASES)
def test_rebuilt_quote_with_its_own_chain_still_verifies(name: str) -> None:
    data = _quote_bytes(name)
    rebuilt = _with_pck_chain(data, _pem(*_pck_chain(data)))
    verify_evidence(rebuilt, CollateralDirectory(TESTDATA / name), _at(name))


@pytest.mark.parametrize("name", INTEL_CASES)
def test_pck_chain_of_another_case_is_rejected(name: str) -> None:
    # A genuine Intel chain of another platform: the QE report was signed by another PCK key.
    donor = INTEL_CASES[(INTEL_CASES.index(name) + 1) % len(INTEL_CASES)]
    swapped = _with_pck_chain(_quote_bytes(name), _pem(*_pck_chain(_quote_bytes(donor))))
    # SignatureInvalid, or CertificateInvalid where the donor's PCK is not valid at this time.
    with pytest.raises((SignatureInvalid, CertificateInvalid)):
        verify_evidence(swapped, CollateralDirectory(TESTDATA / name), _at(name))


@pytest.mark.parametrize("name", INTEL_CASES)
def test_pck_chain_under_a_foreign_root_or_shortened_is_rejected(name: str) -> None:
    hierarchy = _TestHierarchy.reissue(name)
    directory = CollateralDirectory(TESTDATA / name)
    foreign = _with_pck_chain(_quote_bytes(name), hierarchy.pck_chain_pem)
    with pytest.raises(CertificateInvalid, match="pinned Intel SGX Root CA"):
        verify_evidence(foreign, directory, _at(name))
    leaf, ca, _ = _pck_chain(_quote_bytes(name))
    # Leaving out the root is allowed (both engines chain the CA to the pinned root) ...
    verify_evidence(_with_pck_chain(_quote_bytes(name), _pem(leaf, ca)), directory, _at(name))
    # ... leaving out the CA is not.
    with pytest.raises(CertificateInvalid):
        verify_evidence(_with_pck_chain(_quote_bytes(name), _pem(leaf)), directory, _at(name))
    with pytest.raises(CertificateInvalid):
        verify_evidence(_with_pck_chain(_quote_bytes(name), _pem(leaf, leaf)), directory, _at(name))


@pytest.mark.fuzz
@given(name=st.sampled_from(INTEL_CASES), index=st.integers(0, 2), changes=edits())
def test_damaged_pck_certificate_raises_only_proof_errors(
    name: str, index: int, changes: list[Edit]
) -> None:
    """The quote signature does not cover the PCK chain: damage in its DER reaches both
    engines' certificate decoders (and the FMSPC scan) from any peer."""
    chain_pem = parse_intel_quote(_quote_bytes(name)).certification.pck_chain_pem.rstrip(b"\x00")
    damaged = _with_pck_chain(_quote_bytes(name), damage_pem_chain(chain_pem, index, changes))
    with contextlib.suppress(ProofError):
        verify_evidence(damaged, CollateralDirectory(TESTDATA / name), _at(name))


def _test_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CapaCloud TEST (synthetic)"),
        ]
    )


def _reissue(
    cert: x509.Certificate, issuer: x509.Name, issuer_key: ec.EllipticCurvePrivateKey
) -> x509.Certificate:
    """Same subject, public key, validity and extensions (SGX TCB included), our signature.
    Intel serials use 160 bits, one more than a builder accepts: the shifted serial is ours."""
    serial = cert.serial_number
    builder = (
        x509.CertificateBuilder()
        .subject_name(cert.subject)
        .issuer_name(issuer)
        .public_key(cert.public_key())  # type: ignore[arg-type]
        .serial_number(serial >> 1 if serial.bit_length() > 159 else serial)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for extension in cert.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclasses.dataclass
class _TestHierarchy:
    """SYNTHETIC root; the case's PCK leaf / PCK CA / TCB signing keys re-issued under it."""

    name: str
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    pck_leaf: x509.Certificate
    pck_ca: x509.Certificate
    pck_ca_key: ec.EllipticCurvePrivateKey
    tcb_signing: x509.Certificate

    @classmethod
    def reissue(cls, name: str) -> _TestHierarchy:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _test_name("TEST Intel-shaped root")
        root = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_key.public_key())
            .serial_number(1)
            .not_valid_before(datetime(2018, 1, 1).astimezone())
            .not_valid_after(datetime(2049, 1, 1).astimezone())
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .sign(root_key, hashes.SHA256())
        )
        leaf, ca, _ = _pck_chain(_quote_bytes(name))
        ca_key = ec.generate_private_key(ec.SECP256R1())
        reissued_ca = (
            x509.CertificateBuilder()
            .subject_name(ca.subject)
            .issuer_name(root_name)
            .public_key(ca_key.public_key())
            .serial_number(2)
            .not_valid_before(ca.not_valid_before_utc)
            .not_valid_after(ca.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root_key, hashes.SHA256())
        )
        signing_pem = (TESTDATA / name / "tcb_signing_chain.pem").read_bytes()
        signing = x509.load_pem_x509_certificates(signing_pem)[0]
        return cls(
            name=name,
            root=root,
            root_key=root_key,
            pck_leaf=_reissue(leaf, ca.subject, ca_key),
            pck_ca=reissued_ca,
            pck_ca_key=ca_key,
            tcb_signing=_reissue(signing, root_name, root_key),
        )

    @property
    def pck_chain_pem(self) -> bytes:
        return _pem(self.pck_leaf, self.pck_ca, self.root)

    def crl(
        self, issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey, revoked: list[int]
    ) -> bytes:
        at = _at(self.name)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(at - timedelta(days=1))
            .next_update(at + timedelta(days=29))
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(at - timedelta(days=2))
                .build()
            )
        return builder.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)

    def verify(self, *, revoked_pcks: list[int], revoked_cas: list[int]) -> Any:
        quote = _with_pck_chain(_quote_bytes(self.name), self.pck_chain_pem)
        collateral = dataclasses.replace(
            _collateral(self.name),
            tcb_signing_chain_pem=_pem(self.tcb_signing, self.root),
            root_ca_crl=self.crl(self.root, self.root_key, revoked_cas),
            pck_crl=self.crl(self.pck_ca, self.pck_ca_key, revoked_pcks),
            pck_crl_issuer_chain_pem=_pem(self.pck_ca, self.root),
        )
        return verify_quote_independently(quote, collateral, _at(self.name), trusted_root=self.root)


@pytest.mark.parametrize("name", INTEL_CASES)
def test_crl_listing_the_pck_is_rejected(name: str) -> None:
    hierarchy = _TestHierarchy.reissue(name)
    unrelated = hierarchy.pck_leaf.serial_number + 1
    control = hierarchy.verify(revoked_pcks=[unrelated], revoked_cas=[])
    assert control.tcb.status == _case(name)["expected"]["tcb_status"]
    assert control.pck_crl_checked
    with pytest.raises(CertificateInvalid, match="PCK leaf certificate is revoked"):
        hierarchy.verify(revoked_pcks=[unrelated, hierarchy.pck_leaf.serial_number], revoked_cas=[])
    with pytest.raises(CertificateInvalid, match="PCK CA is revoked"):
        hierarchy.verify(revoked_pcks=[], revoked_cas=[hierarchy.pck_ca.serial_number])


@pytest.mark.parametrize(
    "name", [n for n in INTEL_CASES if (TESTDATA / n / "pck_crl.der").is_file()]
)
def test_forged_pck_crl_is_rejected_by_both_engines(name: str) -> None:
    # Intel's PCK CA name, a key that is not Intel's: an empty one would hide a revocation.
    real_crl = x509.load_der_x509_crl((TESTDATA / name / "pck_crl.der").read_bytes())
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(real_crl.issuer)
        .last_update(real_crl.last_update_utc)
        .next_update(real_crl.next_update_utc)
        .sign(ec.generate_private_key(ec.SECP256R1()), hashes.SHA256())
        .public_bytes(Encoding.DER)
    )
    collateral = dataclasses.replace(_collateral(name), pck_crl=forged)
    with pytest.raises(SignatureInvalid):
        verify_quote_independently(_quote_bytes(name), collateral, _at(name))
    with pytest.raises(ProofError):
        verify_intel_quote(_quote_bytes(name), collateral, _at(name))
