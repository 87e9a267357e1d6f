"""Sim evidence is verifiable, marked INSECURE, and refused unless a policy allows it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from proofs.binding import KeyBinding
from proofs.claims import TeeKind
from proofs.errors import MalformedEvidence, SignatureInvalid
from proofs.evidence import detect_kind, verify_evidence
from proofs.intel_quote import looks_like_intel_quote
from proofs.policy import Policy, evaluate
from proofs.sim import create_sim_evidence

HOST_KEY = bytes.fromhex("11" * 32)
AT = datetime(2025, 1, 1, tzinfo=UTC)
BINDING = KeyBinding(
    chain_id=31337,
    verifier="0x" + "aa" * 20,
    provider="0x" + "bb" * 20,
    enclave_key="0x" + "cc" * 20,
    hpke_public_key=b"\x04" * 32,
    nonce=b"\x07" * 32,
    expires_at=int((AT + timedelta(hours=1)).timestamp()),
)


class _NoCollateral:
    def intel_collateral(self, request: object, at: datetime) -> object:
        raise AssertionError("sim evidence needs no collateral")

    amd_collateral = intel_collateral


def _sim(report_data: bytes | None = None) -> bytes:
    return create_sim_evidence(HOST_KEY, b"\x42" * 32, report_data or BINDING.report_data(), AT)


def test_sim_verifies_but_is_insecure_and_refused_by_default() -> None:
    data = _sim()
    assert detect_kind(data) == TeeKind.SIM
    assert not looks_like_intel_quote(data)
    claims = verify_evidence(data, _NoCollateral(), AT).claims  # type: ignore[arg-type]
    assert claims.insecure and claims.kind == TeeKind.SIM
    refused = evaluate(Policy(), claims, AT)
    assert not refused.accepted
    assert any("INSECURE" in r for r in refused.reasons)
    allowed = evaluate(Policy(allow_sim=True), claims, AT, binding=BINDING)
    assert allowed.accepted, allowed.reasons


def test_sim_tampering_is_rejected() -> None:
    document = json.loads(_sim())
    document["measurement"] = "43" * 32
    with pytest.raises(SignatureInvalid):
        verify_evidence(json.dumps(document).encode(), _NoCollateral(), AT)  # type: ignore[arg-type]
    document = json.loads(_sim())
    document["insecure"] = False
    with pytest.raises(MalformedEvidence):
        verify_evidence(json.dumps(document).encode(), _NoCollateral(), AT)  # type: ignore[arg-type]


def test_forged_report_data_and_expired_binding_are_rejected() -> None:
    forged = verify_evidence(_sim(b"\x01" * 64), _NoCollateral(), AT).claims  # type: ignore[arg-type]
    verdict = evaluate(Policy(allow_sim=True), forged, AT, binding=BINDING)
    assert not verdict.accepted
    assert any("report data" in r for r in verdict.reasons)
    genuine = verify_evidence(_sim(), _NoCollateral(), AT).claims  # type: ignore[arg-type]
    late = evaluate(Policy(allow_sim=True), genuine, AT + timedelta(hours=2), binding=BINDING)
    assert any("expired" in r for r in late.reasons)


def test_policy_age_allowlist_and_file_form() -> None:
    claims = verify_evidence(_sim(), _NoCollateral(), AT).claims  # type: ignore[arg-type]
    policy = Policy.from_mapping(
        {"allow_sim": True, "max_evidence_age_s": 60, "measurement_allowlist": ["00" * 32]}
    )
    verdict = evaluate(policy, claims, AT + timedelta(minutes=5))
    assert len(verdict.reasons) == 2
    with pytest.raises(ValueError):
        Policy.from_mapping({"allow_everything": True})


def test_binding_layout() -> None:
    data = BINDING.report_data()
    assert len(data) == 64 and data[32:] == bytes(32)
    other = KeyBinding(**{**BINDING.__dict__, "nonce": b"\x08" * 32})
    assert other.report_data() != data
