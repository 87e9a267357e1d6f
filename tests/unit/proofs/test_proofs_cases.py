"""Every real testdata case yields its expected verdict; every mutation is rejected with a reason."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given
from hypothesis import strategies as st

from proofs import pinned_roots
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
from proofs.intel_quote import parse_intel_quote
from proofs.intel_verify import verify_intel_quote, verify_quote_independently
from proofs.policy import Policy, evaluate
from proofs.sev_snp import parse_snp_report

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TESTDATA = Path(__file__).resolve().parents[2] / "data" / "attestation"
CASES = sorted(p.name for p in TESTDATA.iterdir() if (p / "case.json").is_file())
INTEL_CASES = [c for c in CASES if (TESTDATA / c / "quote.bin").is_file()]
SNP_CASES = [c for c in CASES if (TESTDATA / c / "report.bin").is_file()]


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _case(name: str) -> dict[str, Any]:
    case: dict[str, Any] = json.loads((TESTDATA / name / "case.json").read_text())
    return case


def _evidence(name: str) -> bytes:
    folder = TESTDATA / name
    return (
        folder / ("quote.bin" if (folder / "quote.bin").is_file() else "report.bin")
    ).read_bytes()


def _verify(name: str, data: bytes | None = None, at: datetime | None = None) -> Any:
    case = _case(name)
    return verify_evidence(
        _evidence(name) if data is None else data,
        CollateralDirectory(TESTDATA / name),
        at or _time(case["verify_at"]),
    )


def _flip(data: bytes, offset: int) -> bytes:
    mutated = bytearray(data)
    mutated[offset] ^= 0x01
    return bytes(mutated)


def test_testdata_is_present() -> None:
    assert len(CASES) >= 9, TESTDATA


def _certificates(pem: bytes) -> list[bytes]:
    return [c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(pem)]


def test_pinned_roots_are_the_recorded_files() -> None:
    roots = TESTDATA / "roots"
    pairs = [(roots / "intel_sgx_root_ca.pem", pinned_roots.INTEL_SGX_ROOT_CA_PEM)]
    for product, chains in pinned_roots.AMD_ROOT_CHAINS.items():
        folder = roots / "amd" / product.value.lower()
        pairs += [(folder / "ask_ark.pem", chains.ask_ark_pem)]
        pairs += [(folder / "asvk_ark.pem", chains.asvk_ark_pem)]
    for recorded, pinned in pairs:
        assert _certificates(recorded.read_bytes()) == _certificates(pinned), recorded


@pytest.mark.parametrize("name", CASES)
def test_case_yields_expected_verdict(name: str) -> None:
    case = _case(name)
    expected = case["expected"]
    claims = _verify(name).claims
    assert expected["signature_valid"] is True
    assert claims.tcb_status_name == expected["tcb_status"]
    assert claims.debug == expected["debug"]
    advisories = expected["advisory_ids"]
    assert claims.advisory_ids == (tuple(advisories) if advisories is not None else None)
    assert claims.kind.label == case["kind"]


@pytest.mark.parametrize("name", CASES)
def test_case_fields(name: str) -> None:
    fields = _case(name)["fields"]
    data = _evidence(name)
    if name.startswith("sgx"):
        report = parse_intel_quote(data).sgx_report
        assert report.mr_enclave.hex() == fields["mrenclave"]
        assert report.mr_signer.hex() == fields["mrsigner"]
        assert (report.isv_prod_id, report.isv_svn) == (fields["isv_prod_id"], fields["isv_svn"])
        assert report.report_data.hex() == fields["report_data"]
    elif name.startswith("tdx"):
        td = parse_intel_quote(data).td_report
        for key, value in (
            ("mr_td", td.mr_td),
            ("rtmr0", td.rtmr0),
            ("rtmr1", td.rtmr1),
            ("rtmr2", td.rtmr2),
            ("rtmr3", td.rtmr3),
            ("mr_seam", td.mr_seam),
            ("td_attributes", td.td_attributes),
            ("xfam", td.xfam),
            ("report_data", td.report_data),
        ):
            assert value.hex() == fields[key], key
    else:
        snp = _verify(name).detail
        report = snp.report
        assert report.version == fields["version"]
        assert report.vmpl == fields["vmpl"]
        assert report.measurement.hex() == fields["measurement"]
        assert report.host_data.hex() == fields["host_data"]
        assert report.report_data.hex() == fields["report_data"]
        assert hex(report.policy) == fields["policy"]
        assert report.chip_id.hex() == fields["chip_id"]
        tcb = fields["reported_tcb"]
        assert hex(snp.reported_tcb.raw) == tcb["raw"]
        assert (snp.reported_tcb.bootloader, snp.reported_tcb.tee) == (tcb["bl"], tcb["tee"])
        assert (snp.reported_tcb.snp, snp.reported_tcb.microcode) == (tcb["snp"], tcb["ucode"])
        assert snp.signer.value == fields["signer"]
        assert snp.product.value == fields["product"]


@pytest.mark.parametrize("name", INTEL_CASES)
def test_independent_engine_agrees_with_expected_and_dcap_qvl(name: str) -> None:
    case = _case(name)
    at = _time(case["verify_at"])
    collateral = CollateralDirectory(TESTDATA / name).intel_collateral(None, at)  # type: ignore[arg-type]
    ours = verify_quote_independently(_evidence(name), collateral, at)
    assert ours.tcb.status == case["expected"]["tcb_status"]
    combined = verify_intel_quote(_evidence(name), collateral, at)
    if combined.engine == "dcap-qvl":
        assert (combined.tcb.status, combined.tcb.advisory_ids) == (
            ours.tcb.status,
            ours.tcb.advisory_ids,
        )


@pytest.mark.parametrize("name", CASES)
def test_production_policy(name: str) -> None:
    verdict = evaluate(Policy(), _verify(name).claims, _time(_case(name)["verify_at"]))
    if _case(name)["expected"]["debug"]:
        assert not verdict.accepted
        assert "debug mode is enabled" in verdict.reasons


def _signed_body_offset(name: str) -> int:
    # SGX: first byte of MRENCLAVE; TDX: first byte of MRTD (v5 has a 6-byte body prefix);
    # SNP: REPORT_DATA.
    if name.startswith("sgx"):
        return 48 + 64
    if name.startswith("tdxv5"):
        return 48 + 6 + 136
    if name.startswith("tdx"):
        return 48 + 136
    return 0x50


@pytest.mark.parametrize("name", CASES)
def test_flipped_body_byte_is_rejected(name: str) -> None:
    data = _flip(_evidence(name), _signed_body_offset(name))
    with pytest.raises(SignatureInvalid):
        _verify(name, data)


@pytest.mark.parametrize("name", CASES)
def test_flipped_signature_byte_is_rejected(name: str) -> None:
    data = _evidence(name)
    offset = 0x2A0 if name.startswith("snp") else len(parse_intel_quote(data).signed_bytes) + 4
    with pytest.raises(SignatureInvalid):
        _verify(name, _flip(data, offset))


@pytest.mark.parametrize("name", CASES)
def test_after_validity_window_is_rejected(name: str) -> None:
    after = _time(_case(name)["valid_window"]["not_after"]) + timedelta(seconds=1)
    with pytest.raises((CollateralError, CertificateInvalid)):
        _verify(name, at=after)


@pytest.mark.parametrize("name", CASES)
def test_before_validity_window_is_rejected(name: str) -> None:
    before = _time(_case(name)["valid_window"]["not_before"]) - timedelta(seconds=1)
    with pytest.raises((CollateralError, CertificateInvalid)):
        _verify(name, at=before)


@pytest.mark.parametrize("name", CASES)
def test_truncated_evidence_is_rejected(name: str) -> None:
    data = _evidence(name)
    # Trailing padding is unsigned and ignored, so cut into the quote itself.
    end = len(data) if name.startswith("snp") else parse_intel_quote(data).size
    for size in (0, 47, 100, end // 2, end - 1):
        with pytest.raises(ProofError):
            _verify(name, data[:size])


@pytest.mark.parametrize("name", SNP_CASES)
def test_snp_oversized_and_tcb_mismatch(name: str) -> None:
    data = _evidence(name)
    with pytest.raises(MalformedEvidence):
        parse_snp_report(data + b"\x00")
    # trustee's own negative test: REPORTED_TCB changed -> signature fails first; the binding
    # check is exercised by pairing the report with another case's VCEK below.
    with pytest.raises(SignatureInvalid):
        _verify(name, _flip(data, 0x180))


def test_snp_foreign_vcek_is_rejected() -> None:
    case = _case("snp-2")
    directory = CollateralDirectory(TESTDATA / "snp-1")
    with pytest.raises((SignatureInvalid, BindingMismatch)):
        verify_evidence(_evidence("snp-2"), directory, _time(case["verify_at"]))


def test_intel_collateral_for_other_platform_is_rejected() -> None:
    case = _case("sgx-1")
    with pytest.raises((CollateralError, CertificateInvalid, SignatureInvalid)):
        verify_evidence(
            _evidence("sgx-1"), CollateralDirectory(TESTDATA / "tdx-4"), _time(case["verify_at"])
        )


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        _verify("snp-2", at=datetime(2023, 1, 25))


@pytest.mark.fuzz
@given(st.binary(max_size=1300))
def test_parsers_raise_only_proof_errors(data: bytes) -> None:
    for parse in (parse_intel_quote, parse_snp_report):
        with contextlib.suppress(ProofError):
            parse(data)


@pytest.mark.fuzz
@given(
    name=st.sampled_from(CASES),
    position=st.floats(min_value=0, max_value=0.999),
    value=st.integers(min_value=1, max_value=255),
)
def test_random_mutation_of_signed_region_is_rejected(
    name: str, position: float, value: int
) -> None:
    data = bytearray(_evidence(name))
    is_snp = name.startswith("snp")
    signed_end = 0x2A0 if is_snp else len(parse_intel_quote(bytes(data)).signed_bytes)
    offset = int(position * signed_end)
    data[offset] ^= value
    with pytest.raises(ProofError):
        _verify(name, bytes(data))
