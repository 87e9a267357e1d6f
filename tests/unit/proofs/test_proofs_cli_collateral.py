"""`capa attest verify` on every case folder, and the collateral cache / fetcher without network."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from node.cli.attest import attest_app
from proofs.collateral_directory import CollateralDirectory
from proofs.collateral_source import (
    CachedCollateralSource,
    HttpCollateralFetcher,
    HttpResponse,
    IntelCollateralRequest,
)
from proofs.errors import CollateralError
from proofs.nvidia_verify import create_nvidia_evidence

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TESTDATA = Path(__file__).resolve().parents[2] / "data" / "attestation"
CASES = sorted(p.name for p in TESTDATA.iterdir() if (p / "case.json").is_file())

app = typer.Typer()
app.add_typer(attest_app, name="attest")


@pytest.mark.parametrize("name", CASES)
def test_cli_verifies_case_folder(name: str) -> None:
    result = CliRunner().invoke(app, ["attest", "verify", str(TESTDATA / name), "--json"])
    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout)
    expected = json.loads((TESTDATA / name / "case.json").read_text())["expected"]
    assert output["tcb_status"] == expected["tcb_status"]
    assert output["debug"] == expected["debug"]
    assert output["advisory_ids"] == expected["advisory_ids"]
    if expected["debug"]:
        assert output["accepted"] is False


def test_cli_fails_with_one_line_reason(tmp_path: Path) -> None:
    data = bytearray((TESTDATA / "snp-2" / "report.bin").read_bytes())
    data[0x2A0] ^= 1
    evidence = tmp_path / "report.bin"
    evidence.write_bytes(bytes(data))
    result = CliRunner().invoke(
        app,
        [
            "attest",
            "verify",
            str(evidence),
            "--collateral",
            str(TESTDATA / "snp-2"),
            "--at",
            "2023-01-25T00:00:00Z",
        ],
    )
    assert result.exit_code == 1
    assert "NOT verified" in result.output and "Traceback" not in result.output
    expired = CliRunner().invoke(
        app, ["attest", "verify", str(TESTDATA / "sgx-1"), "--at", "2030-01-01T00:00:00Z"]
    )
    assert expired.exit_code == 1


@pytest.mark.parametrize(
    "policy",
    [
        "[]",
        '{"allow_debug": "false"}',
        '{"measurement_allowlist": [1]}',
        '{"max_evidence_age_s": [60]}',
        '{"min_tcb_status": "Best"}',
        '{"accepted_kinds": "sgx"}',
        "{not json",
    ],
)
def test_cli_refuses_a_malformed_policy_file_with_one_line_reason(
    tmp_path: Path, policy: str
) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(policy)
    result = CliRunner().invoke(
        app, ["attest", "verify", str(TESTDATA / "sgx-1"), "--policy", str(policy_file)]
    )
    assert result.exit_code == 2, result.output
    assert "bad option" in result.output and result.exception is not None
    assert isinstance(result.exception, SystemExit), result.exception


class _CountingSource:
    def __init__(self) -> None:
        self.calls = 0
        self.directory = CollateralDirectory(TESTDATA / "sgx-1")

    def intel_collateral(self, request: IntelCollateralRequest, at: datetime) -> object:
        self.calls += 1
        return self.directory.intel_collateral(request, at)

    def amd_collateral(self, request: object, at: datetime) -> object:
        raise AssertionError


def test_cache_keeps_collateral_until_expiry() -> None:
    inner = _CountingSource()
    cache = CachedCollateralSource(inner)  # type: ignore[arg-type]
    request = IntelCollateralRequest("00606a000000", "platform", tdx=False)
    cache.intel_collateral(request, datetime(2025, 8, 15, 6, tzinfo=UTC))
    cache.intel_collateral(request, datetime(2025, 8, 20, tzinfo=UTC))
    assert inner.calls == 1
    cache.intel_collateral(request, datetime(2025, 10, 1, tzinfo=UTC))
    assert inner.calls == 2


def test_http_fetcher_builds_pcs_urls_and_refuses_errors() -> None:
    seen: list[str] = []

    def get(url: str) -> HttpResponse:
        seen.append(url)
        return HttpResponse(404, {}, b"")

    fetcher = HttpCollateralFetcher(get)
    with pytest.raises(CollateralError):
        fetcher.intel_collateral(
            IntelCollateralRequest("90c06f000000", "platform", tdx=True), datetime.now(UTC)
        )
    assert seen == [
        "https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=90c06f000000"
    ]


def test_cli_verifies_real_gpu_evidence_and_reports_unchecked_parts(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parent / "data" / "nvidia"
    evidence = tmp_path / "gpu_evidence.json"
    evidence.write_bytes(
        create_nvidia_evidence(
            bytes.fromhex((data / "hopperAttestationReport.txt").read_text()),
            (data / "hopperCertChain.txt").read_bytes(),
        )
    )
    result = CliRunner().invoke(
        app, ["attest", "verify", str(tmp_path), "--at", "2024-01-01T00:00:00Z", "--json"]
    )
    assert result.exit_code == 0, result.output
    output = json.loads(result.stdout)
    assert (output["kind"], output["version"], output["accepted"]) == ("nvidia-cc", 11, False)
    assert any("OCSP" in r for r in output["reasons"])
    before = CliRunner().invoke(
        app, ["attest", "verify", str(evidence), "--at", "2021-01-01T00:00:00Z"]
    )
    assert before.exit_code == 1 and "NOT verified" in before.output
