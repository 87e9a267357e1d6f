"""NoCollateral serves callers that verify only sim or GPU evidence, and says so otherwise."""

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


def test_intel_quote_without_collateral_is_refused_with_a_reason() -> None:
    quote = (CASES / "sgx-1" / "quote.bin").read_bytes()
    with pytest.raises(CollateralError, match="no collateral source configured for Intel"):
        verify_evidence(quote, NoCollateral(), datetime(2025, 8, 15, tzinfo=UTC))
