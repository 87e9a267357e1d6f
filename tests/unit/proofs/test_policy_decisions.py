"""Each decision of the acceptance policy, with its exact reason, on both sides of each boundary.

Claims are built directly (the policy judges claims, not evidence), so every field the policy
reads can be set to the value under test and nothing else changes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proofs.binding import KeyBinding, gpu_nonce_for
from proofs.claims import Claims, EvidenceHash, Measurement, ReportData, TcbStatus, TeeKind
from proofs.errors import ProofError
from proofs.policy import HARDWARE_KINDS, Policy, evaluate

AT = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
MEASUREMENT = Measurement(bytes.fromhex("ab" * 32))
BINDING = KeyBinding(
    chain_id=31337,
    verifier="0x" + "aa" * 20,
    provider="0x" + "bb" * 20,
    enclave_key="0x" + "cc" * 20,
    hpke_public_key=b"\x04" * 32,
    nonce=b"\x07" * 32,
    expires_at=int((AT + timedelta(hours=1)).timestamp()),
)


def _claims(**changes: Any) -> Claims:
    """Claims every default policy accepts: up-to-date SGX, revocation checked, no debug."""
    base = Claims(
        kind=TeeKind.SGX,
        version=3,
        measurement=MEASUREMENT,
        report_data=BINDING.report_data(),
        debug=False,
        signer_ids=("00" * 32,),
        tcb_status=TcbStatus.UP_TO_DATE,
        tcb_status_name="UpToDate",
        advisory_ids=(),
        evidence_hash=EvidenceHash(bytes(32)),
        issued_at=AT,
    )
    if changes.get("kind") == TeeKind.TDX:
        # A production TD sets SEPT_VE_DISABLE, which the default policy requires.
        changes.setdefault("attributes", ("SEPT_VE_DISABLE",))
    return replace(base, **changes)


def _gpu_claims(**changes: Any) -> Claims:
    """nvidia-cc claims the default policy accepts: OCSP checked, manifests compared and equal."""
    gpu = _claims(
        kind=TeeKind.NVIDIA_CC,
        tcb_status=None,
        tcb_status_name=None,
        advisory_ids=None,
        report_data=ReportData(gpu_nonce_for(BINDING.report_data())),
        reference_mismatches=(),
    )
    return replace(gpu, **changes)


def _reasons(policy: Policy, claims: Claims, at: datetime = AT, **kwargs: Any) -> tuple[str, ...]:
    verdict = evaluate(policy, claims, at, **kwargs)
    assert verdict.accepted is (verdict.reasons == ())
    assert verdict.claims is claims
    return verdict.reasons


# --- the defaults a policy file keeps when it leaves a key out --------------------------------


def test_default_policy_is_the_secure_one() -> None:
    policy = Policy()
    assert policy.accepted_kinds == frozenset(
        {TeeKind.SGX, TeeKind.TDX, TeeKind.SEV_SNP, TeeKind.NVIDIA_CC, TeeKind.CCA}
    )
    assert policy.accepted_kinds == HARDWARE_KINDS
    assert policy.min_tcb_status is TcbStatus.SW_HARDENING_NEEDED
    assert policy.allow_debug is False
    assert policy.measurement_allowlist is None
    assert policy.max_evidence_age is None
    assert policy.allow_sim is False
    assert policy.require_revocation_check is True
    assert policy.rejected_advisories == frozenset()
    assert policy.require_reference_manifests is True


def test_empty_policy_file_keeps_every_secure_default() -> None:
    assert Policy.from_mapping({}) == Policy()


@pytest.mark.parametrize(
    ("raw", "changed"),
    [
        ({"allow_debug": True}, {"allow_debug": True}),
        ({"allow_sim": True}, {"allow_sim": True}),
        ({"require_revocation_check": False}, {"require_revocation_check": False}),
        ({"require_reference_manifests": False}, {"require_reference_manifests": False}),
        (
            {"accepted_kinds": ["sgx", " TDX "]},
            {"accepted_kinds": frozenset({TeeKind.SGX, TeeKind.TDX})},
        ),
        ({"accepted_kinds": []}, {"accepted_kinds": frozenset()}),
        ({"min_tcb_status": "up_to_date"}, {"min_tcb_status": TcbStatus.UP_TO_DATE}),
        ({"min_tcb_status": "OUT_OF_DATE"}, {"min_tcb_status": TcbStatus.OUT_OF_DATE}),
        ({"min_tcb_status": None}, {}),
        (
            {"measurement_allowlist": ["0xab01", "cd"]},
            {"measurement_allowlist": frozenset({b"\xab\x01", b"\xcd"})},
        ),
        ({"measurement_allowlist": []}, {"measurement_allowlist": frozenset()}),
        ({"max_evidence_age_s": 90}, {"max_evidence_age": timedelta(seconds=90)}),
        ({"max_evidence_age_s": 0}, {"max_evidence_age": timedelta(0)}),
        (
            {"rejected_advisories": ["INTEL-SA-00615", "INTEL-SA-00657"]},
            {"rejected_advisories": frozenset({"INTEL-SA-00615", "INTEL-SA-00657"})},
        ),
        # A list key given as null is left out; keys given their default value change nothing.
        ({"accepted_kinds": None, "measurement_allowlist": None}, {}),
        (
            {
                "allow_debug": False,
                "allow_sim": False,
                "require_revocation_check": True,
                "require_reference_manifests": True,
            },
            {},
        ),
    ],
)
def test_policy_file_changes_exactly_the_keys_it_names(
    raw: dict[str, Any], changed: dict[str, Any]
) -> None:
    assert Policy.from_mapping(raw) == replace(Policy(), **changed)


def test_policy_file_with_unknown_keys_names_them_all_sorted() -> None:
    with pytest.raises((ValueError, ProofError)) as refused:
        Policy.from_mapping({"allow_sim": True, "trust_all": True, "allow_anything": 1})
    assert str(refused.value) == "unknown policy keys: allow_anything, trust_all"


# --- kinds: sim, accepted kinds, debug ----------------------------------------------------------


def test_hardware_claims_pass_the_default_policy() -> None:
    assert _reasons(Policy(), _claims()) == ()
    tdx = _claims(kind=TeeKind.TDX, attributes=("SEPT_VE_DISABLE",))
    assert _reasons(Policy(), tdx) == ()
    assert _reasons(Policy(), _claims(kind=TeeKind.SEV_SNP, tcb_status=None)) == ()
    assert _reasons(Policy(), _gpu_claims()) == ()


def test_sim_evidence_is_refused_as_insecure_unless_allowed() -> None:
    sim = _claims(kind=TeeKind.SIM, insecure=True, tcb_status=None, tcb_status_name=None)
    assert _reasons(Policy(), sim) == ("INSECURE sim evidence is refused by this policy",)
    assert _reasons(Policy(allow_sim=True), sim) == ()


def test_insecure_flag_alone_or_sim_kind_alone_is_refused_as_insecure() -> None:
    insecure_sgx = _claims(insecure=True)
    sim_not_flagged = _claims(kind=TeeKind.SIM, tcb_status=None, tcb_status_name=None)
    reason = ("INSECURE sim evidence is refused by this policy",)
    assert _reasons(Policy(), insecure_sgx) == reason
    assert _reasons(Policy(), sim_not_flagged) == reason


def test_sim_is_judged_as_insecure_not_as_an_unaccepted_kind() -> None:
    sim = _claims(kind=TeeKind.SIM, insecure=True, tcb_status=None, tcb_status_name=None)
    only_tdx = Policy(accepted_kinds=frozenset({TeeKind.TDX}), allow_sim=True)
    assert _reasons(only_tdx, sim) == ()


def test_kind_outside_the_accepted_set_is_refused_by_label() -> None:
    only_tdx = Policy(accepted_kinds=frozenset({TeeKind.TDX}))
    assert _reasons(only_tdx, _claims()) == ("TEE kind sgx is not accepted",)
    assert _reasons(only_tdx, _claims(kind=TeeKind.TDX)) == ()


def test_debug_evidence_is_refused_unless_allowed() -> None:
    assert _reasons(Policy(), _claims(debug=True)) == ("debug mode is enabled",)
    assert _reasons(Policy(allow_debug=True), _claims(debug=True)) == ()
    assert _reasons(Policy(allow_debug=True), _claims()) == ()


# --- Intel TCB level and revocation ------------------------------------------------------------


@pytest.mark.parametrize("kind", [TeeKind.SGX, TeeKind.TDX])
def test_intel_tcb_exactly_at_the_minimum_is_accepted_one_below_is_refused(kind: TeeKind) -> None:
    at_minimum = _claims(
        kind=kind, tcb_status=TcbStatus.SW_HARDENING_NEEDED, tcb_status_name="SWHardeningNeeded"
    )
    below = _claims(
        kind=kind, tcb_status=TcbStatus.CONFIGURATION_NEEDED, tcb_status_name="ConfigurationNeeded"
    )
    assert _reasons(Policy(), at_minimum) == ()
    assert _reasons(Policy(), below) == (
        "TCB status ConfigurationNeeded is below SW_HARDENING_NEEDED",
    )
    strict = Policy(min_tcb_status=TcbStatus.UP_TO_DATE)
    assert _reasons(strict, at_minimum) == ("TCB status SWHardeningNeeded is below UP_TO_DATE",)


@pytest.mark.parametrize("kind", [TeeKind.SGX, TeeKind.TDX])
def test_intel_tcb_without_a_level_is_refused_by_its_name(kind: TeeKind) -> None:
    unmatched = _claims(kind=kind, tcb_status=None, tcb_status_name="TCBNotSupported")
    assert _reasons(Policy(), unmatched) == ("TCB status TCBNotSupported has no accepted level",)
    lenient = Policy(min_tcb_status=TcbStatus.REVOKED)
    assert _reasons(lenient, unmatched) == ("TCB status TCBNotSupported has no accepted level",)


def test_tcb_levels_are_judged_for_intel_kinds_only() -> None:
    no_level = {"tcb_status": None, "tcb_status_name": None}
    assert _reasons(Policy(), _claims(kind=TeeKind.SEV_SNP, **no_level)) == ()
    assert _reasons(Policy(), _gpu_claims(**no_level)) == ()


@pytest.mark.parametrize("kind", [TeeKind.SGX, TeeKind.TDX])
def test_intel_evidence_whose_revocation_was_not_checked_is_refused(kind: TeeKind) -> None:
    unchecked = _claims(kind=kind, revocation_checked=False)
    assert _reasons(Policy(), unchecked) == ("PCK revocation was not checked (no PCK CRL)",)
    assert _reasons(Policy(require_revocation_check=False), unchecked) == ()
    assert _reasons(Policy(require_revocation_check=False), _claims(kind=kind)) == ()


# --- NVIDIA GPU: OCSP and reference manifests -----------------------------------------------------


def test_gpu_evidence_whose_revocation_was_not_checked_is_refused() -> None:
    unchecked = _gpu_claims(revocation_checked=False)
    assert _reasons(Policy(), unchecked) == (
        "GPU certificate revocation was not checked (no OCSP)",
    )
    assert _reasons(Policy(require_revocation_check=False), unchecked) == ()


def test_gpu_measurements_differing_from_the_manifests_are_refused_by_block() -> None:
    differing = _gpu_claims(reference_mismatches=(2, 17))
    reason = ("GPU measurement blocks 2, 17 differ from NVIDIA's manifests",)
    assert _reasons(Policy(), differing) == reason
    # A mismatch found is refused even by a policy that does not require the comparison.
    assert _reasons(Policy(require_reference_manifests=False), differing) == reason


def test_gpu_measurements_never_compared_are_refused_unless_the_policy_waives_it() -> None:
    uncompared = _gpu_claims(reference_mismatches=None)
    assert _reasons(Policy(), uncompared) == (
        "GPU measurements were not compared with NVIDIA's manifests",
    )
    assert _reasons(Policy(require_reference_manifests=False), uncompared) == ()


def test_revocation_and_manifest_rules_for_the_gpu_do_not_apply_to_cpu_kinds() -> None:
    snp = _claims(kind=TeeKind.SEV_SNP, tcb_status=None, reference_mismatches=None)
    assert _reasons(Policy(), snp) == ()
    assert _reasons(Policy(), replace(snp, reference_mismatches=(1,))) == ()


# --- advisories, allowlist, age -------------------------------------------------------------------


def test_only_the_rejected_advisories_that_apply_are_named_in_order() -> None:
    policy = Policy(rejected_advisories=frozenset({"INTEL-SA-00657", "INTEL-SA-00615", "X"}))
    claims = _claims(advisory_ids=("INTEL-SA-00657", "INTEL-SA-00828", "INTEL-SA-00615"))
    assert _reasons(policy, claims) == (
        "rejected advisories apply: INTEL-SA-00615, INTEL-SA-00657",
    )
    assert _reasons(policy, _claims(advisory_ids=("INTEL-SA-00828",))) == ()
    assert _reasons(policy, _claims(advisory_ids=None)) == ()


def test_measurement_allowlist() -> None:
    other = bytes.fromhex("cd" * 32)
    assert _reasons(Policy(measurement_allowlist=frozenset({MEASUREMENT, other})), _claims()) == ()
    assert _reasons(Policy(measurement_allowlist=frozenset({other})), _claims()) == (
        f"measurement {'ab' * 32} is not allowed",
    )
    assert _reasons(Policy(measurement_allowlist=frozenset()), _claims()) == (
        f"measurement {'ab' * 32} is not allowed",
    )


def test_evidence_exactly_at_the_maximum_age_is_accepted_one_second_older_is_refused() -> None:
    policy = Policy(max_evidence_age=timedelta(seconds=60))
    assert _reasons(policy, _claims(issued_at=AT - timedelta(seconds=60))) == ()
    assert _reasons(policy, _claims(issued_at=AT - timedelta(seconds=61))) == (
        "evidence is older than 0:01:00",
    )
    # Evidence issued after `at` (clock skew) is not old.
    assert _reasons(policy, _claims(issued_at=AT + timedelta(seconds=5))) == ()


def test_evidence_without_an_issue_time_is_refused_only_when_age_is_bounded() -> None:
    assert _reasons(Policy(max_evidence_age=timedelta(seconds=60)), _claims(issued_at=None)) == (
        "evidence carries no issue time to bound its age",
    )
    assert _reasons(Policy(), _claims(issued_at=None)) == ()


# --- the key binding ------------------------------------------------------------------------------


def test_binding_holds_until_just_before_expires_at_and_not_at_it() -> None:
    expiry = BINDING.expires()
    before = expiry - timedelta(microseconds=1)
    assert _reasons(Policy(), _claims(), at=before, binding=BINDING) == ()
    assert _reasons(Policy(), _claims(), at=expiry, binding=BINDING) == (
        "key binding expired at 2025-01-01T13:00:00+00:00",
    )


def test_report_data_for_another_binding_is_refused_and_expiry_is_not_judged() -> None:
    other = replace(BINDING, nonce=b"\x08" * 32)
    reason = ("report data does not bind the expected keys, provider and nonce",)
    assert _reasons(Policy(), _claims(), binding=other) == reason
    assert _reasons(Policy(), _claims(), at=BINDING.expires(), binding=other) == reason


def test_gpu_evidence_is_bound_through_the_nonce_derived_from_the_cpu_binding() -> None:
    assert _reasons(Policy(), _gpu_claims(), binding=BINDING) == ()
    raw_cpu_data = _gpu_claims(report_data=BINDING.report_data())
    assert _reasons(Policy(), raw_cpu_data, binding=BINDING) == (
        "report data does not bind the expected keys, provider and nonce",
    )
    # CPU evidence carrying the GPU nonce is not bound either.
    assert _reasons(Policy(), _claims(report_data=_gpu_claims().report_data), binding=BINDING) == (
        "report data does not bind the expected keys, provider and nonce",
    )


# --- every reason at once -------------------------------------------------------------------------


def test_every_reason_is_listed_in_order() -> None:
    policy = Policy(
        accepted_kinds=frozenset({TeeKind.TDX}),
        rejected_advisories=frozenset({"INTEL-SA-00615"}),
        measurement_allowlist=frozenset(),
        max_evidence_age=timedelta(seconds=10),
    )
    claims = _claims(
        debug=True,
        tcb_status=TcbStatus.OUT_OF_DATE,
        tcb_status_name="OutOfDate",
        revocation_checked=False,
        advisory_ids=("INTEL-SA-00615",),
        issued_at=AT - timedelta(seconds=11),
    )
    assert _reasons(policy, claims, at=AT, binding=replace(BINDING, nonce=bytes(32))) == (
        "TEE kind sgx is not accepted",
        "debug mode is enabled",
        "TCB status OutOfDate is below SW_HARDENING_NEEDED",
        "PCK revocation was not checked (no PCK CRL)",
        "rejected advisories apply: INTEL-SA-00615",
        f"measurement {'ab' * 32} is not allowed",
        "evidence is older than 0:00:10",
        "report data does not bind the expected keys, provider and nonce",
    )


# --- field evidence: crypto-only, attributes, not hardware --------------------------------------


@pytest.mark.parametrize("kind", [TeeKind.SGX, TeeKind.TDX])
def test_crypto_only_intel_claims_are_refused_for_their_unknown_tcb(kind: TeeKind) -> None:
    bare = _claims(kind=kind, tcb_status=None, tcb_status_name=None, advisory_ids=None)
    assert _reasons(Policy(require_revocation_check=False), bare) == (
        "TCB status unknown: verified without collateral (crypto-only)",
    )


def test_attribute_rules_come_from_the_policy_file_by_kind() -> None:
    policy = Policy.from_mapping(
        {
            "required_attributes": {"tdx": ["sept_ve_disable", "PKS"], "sgx": []},
            "forbidden_attributes": {"sgx": ["PROVISIONKEY"]},
            "allow_reserved_attributes": True,
        }
    )
    assert policy.required_attributes == {
        TeeKind.TDX: frozenset({"SEPT_VE_DISABLE", "PKS"}),
        TeeKind.SGX: frozenset(),
    }
    assert policy.forbidden_attributes == {TeeKind.SGX: frozenset({"PROVISIONKEY"})}
    tdx = _claims(kind=TeeKind.TDX, attributes=("SEPT_VE_DISABLE", "RESERVED_9"))
    assert _reasons(policy, tdx) == ("tdx attributes PKS are not set",)
    sgx = _claims(attributes=("INIT", "PROVISIONKEY", "RESERVED_9"))
    assert _reasons(policy, sgx) == ("sgx attributes PROVISIONKEY are set",)
    assert _reasons(Policy(), sgx) == ("reserved attribute bits are set: RESERVED_9",)


def test_default_attribute_rules() -> None:
    assert _reasons(Policy(), _claims(kind=TeeKind.TDX, attributes=())) == (
        "tdx attributes SEPT_VE_DISABLE are not set",
    )
    snp = _claims(kind=TeeKind.SEV_SNP, attributes=("SMT", "MIGRATE_MA"))
    assert _reasons(Policy(), snp) == ("sev-snp attributes MIGRATE_MA are set",)
    assert _reasons(Policy(), _claims(kind=TeeKind.SEV_SNP, attributes=("SMT",))) == ()


def test_not_hardware_evidence_says_why_and_is_refused_unless_allowed() -> None:
    fvp = _claims(insecure=True, not_hardware="signed by a simulator key")
    assert _reasons(Policy(), fvp) == (
        "INSECURE signed by a simulator key, not hardware, is refused by this policy",
    )
    assert _reasons(Policy(allow_sim=True), fvp) == ()


def test_snp_revocation_is_required_like_intels() -> None:
    snp = _claims(kind=TeeKind.SEV_SNP, revocation_checked=False)
    assert _reasons(Policy(), snp) == ("AMD certificate revocation was not checked (no KDS CRL)",)
    assert _reasons(Policy(require_revocation_check=False), snp) == ()
