"""A malformed policy file is refused with the exact message naming what is wrong, and the
edges of what a file may say are judged on both sides; the decisions a file leads to that need
two or more names joined, or sim evidence without a signer, are compared whole."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from proofs.claims import Claims, EvidenceHash, Measurement, ReportData, TcbStatus, TeeKind
from proofs.errors import PolicyInvalid
from proofs.policy import Policy, evaluate

AT = datetime(2025, 6, 1, tzinfo=UTC)
HOST = "0x" + "5a" * 20


def _refusal(raw: object) -> str:
    with pytest.raises(PolicyInvalid) as refused:
        Policy.from_mapping(raw)
    return str(refused.value)


def _judged(policy: Policy, kind: TeeKind, **changes: Any) -> tuple[str, ...]:
    """The reasons `policy` gives for otherwise clean claims of `kind`."""
    claims = Claims(
        kind=kind,
        version=1,
        measurement=Measurement(bytes(32)),
        report_data=ReportData(bytes(64)),
        debug=False,
        signer_ids=(HOST,),
        tcb_status=TcbStatus.UP_TO_DATE,
        tcb_status_name="UpToDate",
        advisory_ids=(),
        evidence_hash=EvidenceHash(bytes(32)),
        issued_at=AT,
    )
    verdict = evaluate(policy, replace(claims, **changes), AT)
    assert verdict.accepted is (verdict.reasons == ())
    return verdict.reasons


# --- the document and its scalar keys ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name"), [([], "list"), ("{}", "str"), (7, "int"), (None, "NoneType")]
)
def test_a_policy_that_is_not_an_object_is_refused_naming_its_type(raw: object, name: str) -> None:
    assert _refusal(raw) == f"a policy is a JSON object, not {name}"


@pytest.mark.parametrize("age", [-1, 1.5, "60", True, [60]])
def test_max_evidence_age_must_be_whole_seconds_from_zero(age: object) -> None:
    assert (
        _refusal({"max_evidence_age_s": age})
        == "max_evidence_age_s must be a whole number of seconds >= 0"
    )


def test_max_evidence_age_of_zero_is_the_lowest_accepted() -> None:
    assert Policy.from_mapping({"max_evidence_age_s": 0}).max_evidence_age == timedelta(0)


TCB_NAMES = (
    "revoked, out_of_date, out_of_date_configuration_needed, "
    "configuration_and_sw_hardening_needed, configuration_needed, sw_hardening_needed, "
    "up_to_date"
)


@pytest.mark.parametrize(("value", "shown"), [("Best", "'Best'"), (3, "3"), (False, "False")])
def test_min_tcb_status_outside_the_levels_is_refused_listing_every_level(
    value: object, shown: str
) -> None:
    assert (
        _refusal({"min_tcb_status": value}) == f"min_tcb_status {shown} is not one of {TCB_NAMES}"
    )


def test_min_tcb_status_is_read_in_any_case() -> None:
    assert Policy.from_mapping({"min_tcb_status": "Up_To_Date"}).min_tcb_status is (
        TcbStatus.UP_TO_DATE
    )


# --- attributes by kind -----------------------------------------------------------------------


@pytest.mark.parametrize("key", ["required_attributes", "forbidden_attributes"])
def test_attributes_by_kind_must_be_an_object(key: str) -> None:
    assert (
        _refusal({key: ["SEPT_VE_DISABLE"]})
        == f"{key} is an object of TEE kind to a list of attribute names"
    )


@pytest.mark.parametrize("key", ["required_attributes", "forbidden_attributes"])
def test_attributes_of_an_unknown_kind_are_refused_naming_the_known_ones(key: str) -> None:
    assert _refusal({key: {"vax": []}}) == (
        f"{key}: unknown TEE kind 'vax'; known: sgx, tdx, sev-snp, nvidia-cc, sim, cca"
    )


@pytest.mark.parametrize("names", ["SMT", [1], ["SMT", None], {"SMT": True}])
@pytest.mark.parametrize("key", ["required_attributes", "forbidden_attributes"])
def test_attribute_names_of_a_kind_must_be_a_list_of_strings(key: str, names: object) -> None:
    assert _refusal({key: {"Sev-SNP": names}}) == (
        f"{key}.Sev-SNP must be a list of attribute names"
    )


# --- SEV-SNP TCB floors -----------------------------------------------------------------------


@pytest.mark.parametrize("value", [[1], "milan", 255])
def test_snp_min_tcb_must_be_an_object(value: object) -> None:
    assert _refusal({"snp_min_tcb": value}) == (
        "snp_min_tcb is an object of AMD product to SVN floors"
    )


def test_snp_min_tcb_of_an_unknown_product_is_refused_naming_the_products() -> None:
    assert _refusal({"snp_min_tcb": {"Naples": {"snp": 1}}}) == (
        "snp_min_tcb: product 'Naples' is not one of ('milan', 'genoa', 'turin')"
    )


def test_snp_min_tcb_floors_of_a_product_must_be_an_object() -> None:
    assert _refusal({"snp_min_tcb": {"Genoa": [1]}}) == (
        "snp_min_tcb.Genoa is an object of component to SVN"
    )


def test_snp_min_tcb_of_an_unknown_component_is_refused_naming_the_components() -> None:
    assert _refusal({"snp_min_tcb": {"turin": {"SNP": 1}}}) == (
        "snp_min_tcb.turin: 'SNP' is not one of ('bootloader', 'tee', 'snp', 'microcode', 'fmc')"
    )


@pytest.mark.parametrize("svn", [-1, 256, True, "9", 9.0])
def test_snp_svn_floors_outside_a_byte_are_refused(svn: object) -> None:
    assert _refusal({"snp_min_tcb": {"milan": {"microcode": svn}}}) == (
        "snp_min_tcb.milan.microcode must be 0..255"
    )


@pytest.mark.parametrize("svn", [0, 255])
def test_snp_svn_floors_of_0_and_255_are_kept(svn: int) -> None:
    policy = Policy.from_mapping({"snp_min_tcb": {"Milan": {"microcode": svn}}})
    assert policy.snp_min_tcb == {"milan": {"microcode": svn}}


def test_an_snp_floor_of_255_accepts_only_svn_255() -> None:
    policy = Policy.from_mapping({"snp_min_tcb": {"milan": {"microcode": 255}}})
    top = (("bootloader", 0), ("tee", 0), ("snp", 0), ("microcode", 255))
    assert _judged(policy, TeeKind.SEV_SNP, platform="Milan", tcb_svns=top) == ()
    below = (*top[:3], ("microcode", 254))
    assert _judged(policy, TeeKind.SEV_SNP, platform="Milan", tcb_svns=below) == (
        "SEV-SNP Milan reported TCB below the floor: microcode 254 < 255",
    )


# --- CCA reference values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "CCA reference values are a JSON object with platform and realm lists"),
        ({"platform": 1}, "CCA reference values: platform must be a list of objects"),
        ({"realm": ["x"]}, "CCA reference values: realm must be a list of objects"),
        (
            {"platform": [{"implementation-id": "00"}]},
            "CCA reference values: sw-components must be a list of objects",
        ),
        (
            {"platform": [{"sw-components": [], "implementation-id": 7}]},
            "CCA reference values: implementation-id must be a hex string",
        ),
        (
            {"realm": [{"initial-measurement": "0x00"}]},
            "CCA reference values: initial-measurement is not hex",
        ),
        (
            {"realm": [{"initial-measurement": "00", "extensible-measurements": "00"}]},
            "CCA reference values: extensible-measurements must be a list",
        ),
    ],
)
def test_malformed_cca_reference_values_are_refused_naming_the_policy_key(
    values: object, message: str
) -> None:
    assert _refusal({"cca_reference_values": values}) == f"cca_reference_values: {message}"


def test_cca_reference_values_of_null_are_left_out() -> None:
    assert Policy.from_mapping({"cca_reference_values": None}).cca_reference_values is None
    empty = Policy.from_mapping({"cca_reference_values": {}}).cca_reference_values
    assert empty is not None and (empty.platform, empty.realms) == ({}, ())


# --- decisions that join names, and sim hosts -------------------------------------------------


def test_every_missing_required_attribute_is_named_in_order() -> None:
    policy = Policy.from_mapping({"required_attributes": {"tdx": ["sept_ve_disable", "pks"]}})
    assert _judged(policy, TeeKind.TDX, attributes=()) == (
        "tdx attributes PKS, SEPT_VE_DISABLE are not set",
    )
    assert _judged(policy, TeeKind.TDX, attributes=("PKS", "SEPT_VE_DISABLE")) == ()


def test_every_forbidden_attribute_set_is_named_in_order() -> None:
    policy = Policy.from_mapping({"forbidden_attributes": {"sev-snp": ["smt", "migrate_ma"]}})
    assert _judged(policy, TeeKind.SEV_SNP, attributes=("SMT", "MIGRATE_MA", "DEBUG_SWAP")) == (
        "sev-snp attributes MIGRATE_MA, SMT are set",
    )


def test_every_reserved_bit_set_is_named_in_order() -> None:
    claims = {"attributes": ("RESERVED_9", "INIT", "RESERVED_10")}
    assert _judged(Policy(), TeeKind.SGX, **claims) == (
        "reserved attribute bits are set: RESERVED_10, RESERVED_9",
    )
    assert _judged(Policy(allow_reserved_attributes=True), TeeKind.SGX, **claims) == ()


def test_sim_evidence_without_a_signer_is_refused_by_a_sim_hosts_policy() -> None:
    pinned = Policy.from_mapping({"allow_sim": True, "sim_hosts": [HOST]})
    assert _judged(pinned, TeeKind.SIM, signer_ids=()) == (
        "sim host (none) is not one of the policy's sim_hosts",
    )
    assert _judged(Policy(allow_sim=True), TeeKind.SIM, signer_ids=()) == ()


def test_sim_hosts_compare_the_first_signer_in_lower_case() -> None:
    pinned = Policy.from_mapping({"allow_sim": True, "sim_hosts": [HOST.upper().replace("X", "x")]})
    assert pinned.sim_hosts == frozenset({HOST})
    assert _judged(pinned, TeeKind.SIM, signer_ids=(HOST.upper().replace("X", "x"),)) == ()
    other = "0x" + "66" * 20
    assert _judged(pinned, TeeKind.SIM, signer_ids=(other, HOST)) == (
        f"sim host {other} is not one of the policy's sim_hosts",
    )


def test_sim_hosts_do_not_judge_hardware_evidence() -> None:
    pinned = Policy.from_mapping({"allow_sim": True, "sim_hosts": [HOST]})
    assert _judged(pinned, TeeKind.SGX, signer_ids=()) == ()


def test_cca_claims_without_the_token_facts_are_refused_whatever_the_policy_waives() -> None:
    lax = Policy(allow_sim=True, allow_debug=True, require_reference_manifests=False)
    assert _judged(lax, TeeKind.CCA, cca=None) == (
        "CCA claims carry no platform token facts to judge",
    )
