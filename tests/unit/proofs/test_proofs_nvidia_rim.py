"""NVIDIA RIMs: a real signed RIM from NVIDIA's nvtrust verifies under the pinned RIM root and
every tampering is rejected; GPU evidence takes its reference measurements from signed RIMs
only. The end-to-end comparison with the real H100 report uses SYNTHETIC RIMs signed by a test
CA built here (no real RIM for that GPU's driver and VBIOS is public in the sources)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import methods
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from proofs.collateral_directory import CollateralDirectory
from proofs.collateral_source import HttpResponse
from proofs.errors import CertificateInvalid, CollateralError, SignatureInvalid
from proofs.evidence import verify_evidence
from proofs.nvidia_rim import SignedRimSource, rim_service_fetch, verify_rim
from proofs.nvidia_spdm import parse_attestation_report
from proofs.nvidia_verify import create_nvidia_evidence
from proofs.policy import Policy, evaluate

DATA = Path(__file__).resolve().parent / "data" / "nvidia"
RIM_ID = "NV_GPU_VBIOS_1010_0200_882_96005E0001"
RIM = (DATA / "1010_0200_882_96005E0001_PROD.swidtag").read_bytes()
RIM_AT = datetime(2024, 6, 1, tzinfo=UTC)  # its L4 signer is valid 2023-06-23 .. 2025-06-22
REPORT = bytes.fromhex((DATA / "hopperAttestationReport.txt").read_text())
CHAIN = (DATA / "hopperCertChain.txt").read_bytes()
GPU_AT = datetime(2024, 1, 1, tzinfo=UTC)
SWID = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
DSIG = "http://www.w3.org/2000/09/xmldsig#"


def test_a_real_nvidia_rim_verifies_under_the_pinned_root() -> None:
    verified = verify_rim(RIM, RIM_ID, RIM_AT)
    assert verified.version == "96.00.5E.00.01"
    assert "HCC RIM L4 Signer" in verified.signer
    manifest = verified.manifest
    assert manifest.rim_id == RIM_ID and len(manifest.measurements) == 64
    first = manifest.measurements[1]
    assert first.index == 1 and first.alternatives[0].hex().startswith("c3f65ef79a19c029")
    assert not verified.revocation_checked
    assert verified.valid_until == datetime(2025, 6, 22, 9, 30, 33, tzinfo=UTC)


def test_a_changed_measurement_breaks_the_signature() -> None:
    tampered = RIM.replace(b"c3f65ef79a19c029868cd7ce54b10e44", b"c3f65ef79a19c029868cd7ce54b10e45")
    with pytest.raises(SignatureInvalid, match="signature does not verify"):
        verify_rim(tampered, RIM_ID, RIM_AT)


def test_an_added_measurement_breaks_the_signature() -> None:
    document = etree.fromstring(RIM)
    payload = document.find(f"{{{SWID}}}Payload")
    assert payload is not None
    extra = etree.SubElement(payload, f"{{{SWID}}}Resource")
    extra.attrib.update({"type": "Measurement", "index": "70", "alternatives": "1"})
    with pytest.raises(SignatureInvalid):
        verify_rim(etree.tostring(document), RIM_ID, RIM_AT)


def test_a_flipped_signature_value_is_rejected() -> None:
    document = etree.fromstring(RIM)
    value = document.find(f".//{{{DSIG}}}SignatureValue")
    assert value is not None and value.text is not None
    raw = bytearray(base64.b64decode(value.text))
    raw[10] ^= 1
    value.text = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureInvalid):
        verify_rim(etree.tostring(document), RIM_ID, RIM_AT)


def test_the_chain_must_reach_the_pinned_root_at_the_verification_time() -> None:
    document = etree.fromstring(RIM)
    certs = document.findall(f".//{{{DSIG}}}X509Certificate")
    certs[1].getparent().remove(certs[1])  # the L3 CA: the leaf no longer chains
    with pytest.raises(CertificateInvalid):
        verify_rim(etree.tostring(document), RIM_ID, RIM_AT)
    with pytest.raises(CertificateInvalid, match=r"expired|not valid"):
        verify_rim(RIM, RIM_ID, datetime(2025, 7, 1, tzinfo=UTC))
    foreign, _ = _test_ca()
    with pytest.raises(CertificateInvalid):
        verify_rim(RIM, RIM_ID, RIM_AT, trusted_root=foreign)


def test_a_rim_of_another_version_than_asked_is_refused() -> None:
    with pytest.raises(CollateralError, match=r"manifest of version .96\.00\.5E\.00\.01."):
        verify_rim(RIM, "NV_GPU_VBIOS_1010_0200_882_96009F0001", RIM_AT)


def test_not_xml_and_oversized_are_collateral_errors() -> None:
    with pytest.raises(CollateralError, match="not XML"):
        verify_rim(b"<SoftwareIdentity", RIM_ID, RIM_AT)
    with pytest.raises(CollateralError, match="exceeds"):
        verify_rim(b" " * (3 * 1024 * 1024), RIM_ID, RIM_AT)


def test_the_rim_service_answer_is_unwrapped_and_verified() -> None:
    answer = json.dumps({"id": RIM_ID, "rim": base64.b64encode(RIM).decode()}).encode()
    asked: list[str] = []

    def get(url: str) -> HttpResponse:
        asked.append(url)
        return HttpResponse(200, {}, answer)

    source = SignedRimSource(rim_service_fetch(get, "http://127.0.0.1:9/v1/rim/"))
    assert len(source.reference_manifest(RIM_ID, RIM_AT).measurements) == 64
    source.reference_manifest(RIM_ID, RIM_AT)
    assert asked == [f"http://127.0.0.1:9/v1/rim/{RIM_ID}"]  # verified once, then kept
    failing = rim_service_fetch(lambda url: HttpResponse(200, {}, b"{}"), "http://x/")
    with pytest.raises(CollateralError, match="not a RIM service answer"):
        failing(RIM_ID)


# --- SYNTHETIC: signed RIMs for the real H100 report, under a test CA ----------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CapaCloud TEST (synthetic)"),
        ]
    )


def _test_ca() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("TEST RIM root"))
        .issuer_name(_name("TEST RIM root"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA384())
    )
    return cert, key


def _signed_rim(
    version: str,
    golden: dict[int, bytes],
    root: x509.Certificate,
    root_key: ec.EllipticCurvePrivateKey,
) -> bytes:
    key = ec.generate_private_key(ec.SECP384R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("TEST RIM signer"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(GPU_AT - timedelta(days=30))
        .not_valid_after(GPU_AT + timedelta(days=30))
        .sign(root_key, hashes.SHA384())
    )
    identity = etree.Element(f"{{{SWID}}}SoftwareIdentity", nsmap={None: SWID}, name="GH100")
    etree.SubElement(identity, f"{{{SWID}}}Meta", colloquialVersion=version)
    payload = etree.SubElement(identity, f"{{{SWID}}}Payload")
    for index, value in sorted(golden.items()):
        etree.SubElement(
            payload,
            f"{{{SWID}}}Resource",
            {
                "type": "Measurement",
                "index": str(index),
                "active": "True",
                "alternatives": "1",
                "{http://www.w3.org/2001/04/xmlenc#sha384}Hash0": value.hex(),
            },
        )
    signer = XMLSigner(
        method=methods.enveloped,
        signature_algorithm=SignatureMethod.ECDSA_SHA384,
        digest_algorithm=DigestAlgorithm.SHA384,
        c14n_algorithm=CanonicalizationMethod.CANONICAL_XML_1_1,
    )
    return etree.tostring(signer.sign(identity, key=key, cert=[leaf, root]))


def test_gpu_evidence_is_compared_with_signed_rims_end_to_end(tmp_path: Path) -> None:
    report = parse_attestation_report(REPORT)
    blocks = {block.index: block.value for block in report.response.blocks}
    root, root_key = _test_ca()
    driver_blocks = {i - 1: v for i, v in blocks.items() if i <= 4}
    vbios_blocks = {i - 1: v for i, v in blocks.items() if i > 4}
    rims = {
        report.driver_rim_id: _signed_rim(report.driver_version, driver_blocks, root, root_key),
        report.vbios_rim_id: _signed_rim("96.00.9F.00.01", vbios_blocks, root, root_key),
    }
    source = SignedRimSource(rims.__getitem__, trusted_root=root)
    evidence = create_nvidia_evidence(REPORT, CHAIN)
    claims = verify_evidence(evidence, None, GPU_AT, rim=source).claims  # type: ignore[arg-type]
    assert claims.reference_mismatches == ()
    reasons = evaluate(Policy(require_revocation_check=False), claims, GPU_AT).reasons
    assert reasons == ()

    changed = dict(vbios_blocks)
    changed[9] = bytes(48)
    rims[report.vbios_rim_id] = _signed_rim("96.00.9F.00.01", changed, root, root_key)
    source = SignedRimSource(rims.__getitem__, trusted_root=root)
    claims = verify_evidence(evidence, None, GPU_AT, rim=source).claims  # type: ignore[arg-type]
    assert claims.reference_mismatches == (10,)

    # An unsigned (or NVIDIA-rooted but foreign) manifest never reaches the comparison.
    with pytest.raises(CertificateInvalid):
        verify_evidence(evidence, None, GPU_AT, rim=SignedRimSource(rims.__getitem__))  # type: ignore[arg-type]


def test_the_cli_takes_rims_from_the_case_folder(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from node.cli.attest import attest_app

    app = typer.Typer()
    app.add_typer(attest_app, name="attest")
    (tmp_path / "gpu_evidence.json").write_bytes(create_nvidia_evidence(REPORT, CHAIN))
    # NVIDIA's real RIMs for this GPU's driver and VBIOS are not in the sources: the real
    # VBIOS RIM of another version stands in, and is refused for its version.
    (tmp_path / "NV_GPU_VBIOS_1010_0200_882_96009F0001.swidtag").write_bytes(RIM)
    (tmp_path / "NV_GPU_DRIVER_GH100_550.90.07.swidtag").write_bytes(RIM)
    result = CliRunner().invoke(
        app, ["attest", "verify", str(tmp_path), "--at", "2024-06-01T00:00:00Z"]
    )
    assert result.exit_code == 1
    assert "manifest of version" in result.output
    assert CollateralDirectory(tmp_path).rim("NV_GPU_DRIVER_GH100_550.90.07") == RIM
    with pytest.raises(CollateralError, match="not a file name"):
        CollateralDirectory(tmp_path).rim("../etc/passwd")
