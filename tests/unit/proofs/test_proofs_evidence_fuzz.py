"""`verify_evidence`, the one entry point for evidence from peers, fuzzed with hypothesis: real
evidence of every kind (SGX and TDX quotes with their certification data and PCK chain, SEV-SNP
reports, an H100 GPU report, sim documents), damaged anywhere, raises only ProofError
subclasses with a reason, never a library's exception."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fuzz_inputs import Edit, damage, edits
from hypothesis import given
from hypothesis import strategies as st

from proofs.collateral_directory import CollateralDirectory
from proofs.collateral_source import CollateralSource, NoCollateral
from proofs.errors import ProofError
from proofs.evidence import verify_evidence
from proofs.nvidia_verify import create_nvidia_evidence
from proofs.sim import create_sim_evidence

pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

TESTDATA = Path(__file__).resolve().parents[2] / "data" / "attestation"
NVIDIA_DATA = Path(__file__).resolve().parent / "data" / "nvidia"


@dataclass(frozen=True)
class _Evidence:
    data: bytes
    collateral: CollateralSource
    at: datetime


def _hardware_cases() -> dict[str, _Evidence]:
    cases = {}
    for folder in sorted(p for p in TESTDATA.iterdir() if (p / "case.json").is_file()):
        verify_at = json.loads((folder / "case.json").read_text())["verify_at"]
        evidence = folder / ("quote.bin" if (folder / "quote.bin").is_file() else "report.bin")
        cases[folder.name] = _Evidence(
            evidence.read_bytes(),
            CollateralDirectory(folder),
            datetime.fromisoformat(verify_at.replace("Z", "+00:00")),
        )
    return cases


SIM_AT = datetime(2025, 1, 1, tzinfo=UTC)
EVIDENCE = {
    **_hardware_cases(),
    "nvidia-h100": _Evidence(
        create_nvidia_evidence(
            bytes.fromhex((NVIDIA_DATA / "hopperAttestationReport.txt").read_text()),
            (NVIDIA_DATA / "hopperCertChain.txt").read_bytes(),
        ),
        NoCollateral(),
        datetime(2024, 1, 1, tzinfo=UTC),
    ),
    "sim": _Evidence(
        create_sim_evidence(b"\x11" * 32, b"\x42" * 32, b"\x07" * 64, SIM_AT),
        NoCollateral(),
        SIM_AT,
    ),
}


def test_every_kind_is_fuzzed_from_genuine_evidence() -> None:
    kinds = {
        name: verify_evidence(e.data, e.collateral, e.at).claims.kind.label
        for name, e in EVIDENCE.items()
    }
    assert set(kinds.values()) == {"sgx", "tdx", "sev-snp", "nvidia-cc", "sim"}, kinds


@pytest.mark.fuzz
@given(name=st.sampled_from(sorted(EVIDENCE)), changes=edits())
def test_damaged_evidence_raises_only_proof_errors(name: str, changes: list[Edit]) -> None:
    evidence = EVIDENCE[name]
    with contextlib.suppress(ProofError):
        verify_evidence(damage(evidence.data, changes), evidence.collateral, evidence.at)


@pytest.mark.fuzz
@given(
    name=st.sampled_from(sorted(EVIDENCE)),
    cut=st.integers(0, 2**16),
    tail=st.binary(max_size=64),
)
def test_genuine_prefix_with_any_tail_raises_only_proof_errors(
    name: str, cut: int, tail: bytes
) -> None:
    """A genuine header gets past kind detection, so the parsers meet what follows."""
    evidence = EVIDENCE[name]
    data = evidence.data[: cut % (len(evidence.data) + 1)] + tail
    with contextlib.suppress(ProofError):
        verify_evidence(data, evidence.collateral, evidence.at)
