"""SEV-SNP: the guest policy bits by name and the reported TCB floor are the policy's to judge;
revocation is checked against the product's KDS CRL when collateral carries one and reported
unchecked otherwise (which the default policy refuses).

Nobody outside AMD can sign a CRL under the real ARK, so the revocation tests re-issue the
case's real VCEK public key under a SYNTHETIC ARK/ASK and pass those as the roots; the report
signature stays AMD's and is still checked."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from proofs.claims import EvidenceHash
from proofs.collateral_directory import CollateralDirectory
from proofs.errors import CertificateInvalid, PolicyInvalid, SignatureInvalid
from proofs.evidence import _snp_claims, verify_evidence
from proofs.pinned_roots import AmdProduct, AmdRootChain
from proofs.policy import Policy, evaluate
from proofs.sev_snp_verify import AmdCollateral, verify_snp_report

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TESTDATA = Path(__file__).resolve().parents[2] / "data" / "attestation"


def _at(name: str) -> datetime:
    case = json.loads((TESTDATA / name / "case.json").read_text())
    return datetime.fromisoformat(case["verify_at"].replace("Z", "+00:00"))


def _claims(name: str):  # type: ignore[no-untyped-def]
    return verify_evidence(
        (TESTDATA / name / "report.bin").read_bytes(),
        CollateralDirectory(TESTDATA / name),
        _at(name),
    ).claims


def test_policy_bits_and_reported_tcb_are_claims() -> None:
    snp1, snp2 = _claims("snp-1"), _claims("snp-2")
    assert snp1.attributes == ("SMT", "DEBUG") and snp1.debug
    assert snp2.attributes == ("SMT",)
    assert snp2.platform == "Milan"
    assert dict(snp2.tcb_svns or ()) == {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}


def test_the_tcb_floor_is_judged_per_product_and_component() -> None:
    claims = replace(_claims("snp-2"), revocation_checked=True)
    at = _at("snp-2")
    exact = Policy.from_mapping(
        {"snp_min_tcb": {"milan": {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}}}
    )
    assert evaluate(exact, claims, at).accepted
    above = Policy.from_mapping({"snp_min_tcb": {"Milan": {"snp": 9, "microcode": 200}}})
    assert evaluate(above, claims, at).reasons == (
        "SEV-SNP Milan reported TCB below the floor: snp 8 < 9, microcode 115 < 200",
    )
    other_product = Policy.from_mapping({"snp_min_tcb": {"genoa": {"snp": 99}}})
    assert evaluate(other_product, claims, at).accepted
    # Turin's FMC: a floor on a component the report does not carry is not met.
    fmc = Policy.from_mapping({"snp_min_tcb": {"milan": {"fmc": 1}}})
    assert "fmc None < 1" in evaluate(fmc, claims, at).reasons[0]


@pytest.mark.parametrize(
    "raw",
    [
        {"snp_min_tcb": {"rome": {"snp": 1}}},
        {"snp_min_tcb": {"milan": {"firmware": 1}}},
        {"snp_min_tcb": {"milan": {"snp": 256}}},
        {"snp_min_tcb": {"milan": {"snp": True}}},
        {"snp_min_tcb": {"milan": [1]}},
        {"snp_min_tcb": [1]},
        {"forbidden_attributes": {"sev-snp": "SMT"}},
        {"forbidden_attributes": {"vax": ["SMT"]}},
        {"required_attributes": ["SEPT_VE_DISABLE"]},
    ],
)
def test_malformed_snp_and_attribute_policies_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(PolicyInvalid):
        Policy.from_mapping(raw)


def test_policy_bits_are_judged_by_the_policy() -> None:
    claims = replace(_claims("snp-2"), revocation_checked=True)
    at = _at("snp-2")
    assert evaluate(Policy(), claims, at).accepted
    no_smt = Policy.from_mapping({"forbidden_attributes": {"sev-snp": ["smt"]}})
    assert evaluate(no_smt, claims, at).reasons == ("sev-snp attributes SMT are set",)
    migratable = replace(claims, attributes=("SMT", "MIGRATE_MA"))
    assert evaluate(Policy(), migratable, at).reasons == ("sev-snp attributes MIGRATE_MA are set",)
    reserved = replace(claims, attributes=("SMT", "RESERVED_40"))
    assert evaluate(Policy(), reserved, at).reasons == (
        "reserved attribute bits are set: RESERVED_40",
    )
    assert evaluate(Policy(allow_reserved_attributes=True), reserved, at).accepted


def test_without_a_crl_revocation_is_reported_unchecked_and_refused() -> None:
    claims = _claims("snp-2")
    assert not claims.revocation_checked
    assert evaluate(Policy(), claims, _at("snp-2")).reasons == (
        "AMD certificate revocation was not checked (no KDS CRL)",
    )
    assert evaluate(Policy(require_revocation_check=False), claims, _at("snp-2")).accepted


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CapaCloud TEST (synthetic)"),
        ]
    )


class _AmdTestRoots:
    def __init__(self, name: str) -> None:
        self.at = _at(name)
        vcek = x509.load_der_x509_certificate((TESTDATA / name / "vcek.der").read_bytes())
        self.ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        start, end = self.at - timedelta(days=365), self.at + timedelta(days=3650)

        def ca(
            subject: str,
            issuer: str,
            key: rsa.RSAPrivateKey,
            signer: rsa.RSAPrivateKey,
            serial: int,
        ) -> x509.Certificate:
            return (
                x509.CertificateBuilder()
                .subject_name(_name(subject))
                .issuer_name(_name(issuer))
                .public_key(key.public_key())
                .serial_number(serial)
                .not_valid_before(start)
                .not_valid_after(end)
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(signer, hashes.SHA384())
            )

        self.ark = ca("TEST ARK-Milan", "TEST ARK-Milan", self.ark_key, self.ark_key, 1)
        self.ask = ca("TEST SEV-Milan", "TEST ARK-Milan", self.ask_key, self.ark_key, 2)
        builder = (
            x509.CertificateBuilder()
            .subject_name(vcek.subject)
            .issuer_name(self.ask.subject)
            .public_key(vcek.public_key())  # type: ignore[arg-type]
            .serial_number(3)
            .not_valid_before(vcek.not_valid_before_utc)
            .not_valid_after(vcek.not_valid_after_utc)
        )
        for extension in vcek.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        self.vcek = builder.sign(self.ask_key, hashes.SHA384())
        chain = self.ask.public_bytes(Encoding.PEM) + self.ark.public_bytes(Encoding.PEM)
        self.roots = {AmdProduct.MILAN: AmdRootChain(chain, chain)}

    def crl(self, revoked: list[int], key: rsa.RSAPrivateKey | None = None) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ark.subject)
            .last_update(self.at - timedelta(days=1))
            .next_update(self.at + timedelta(days=7))
        )
        for serial in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(self.at - timedelta(days=2))
                .build()
            )
        return builder.sign(key or self.ark_key, hashes.SHA384()).public_bytes(Encoding.DER)

    def verify(self, crl: bytes | None):  # type: ignore[no-untyped-def]
        return verify_snp_report(
            (TESTDATA / "snp-2" / "report.bin").read_bytes(),
            AmdCollateral(self.vcek.public_bytes(Encoding.DER), crl_der=crl),
            self.at,
            roots=self.roots,
        )


@pytest.fixture(scope="module")
def amd() -> _AmdTestRoots:
    return _AmdTestRoots("snp-2")


def test_a_crl_signed_by_the_ark_is_checked(amd: _AmdTestRoots) -> None:
    assert not amd.verify(None).revocation_checked
    checked = amd.verify(amd.crl([99]))
    assert checked.revocation_checked
    assert checked.valid_until == amd.at + timedelta(days=7)
    claims = _snp_claims(checked, EvidenceHash(bytes(32)))
    assert claims.revocation_checked and evaluate(Policy(), claims, amd.at).accepted


def test_a_crl_listing_the_ask_or_the_vcek_is_rejected(amd: _AmdTestRoots) -> None:
    with pytest.raises(CertificateInvalid, match="ASK is revoked"):
        amd.verify(amd.crl([amd.ask.serial_number]))
    with pytest.raises(CertificateInvalid, match="VCEK is revoked"):
        amd.verify(amd.crl([amd.vcek.serial_number]))


def test_a_crl_not_signed_by_the_ark_is_rejected(amd: _AmdTestRoots) -> None:
    forged = amd.crl([], key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    with pytest.raises(SignatureInvalid, match="CRL"):
        amd.verify(forged)
