"""Evidence handed over without collateral: sim needs none, Intel quotes are verified
crypto-only (quote, QE report, QE report data, PCK chain), AMD and CCA evidence cannot be."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from eth_account import Account

from proofs.collateral_source import NoCollateral
from proofs.errors import CollateralError
from proofs.evidence import verify_evidence
from proofs.sim import create_sim_evidence

CASES = Path(__file__).resolve().parents[2] / "data" / "attestation"


def test_sim_evidence_needs_no_collateral() -> None:
    now = datetime.now(UTC)
    evidence = create_sim_evidence(bytes(Account.create().key), b"\x11" * 32, b"\x22" * 64, now)
    verified = verify_evidence(evidence, NoCollateral(), now)
    assert verified.claims.insecure


def test_intel_quote_without_collateral_is_verified_crypto_only() -> None:
    quote = (CASES / "sgx-1" / "quote.bin").read_bytes()
    claims = verify_evidence(quote, NoCollateral(), datetime(2025, 8, 15, tzinfo=UTC)).claims
    assert claims.tcb_status is None and claims.tcb_status_name is None
    assert claims.advisory_ids is None and not claims.revocation_checked


def test_amd_report_without_collateral_is_refused_with_a_reason() -> None:
    report = (CASES / "snp-2" / "report.bin").read_bytes()
    with pytest.raises(CollateralError, match="no collateral source configured for AMD"):
        verify_evidence(report, NoCollateral(), datetime(2023, 1, 25, tzinfo=UTC))
