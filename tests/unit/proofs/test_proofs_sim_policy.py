"""Sim evidence is verifiable, marked INSECURE, and refused unless a policy allows it."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fuzz_inputs import Edit, damage, edits, json_values
from hypothesis import example, given
from hypothesis import strategies as st

from proofs.binding import KeyBinding
from proofs.claims import TcbStatus, TeeKind
from proofs.errors import MalformedEvidence, PolicyInvalid, ProofError, SignatureInvalid
from proofs.evidence import detect_kind, verify_evidence
from proofs.intel_quote import looks_like_intel_quote
from proofs.policy import POLICY_KEYS, Policy, evaluate
from proofs.sim import create_sim_evidence, verify_sim_evidence

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
    with pytest.raises(PolicyInvalid, match="allow_everything"):
        Policy.from_mapping({"allow_everything": True})


def test_policy_file_values_are_never_coerced() -> None:
    """`bool("false")` is True: a policy file must say true or false, or be refused."""
    for raw, reason in (
        ({"allow_debug": "false"}, "allow_debug must be true or false"),
        ({"allow_sim": 0}, "allow_sim must be true or false"),
        ({"rejected_advisories": "INTEL-SA-00615"}, "rejected_advisories must be a list"),
        ({"measurement_allowlist": [42]}, "measurement_allowlist must be a list of strings"),
        ({"max_evidence_age_s": "60"}, "max_evidence_age_s must be a whole number"),
        ({"max_evidence_age_s": True}, "max_evidence_age_s must be a whole number"),
        ({"min_tcb_status": "Best"}, "min_tcb_status 'Best' is not one of"),
        ({"accepted_kinds": ["sgx", "quantum"]}, "unknown TEE kind 'quantum'"),
        ([], "a policy is a JSON object"),
    ):
        with pytest.raises(PolicyInvalid, match=reason):
            Policy.from_mapping(raw)
    policy = Policy.from_mapping(
        {
            "allow_debug": False,
            "min_tcb_status": "out_of_date",
            "accepted_kinds": ["tdx"],
            "rejected_advisories": ["INTEL-SA-00615"],
        }
    )
    assert not policy.allow_debug and policy.min_tcb_status == TcbStatus.OUT_OF_DATE
    assert policy.accepted_kinds == frozenset({TeeKind.TDX})
    assert policy.rejected_advisories == frozenset({"INTEL-SA-00615"})


@pytest.mark.fuzz
@given(
    st.dictionaries(
        st.sampled_from(sorted(POLICY_KEYS)) | st.text(max_size=8), json_values, max_size=5
    )
    | json_values
)
@example({"max_evidence_age_s": 10**20})
@example({"measurement_allowlist": [1]})
def test_policy_from_any_json_raises_only_policy_errors(raw: Any) -> None:
    with contextlib.suppress(PolicyInvalid):
        Policy.from_mapping(raw)


SIM_FIELDS = [
    "format",
    "version",
    "insecure",
    "measurement",
    "report_data",
    "issued_at",
    "host_key",
    "signature",
]


def test_sim_issue_time_out_of_range_is_malformed() -> None:
    for seconds in (10**12, 10**20, 2**64):
        document = json.loads(_sim())
        document["issued_at"] = seconds
        with pytest.raises(MalformedEvidence, match="issued_at"):
            verify_sim_evidence(json.dumps(document).encode())


@pytest.mark.fuzz
@given(field=st.sampled_from(SIM_FIELDS), value=json_values)
@example(field="issued_at", value=10**20)
def test_sim_document_with_any_field_value_raises_only_proof_errors(field: str, value: Any) -> None:
    document = json.loads(_sim())
    document[field] = value
    with contextlib.suppress(ProofError):
        verify_sim_evidence(json.dumps(document).encode())


@pytest.mark.fuzz
@given(changes=edits())
def test_damaged_sim_evidence_raises_only_proof_errors(changes: list[Edit]) -> None:
    with contextlib.suppress(ProofError):
        verify_sim_evidence(damage(_sim(), changes))


def test_binding_layout() -> None:
    data = BINDING.report_data()
    assert len(data) == 64 and data[32:] == bytes(32)
    other = KeyBinding(**{**BINDING.__dict__, "nonce": b"\x08" * 32})
    assert other.report_data() != data


def test_a_policy_may_pin_the_sim_hosts_it_trusts() -> None:
    from eth_account import Account

    claims = verify_evidence(_sim(), _NoCollateral(), AT).claims  # type: ignore[arg-type]
    host = Account.from_key(HOST_KEY).address
    pinned = Policy.from_mapping({"allow_sim": True, "sim_hosts": [host.lower()]})
    assert evaluate(pinned, claims, AT, binding=BINDING).accepted
    other = Policy.from_mapping({"allow_sim": True, "sim_hosts": ["0x" + "12" * 20]})
    refused = evaluate(other, claims, AT, binding=BINDING)
    assert not refused.accepted
    assert refused.reasons == (f"sim host {host.lower()} is not one of the policy's sim_hosts",)
    for bad in (["0x12"], ["12" * 20 + "00"], "0x" + "12" * 20, ["0x" + "zz" * 20]):
        with pytest.raises(PolicyInvalid, match="sim_hosts"):
            Policy.from_mapping({"allow_sim": True, "sim_hosts": bad})
